"""Every way a frame body can be wrong: the error class, its code, whether
the connection closes, and what the reply echoes. Then our own misuse,
which raises EncodeError and never reaches the wire."""

from __future__ import annotations

import base64
import dataclasses
import json
import struct
from typing import Any

import msgpack
import pytest

from im.protocol import (
    JSON,
    MAGIC,
    MAX_BODY_SIZE,
    MAX_CONTENT_SIZE,
    MAX_ID_LENGTH,
    MAX_LIST_ITEMS,
    MSGPACK,
    BadHeaderError,
    BadMagicError,
    BodyTooLargeError,
    ChatType,
    ContentTooLargeError,
    ContentType,
    CreateGroup,
    Direction,
    EncodeError,
    Error,
    ErrorCode,
    FatalProtocolError,
    InvalidTextError,
    Login,
    MalformedPacketError,
    Message,
    PacketError,
    PacketType,
    ProtocolError,
    Push,
    SendToUser,
    Serializer,
    UnexpectedPacketError,
    UnknownPacketTypeError,
    UnsupportedSerializerError,
    UnsupportedVersionError,
    decode,
    encode,
    encode_error,
)

HTTP_REQUEST = b"GET / HTTP/1.1\r\nHost: chat.example\r\n\r\n"


def frame(
    body: bytes,
    packet_type: int = PacketType.LOGIN,
    request_id: int = 7,
    serializer: int = MSGPACK,
    version: int = 1,
    magic: bytes = MAGIC,
) -> bytes:
    """A frame body built by hand, so that any part of it can be wrong."""
    header = struct.pack(
        ">2sBBHI", magic, version, serializer, packet_type, request_id
    )
    return header + body


def packed(fields: Any) -> bytes:
    return bytes(msgpack.packb(fields, use_bin_type=True))


def message(content_type: int, content: bytes) -> Message:
    return Message(
        1, "c", 1, ChatType.DIRECT, "a", "d", "b", 0, content_type, content
    )


def refused(data: bytes, **kwargs: Any) -> ProtocolError:
    """The error that decoding ``data`` raises."""
    with pytest.raises(ProtocolError) as info:
        decode(data, **kwargs)
    return info.value


# -- the stream is not ours: close --------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(HTTP_REQUEST, id="http-request"),
        pytest.param(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03", id="tls"),
        pytest.param(b"SSH-2.0-OpenSSH_9.6\r\n", id="ssh"),
        pytest.param(frame(b"\x90", magic=b"\xc1M"), id="near-magic"),
        pytest.param(b"\x00", id="short-junk"),
    ],
)
def test_bad_magic_closes(data: bytes) -> None:
    error = refused(data)
    assert type(error) is BadMagicError
    assert (error.code, error.close) == (ErrorCode.BAD_MAGIC, True)
    assert error.request_id == 0  # nothing of a header could be read


@pytest.mark.parametrize("data", [b"", MAGIC, frame(b"")[:9]])
def test_a_body_shorter_than_a_header_closes(data: bytes) -> None:
    error = refused(data)
    assert type(error) is BadHeaderError
    assert (error.code, error.close) == (ErrorCode.BAD_HEADER, True)


@pytest.mark.parametrize("version", [0, 2, 255])
def test_another_version_closes(version: int) -> None:
    error = refused(frame(packed(["t", "d", "v"]), version=version))
    assert type(error) is UnsupportedVersionError
    assert (error.code, error.close) == (ErrorCode.UNSUPPORTED_VERSION, True)
    # Another version's bytes after the version are not ours to read.
    assert (error.request_id, error.packet_type) == (0, None)
    assert f"version {version}" in str(error)


# -- one packet refused: stay open --------------------------------------------


@pytest.mark.parametrize("serializer", [0, 3, 255])
def test_unknown_serializer_is_answered_in_msgpack(serializer: int) -> None:
    error = refused(frame(b"\x90", serializer=serializer))
    assert type(error) is UnsupportedSerializerError
    assert (error.code, error.close) == (
        ErrorCode.UNSUPPORTED_SERIALIZER,
        False,
    )
    assert (error.request_id, error.serializer) == (7, MSGPACK)


@pytest.mark.parametrize("serializer", [MSGPACK, JSON])
@pytest.mark.parametrize("packet_type", [0, 0x0008, 0x0400, 0xFFFF])
def test_unknown_packet_type(packet_type: int, serializer: int) -> None:
    error = refused(frame(b"", packet_type, 9, serializer))
    assert type(error) is UnknownPacketTypeError
    assert (error.code, error.close) == (ErrorCode.UNKNOWN_PACKET_TYPE, False)
    assert (error.request_id, error.serializer) == (9, serializer)
    assert error.packet_type == packet_type


def test_a_packet_going_the_wrong_way() -> None:
    push = encode(Push(message(ContentType.TEXT, b"hi")))
    error = refused(push, direction=Direction.TO_SERVER)
    assert type(error) is UnexpectedPacketError
    assert (error.code, error.close) == (ErrorCode.UNEXPECTED_PACKET, False)
    login = encode(Login("t", "d", "v"))
    with pytest.raises(UnexpectedPacketError):
        decode(login, Direction.TO_CLIENT)
    assert decode(login, Direction.TO_SERVER)[1] == Login("t", "d", "v")


def test_a_body_over_the_cap() -> None:
    # The size is checked before the body is parsed at all.
    padding = "x" * MAX_BODY_SIZE
    error = refused(frame(packed(["t", "d", padding])))
    assert type(error) is BodyTooLargeError
    assert (error.code, error.close) == (ErrorCode.BODY_TOO_LARGE, False)
    assert error.request_id == 7


def test_a_body_at_the_cap_is_read() -> None:
    # Exactly MAX_BODY_SIZE bytes: it gets past the size check (and is
    # then refused for what it holds, not for its size).
    body = packed(["t", "d", ""])
    body += b"\x00" * (MAX_BODY_SIZE - len(body))
    error = refused(frame(body))
    assert type(error) is MalformedPacketError


# -- malformed bodies ---------------------------------------------------------

LOGIN = PacketType.LOGIN
SEND = PacketType.SEND_TO_USER
ERROR = PacketType.ERROR
PUSH = PacketType.PUSH
CREATE = PacketType.CREATE_GROUP
TEXT = ContentType.TEXT

MALFORMED_MSGPACK = [
    pytest.param(LOGIN, b"", id="empty"),
    pytest.param(LOGIN, b"\xc1", id="never-used-byte"),
    pytest.param(LOGIN, packed(["t", "d", "v"])[:-1], id="truncated"),
    pytest.param(LOGIN, packed(["t", "d", "v"]) + b"\x90", id="trailing"),
    pytest.param(LOGIN, packed({"token": "t"}), id="a-map"),
    pytest.param(LOGIN, packed(["t", "d"]), id="field-missing"),
    pytest.param(LOGIN, packed(["t", "d", "v", "x"]), id="field-extra"),
    pytest.param(LOGIN, packed(["t", 5, "v"]), id="int-for-str"),
    pytest.param(LOGIN, packed(["t", b"d", "v"]), id="bytes-for-str"),
    pytest.param(LOGIN, packed(["t", None, "v"]), id="nil-for-str"),
    pytest.param(SEND, packed(["c", "b", TEXT, "hi"]), id="str-for-bytes"),
    pytest.param(SEND, packed(["c", "b", True, b"hi"]), id="bool-for-int"),
    pytest.param(SEND, packed(["c", "b", 1.0, b"hi"]), id="float-for-int"),
    pytest.param(SEND, packed(["c", "b", -1, b"hi"]), id="negative"),
    pytest.param(SEND, packed(["c", "b", 65536, b"hi"]), id="over-u16"),
    pytest.param(ERROR, packed([1, "x", 1]), id="int-for-bool"),
    pytest.param(
        LOGIN, packed(["t", "d" * (MAX_ID_LENGTH + 1), "v"]), id="long-id"
    ),
    pytest.param(
        CREATE, packed(["g", ["u"] * (MAX_LIST_ITEMS + 1)]), id="long-list"
    ),
    pytest.param(CREATE, packed(["g", "u"]), id="str-for-list"),
    pytest.param(CREATE, packed(["g", ["u", 1]]), id="bad-item"),
    pytest.param(
        LOGIN, packed([msgpack.ExtType(5, b"t"), "d", "v"]), id="ext-type"
    ),
    pytest.param(
        LOGIN, packed([msgpack.Timestamp(0), "d", "v"]), id="timestamp"
    ),
    pytest.param(LOGIN, b"\x91" * 5000 + b"\x90", id="deep-nesting"),
]


@pytest.mark.parametrize(("packet_type", "body"), MALFORMED_MSGPACK)
def test_malformed_msgpack(packet_type: int, body: bytes) -> None:
    error = refused(frame(body, packet_type))
    assert type(error) is MalformedPacketError
    assert (error.code, error.close) == (ErrorCode.MALFORMED_BODY, False)
    assert error.request_id == 7


def message_fields(**changes: Any) -> dict[str, Any]:
    fields = {
        "message_id": 1,
        "conversation_id": "c",
        "seq": 1,
        "chat_type": 1,
        "from_user": "a",
        "from_device": "d",
        "to": "b",
        "timestamp": 0,
        "content_type": 1,
        "content": "aGk=",
    }
    return fields | changes


def as_json(value: Any) -> bytes:
    return json.dumps(value).encode()


MALFORMED_JSON = [
    pytest.param(LOGIN, b"", id="empty"),
    pytest.param(LOGIN, b"{", id="truncated"),
    pytest.param(LOGIN, b'{"token":"t"} []', id="trailing"),
    pytest.param(LOGIN, as_json(["t", "d", "v"]), id="an-array"),
    pytest.param(LOGIN, as_json({"token": "t", "device_id": "d"}), id="gap"),
    pytest.param(
        LOGIN,
        b'{"token":"t","device_id":"d","client_version":"v","x":1}',
        id="extra-key",
    ),
    pytest.param(
        LOGIN,
        b'{"token":"t","token":"u","device_id":"d","client_version":"v"}',
        id="duplicate-key",
    ),
    pytest.param(
        SEND,
        b'{"client_message_id":"c","to_user":"b","content_type":NaN,'
        b'"content":""}',
        id="nan",
    ),
    pytest.param(
        SEND,
        as_json(
            {
                "client_message_id": "c",
                "to_user": "b",
                "content_type": 1,
                "content": "not base64!",
            }
        ),
        id="bad-base64",
    ),
    pytest.param(
        ERROR, as_json({"code": 1, "text": "x", "will_close": 0}), id="0"
    ),
    pytest.param(
        PUSH,
        as_json({"message": message_fields(chat_type=3)}),
        id="unknown-chat-type",
    ),
    pytest.param(
        PUSH, as_json({"message": message_fields(seq="1")}), id="nested"
    ),
    pytest.param(LOGIN, b"[" * 100_000, id="deep-nesting"),
]


@pytest.mark.parametrize(("packet_type", "body"), MALFORMED_JSON)
def test_malformed_json(packet_type: int, body: bytes) -> None:
    error = refused(frame(body, packet_type, serializer=JSON))
    assert type(error) is MalformedPacketError
    assert (error.code, error.close) == (ErrorCode.MALFORMED_BODY, False)
    assert (error.request_id, error.serializer) == (7, JSON)


def test_the_message_names_the_field() -> None:
    body = as_json({"message": message_fields(seq="1")})
    error = refused(frame(body, PUSH, serializer=JSON))
    assert "Push.message.seq: expected an integer, got str" in str(error)
    body = packed(["g", ["u", 1]])
    error = refused(frame(body, CREATE))
    assert "CreateGroup.members[1]: expected a string, got int" in str(error)


# -- text that is not UTF-8, content over the cap -----------------------------

NOT_UTF8 = [
    # A msgpack str whose bytes are not UTF-8 (0xa2: a str of 2 bytes).
    pytest.param(LOGIN, MSGPACK, b"\x93\xa1t\xa2\xff\xfe\xa1v", id="str"),
    # TEXT content that is not UTF-8 (an overlong NUL, a lone byte).
    pytest.param(
        SEND, MSGPACK, packed(["c", "b", TEXT, b"\xc0\x80"]), id="content"
    ),
    pytest.param(
        SEND, MSGPACK, packed(["c", "b", TEXT, b"ok\xff"]), id="content-end"
    ),
    # UTF-8-encoded surrogate: Python's decoder refuses it, and so do we.
    pytest.param(
        SEND, MSGPACK, packed(["c", "b", TEXT, b"\xed\xa0\x80"]), id="cesu"
    ),
    pytest.param(
        PUSH,
        JSON,
        as_json({"message": message_fields(content="/w==")}),
        id="push-content",
    ),
    # A JSON body that is not UTF-8 at all.
    pytest.param(
        LOGIN,
        JSON,
        b'{"token":"\xff","device_id":"d","client_version":"v"}',
        id="json-body",
    ),
    # JSON can spell a lone surrogate as an escape; UTF-8 cannot carry it.
    pytest.param(
        LOGIN,
        JSON,
        b'{"token":"\\ud800","device_id":"d","client_version":"v"}',
        id="json-surrogate",
    ),
]


@pytest.mark.parametrize(("packet_type", "serializer", "body"), NOT_UTF8)
def test_text_that_is_not_utf8(
    packet_type: int, serializer: int, body: bytes
) -> None:
    error = refused(frame(body, packet_type, serializer=serializer))
    assert type(error) is InvalidTextError
    assert isinstance(error, MalformedPacketError)
    assert (error.code, error.close) == (ErrorCode.INVALID_TEXT, False)


def test_binary_content_need_not_be_utf8() -> None:
    body = packed(["c", "b", ContentType.BINARY, b"\xff\xfe"])
    _, packet = decode(frame(body, SEND))
    assert packet == SendToUser("c", "b", ContentType.BINARY, b"\xff\xfe")


@pytest.mark.parametrize("serializer", [MSGPACK, JSON])
def test_content_over_the_cap(serializer: Serializer) -> None:
    content = b"x" * (MAX_CONTENT_SIZE + 1)
    if serializer == MSGPACK:
        body = packed(["c", "b", TEXT, content])
    else:
        fields = {
            "client_message_id": "c",
            "to_user": "b",
            "content_type": 1,
            "content": base64.b64encode(content).decode(),
        }
        body = as_json(fields)
    error = refused(frame(body, SEND, serializer=serializer))
    assert type(error) is ContentTooLargeError
    assert (error.code, error.close) == (ErrorCode.CONTENT_TOO_LARGE, False)


# -- the reply ----------------------------------------------------------------


@pytest.mark.parametrize("serializer", [MSGPACK, JSON])
def test_encode_error_answers_the_request(serializer: Serializer) -> None:
    error = refused(frame(b"", 0x0999, 41, serializer))
    header, reply = decode(encode_error(error), Direction.TO_CLIENT)
    assert (header.request_id, header.serializer) == (41, serializer)
    assert reply == Error(ErrorCode.UNKNOWN_PACKET_TYPE, str(error), False)


def test_a_fatal_error_reply_says_it_will_close() -> None:
    _, reply = decode(encode_error(refused(HTTP_REQUEST)))
    assert isinstance(reply, Error)
    assert (reply.code, reply.will_close) == (ErrorCode.BAD_MAGIC, True)


def test_close_follows_the_code_family() -> None:
    # 10xx close and 11xx do not, as the table in docs/protocol.md says.
    coded = [c for c in all_subclasses(ProtocolError) if "code" in vars(c)]
    assert len(coded) == 11
    for error_class in coded:
        closes = error_class.code // 100 == 10
        assert error_class.close == closes, error_class
        family = FatalProtocolError if closes else PacketError
        assert issubclass(error_class, family), error_class


def all_subclasses(cls: type) -> list[type]:
    found = []
    for sub in cls.__subclasses__():
        found += [sub, *all_subclasses(sub)]
    return found


# -- our misuse ---------------------------------------------------------------

# Values of the wrong type, typed Any so that the misuse reads plainly.
AN_INT: Any = 1
A_STR: Any = "hi"

BAD_PACKETS = [
    pytest.param(Login(AN_INT, "d", "v"), "Login.token", id="int-for-str"),
    pytest.param(Login("t", "d" * 65, "v"), "Login.device_id", id="long-id"),
    pytest.param(Login("\ud800", "d", "v"), "surrogate", id="surrogate"),
    pytest.param(
        SendToUser("c", "b", TEXT, b"\xff"), "not UTF-8", id="text-content"
    ),
    pytest.param(
        SendToUser("c", "b", TEXT, A_STR), "SendToUser.content", id="str"
    ),
    pytest.param(
        SendToUser("c", "b", 2, bytes(MAX_CONTENT_SIZE + 1)),
        "more than 65536",
        id="content-too-large",
    ),
    pytest.param(
        CreateGroup("g", ("😀" * 64,) * MAX_LIST_ITEMS),
        "MAX_BODY_SIZE",
        id="body-too-large",
    ),
    pytest.param(
        Push(dataclasses.replace(message(TEXT, b""), seq=-1)),
        "Push.message.seq",
        id="nested",
    ),
    pytest.param(A_STR, "not a packet", id="not-a-packet"),
]


@pytest.mark.parametrize("serializer", [MSGPACK, JSON])
@pytest.mark.parametrize(("packet", "words"), BAD_PACKETS)
def test_encoding_a_bad_packet_is_our_error(
    packet: Any, words: str, serializer: Serializer
) -> None:
    with pytest.raises(EncodeError, match=words):
        encode(packet, 1, serializer)


@pytest.mark.parametrize(
    ("request_id", "serializer"),
    [(-1, MSGPACK), (2**32, MSGPACK), (True, MSGPACK), (1, 3), (1, "json")],
)
def test_encoding_with_bad_arguments_is_our_error(
    request_id: Any, serializer: Any
) -> None:
    with pytest.raises(EncodeError):
        encode(Login("t", "d", "v"), request_id, serializer)


def test_encode_error_is_a_value_error_not_a_protocol_error() -> None:
    assert issubclass(EncodeError, ValueError)
    assert not issubclass(EncodeError, ProtocolError)
