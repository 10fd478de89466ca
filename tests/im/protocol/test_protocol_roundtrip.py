"""Every packet type survives encode -> decode, under both serializers,
for any valid field values; and the same packet always gives the same
bytes."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from protocol_strategies import records, request_ids

from im.protocol import (
    MAX_CONTENT_SIZE,
    PACKETS,
    VERSION,
    ChatType,
    ContentType,
    Direction,
    Header,
    Message,
    Packet,
    PacketType,
    Push,
    SendToGroup,
    SendToUser,
    Serializer,
    decode,
    encode,
    encode_trusted,
)
from im.protocol._schema import Binary, FieldError, String, Unsigned, schema_of

# 48 tests (24 types, 2 serializers): few examples each keeps the suite
# fast; the strategies put the edges among them.
SETTINGS = settings(max_examples=10, deadline=None)

CLASSES = [pytest.param(cls, id=cls.__name__) for cls in PACKETS.values()]
SERIALIZERS = [pytest.param(s, id=s.name.lower()) for s in Serializer]


def strict(value: Any) -> Any:
    """``value`` with the differences that == overlooks made visible:
    True == 1, but a boolean must not come back as a number."""
    if dataclasses.is_dataclass(value):
        fields = dataclasses.fields(value)
        return type(value), [strict(getattr(value, f.name)) for f in fields]
    if isinstance(value, tuple):
        return [strict(item) for item in value]
    if isinstance(value, bool):
        return "bool", value
    if isinstance(value, int):
        return int(value)  # an IntEnum member is its number
    return type(value), value


def round_trip(
    packet: Packet, request_id: int, serializer: Serializer
) -> tuple[Header, Packet, bytes]:
    body = encode(packet, request_id, serializer)
    header, decoded = decode(body, type(packet).DIRECTION)
    return header, decoded, body


@pytest.mark.parametrize("serializer", SERIALIZERS)
@pytest.mark.parametrize("cls", CLASSES)
@SETTINGS
@given(data=st.data())
def test_every_packet_round_trips(
    cls: type[Packet], serializer: Serializer, data: st.DataObject
) -> None:
    packet = data.draw(records(cls), label="packet")
    request_id = data.draw(request_ids, label="request_id")

    header, decoded, body = round_trip(packet, request_id, serializer)

    assert header == Header(VERSION, serializer, cls.TYPE, request_id)
    assert decoded == packet
    assert strict(decoded) == strict(packet)
    assert encode(decoded, request_id, serializer) == body


@pytest.mark.parametrize("serializer", SERIALIZERS)
@pytest.mark.parametrize("cls", CLASSES)
@SETTINGS
@given(data=st.data())
def test_the_trusted_encoder_writes_the_same_bytes(
    cls: type[Packet], serializer: Serializer, data: st.DataObject
) -> None:
    packet = data.draw(records(cls), label="packet")
    request_id = data.draw(request_ids, label="request_id")
    assert encode_trusted(packet, request_id, serializer) == encode(
        packet, request_id, serializer
    )


def test_every_type_code_has_a_class() -> None:
    assert sorted(PACKETS) == sorted(PacketType)
    for code, cls in PACKETS.items():
        assert code == cls.TYPE
        assert isinstance(cls.DIRECTION, Direction)


# -- message content, byte for byte -------------------------------------------

CONTENTS = [
    pytest.param(ContentType.TEXT, "héllo 😀 你好".encode(), id="emoji"),
    pytest.param(
        ContentType.TEXT, "\U0001f469\u200d\U0001f466".encode(), id="zwj"
    ),
    pytest.param(ContentType.TEXT, b"", id="empty"),
    pytest.param(
        ContentType.TEXT,
        ("😀" * (MAX_CONTENT_SIZE // 4)).encode(),
        id="largest-text",
    ),
    pytest.param(ContentType.BINARY, b"\xff\xfe\x00\xc0", id="not-utf8"),
    pytest.param(ContentType.BINARY, bytes(MAX_CONTENT_SIZE), id="largest"),
    pytest.param(99, b"\x80 an unknown type", id="unknown-type"),
]


def message(content_type: int, content: bytes) -> Message:
    return Message(
        message_id=2**63 + 5,
        conversation_id="g:42",
        seq=7,
        chat_type=ChatType.GROUP,
        from_user="alice",
        from_device="phone",
        to="42",
        timestamp=1_767_225_600_000,
        content_type=content_type,
        content=content,
    )


@pytest.mark.parametrize("serializer", SERIALIZERS)
@pytest.mark.parametrize(("content_type", "content"), CONTENTS)
def test_content_is_kept_byte_for_byte(
    serializer: Serializer, content_type: int, content: bytes
) -> None:
    sends: list[Any] = [
        SendToUser("c-1", "bob", content_type, content),
        SendToGroup("c-2", "42", content_type, content),
        Push(message(content_type, content)),
    ]
    for packet in sends:
        _, decoded, _ = round_trip(packet, 1, serializer)
        got = decoded.message if isinstance(decoded, Push) else decoded
        assert type(got.content) is bytes
        assert got.content == content


def test_a_push_is_encoded_once_for_all_recipients() -> None:
    # Nothing in a push is per recipient, so the server may queue one
    # bytes object on every channel; each recipient decodes the same.
    push = Push(message(ContentType.TEXT, "hi all 👋".encode()))
    data = encode(push)
    assert isinstance(data, bytes)
    assert encode(push) == data
    for _ in range(3):
        assert decode(data)[1] == push


@pytest.mark.parametrize(
    "kind", [bytes, bytearray, memoryview], ids=lambda k: k.__name__
)
def test_decode_takes_any_buffer_and_keeps_no_reference(kind: type) -> None:
    packet = SendToUser("c-1", "bob", ContentType.TEXT, b"hello")
    storage = bytearray(encode(packet))
    _, decoded = decode(kind(storage))
    storage[-5:] = b"HELLO"  # the receive buffer is reused...
    assert decoded == packet  # ...and the packet does not notice


# Values of every wire type, valid for some fields and not for others.
ANY_VALUE = st.one_of(
    st.integers(-3, 2**64 + 3),
    st.booleans(),
    st.text(max_size=70),
    st.binary(max_size=70),
    st.none(),
    st.lists(st.integers(0, 3), max_size=2),
)


@pytest.mark.parametrize("cls", CLASSES)
@SETTINGS
@given(data=st.data())
def test_the_fast_path_of_decoding_agrees_with_the_checked_one(
    cls: type[Packet], data: st.DataObject
) -> None:
    schema = schema_of(cls)
    # A valid packet's array with one value replaced, or none; or an
    # array of anything, of about the right length.
    if data.draw(st.booleans(), label="from a valid packet"):
        wire = list(schema.values(data.draw(records(cls))))
        if wire and data.draw(st.booleans(), label="replace one"):
            index = data.draw(st.integers(0, len(wire) - 1))
            wire[index] = data.draw(ANY_VALUE)
    else:
        length = len(schema.fields) + data.draw(st.sampled_from([0, 1]))
        wire = data.draw(st.lists(ANY_VALUE, min_size=length, max_size=length))

    def outcome(load: Any) -> Any:
        try:
            return strict(load(list(wire), False))
        except FieldError as error:
            return error.code, error.message, error.path

    assert outcome(schema.load) == outcome(schema.load_checked)


def edge_values(kind: Any) -> list[Any]:
    """Values on both sides of each limit a kind's fast test checks."""
    values: list[Any] = [None, True, False, 0, -1, "", b"", [], 1.0]
    if isinstance(kind, Unsigned):
        top = (1 << kind.bits) - 1
        values += [top, top + 1, 2**64, 2**64 - 1]
    if isinstance(kind, String):
        n = kind.max_length
        values += ["a" * n, "a" * (n + 1), "é", "é" * n, "\ud800", b"a"]
    if isinstance(kind, Binary):
        n = kind.max_size
        values += [b"x" * n, b"x" * (n + 1), bytearray(b"x"), "x"]
    return values


@pytest.mark.parametrize("cls", CLASSES)
@settings(max_examples=2, deadline=None)
@given(data=st.data())
def test_the_fast_path_agrees_at_every_limit(
    cls: type[Packet], data: st.DataObject
) -> None:
    schema = schema_of(cls)
    valid = list(schema.values(data.draw(records(cls))))

    def outcome(load: Any, wire: Any) -> Any:
        try:
            return strict(load(wire, False))
        except FieldError as error:
            return error.code, error.message, error.path

    def agree(wire: Any) -> None:
        fast = outcome(schema.load, wire)
        assert fast == outcome(schema.load_checked, wire), wire

    for index, (_, kind) in enumerate(schema.fields):
        for value in edge_values(kind):
            agree([*valid[:index], value, *valid[index + 1 :]])
    for wire in ([*valid, 0], valid[:-1], tuple(valid), {}, None):
        agree(wire)


def test_a_flat_packet_is_built_by_the_generated_loader() -> None:
    schema = schema_of(SendToUser)
    wire = ["c-1", "bob", int(ContentType.TEXT), b"hello"]
    assert schema.load(wire, False) == SendToUser("c-1", "bob", 1, b"hello")
    fast_path = schema._as_is
    assert fast_path is not None
    assert fast_path(wire) == SendToUser("c-1", "bob", 1, b"hello")
    # Anything the fast path does not take goes to the checked one.
    assert fast_path(["c-1", "bob", 1, "text, not bytes"]) is None
    assert fast_path(["c-1", "bób", 1, b"hello"]) is None
