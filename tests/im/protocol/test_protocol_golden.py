"""Known frames, byte for byte: the header layout cannot drift without a
test noticing, and neither can the worked example and the tables in
docs/protocol.md."""

from __future__ import annotations

import pathlib

import pytest

from im.protocol import (
    HEADER_SIZE,
    JSON,
    MSGPACK,
    ErrorCode,
    Header,
    Login,
    PacketType,
    Ping,
    Pong,
    decode,
    decode_header,
    encode,
    encode_frame,
)

DOCS = pathlib.Path(__file__).parents[3] / "docs" / "protocol.md"

LOGIN = Login(token="t0k3n", device_id="phone", client_version="netim/0.1")

LOGIN_FRAME = bytes.fromhex(
    "00000021"  # length of what follows: 33 bytes
    "c14e"  # magic
    "01"  # version
    "01"  # serializer: msgpack
    "0001"  # packet type: LOGIN
    "00000001"  # request id
    "93"  # body: an array of 3 fields
    "a5 74306b336e"  # token: a str of 5 bytes, "t0k3n"
    "a5 70686f6e65"  # device_id: "phone"
    "a9 6e6574696d2f302e31"  # client_version: "netim/0.1"
)

LOGIN_FRAME_JSON = (
    bytes.fromhex("0000004c c14e 01 02 0001 00000001")
    + b'{"token":"t0k3n","device_id":"phone","client_version":"netim/0.1"}'
)


def test_the_login_frame() -> None:
    assert encode_frame(LOGIN, request_id=1) == LOGIN_FRAME
    assert decode(LOGIN_FRAME[4:]) == (Header(1, MSGPACK, 1, 1), LOGIN)


def test_the_login_frame_in_json() -> None:
    assert encode_frame(LOGIN, 1, JSON) == LOGIN_FRAME_JSON
    assert decode(LOGIN_FRAME_JSON[4:]) == (Header(1, JSON, 1, 1), LOGIN)


def test_a_heartbeat_is_eleven_bytes() -> None:
    # Header, then an empty msgpack array: the cheapest packet there is.
    assert encode(Ping(), 2) == bytes.fromhex("c14e 0101 0004 00000002 90")
    assert encode(Pong(), 2) == bytes.fromhex("c14e 0101 0005 00000002 90")


def test_the_header_alone() -> None:
    header = decode_header(encode(Ping(), 0xDEADBEEF, JSON))
    assert header == Header(1, JSON, PacketType.PING, 0xDEADBEEF)
    assert HEADER_SIZE == 10


# -- the documentation agrees with the code -----------------------------------


def hexdump(data: bytes) -> str:
    """The dump format of docs/protocol.md: offset, then 16 bytes."""
    lines = []
    for offset in range(0, len(data), 16):
        row = " ".join(f"{byte:02x}" for byte in data[offset : offset + 16])
        lines.append(f"{offset:04x}  {row}")
    return "\n".join(lines)


@pytest.fixture(scope="module")
def docs() -> str:
    return DOCS.read_text(encoding="utf-8")


def test_the_docs_show_the_real_login_frame(docs: str) -> None:
    assert hexdump(LOGIN_FRAME) in docs
    assert hexdump(LOGIN_FRAME_JSON) in docs


@pytest.mark.parametrize("packet_type", list(PacketType), ids=str)
def test_the_docs_list_every_packet_type(
    docs: str, packet_type: PacketType
) -> None:
    assert f"| `0x{packet_type:04x}` | {packet_type.name} |" in docs


@pytest.mark.parametrize("code", list(ErrorCode), ids=str)
def test_the_docs_list_every_error_code(docs: str, code: ErrorCode) -> None:
    assert f"| {int(code)} | {code.name} |" in docs
