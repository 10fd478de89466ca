"""The 10-byte header at the front of every frame body.

Layout (big-endian, offsets within the frame body; on a TCP stream the
4-byte length prefix comes before offset 0)::

    offset  size  field
    0       2     magic        0xC1 0x4E, always
    2       1     version      1
    3       1     serializer   1 = msgpack, 2 = JSON
    4       2     packet type  see ``PacketType``
    6       4     request id   echoed by the reply; 0 = none
    10      ...   body         the packet's fields, serialized

The header has no length of its own: the frame's length says where the
body ends, and a second length could only disagree with it.

Reading is split in two, because the two halves fail differently. The
magic, the version and the header's size decide whether the stream is
ours at all (``decode_header``; failures close). The serializer and the
packet type are checked against what we know only after that (in
``codec``; failures are one bad packet).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Final

from im.records import fast_init

from .constants import HEADER_SIZE, MAGIC, VERSION
from .errors import BadHeaderError, BadMagicError, UnsupportedVersionError

__all__ = ["Header", "decode_header", "encode_header"]

_HEADER: Final = struct.Struct(">2sBBHI")
_MAGIC_0, _MAGIC_1 = MAGIC
assert _HEADER.size == HEADER_SIZE


@fast_init
@dataclass(frozen=True, slots=True)
class Header:
    """A decoded header. ``serializer`` and ``packet_type`` are the raw
    numbers; after a successful ``decode`` both are known ones."""

    version: int
    serializer: int
    packet_type: int
    request_id: int


def encode_header(packet_type: int, request_id: int, serializer: int) -> bytes:
    """The header bytes for a packet of ``packet_type`` (``serializer``
    a ``Serializer``, or its number)."""
    return _HEADER.pack(MAGIC, VERSION, serializer, packet_type, request_id)


def decode_header(body: bytes | bytearray | memoryview) -> Header:
    """Read and check the header at the front of a frame body.

    Raises a ``FatalProtocolError`` when the frame is not ours (bad
    magic), not our version, or too short to hold a header.
    """
    # The magic first, on whatever bytes there are: junk should be called
    # junk even when it is also short. (A full header with the magic is
    # the usual case, and the first test alone.)
    if len(body) < HEADER_SIZE or body[0] != _MAGIC_0 or body[1] != _MAGIC_1:
        return _slow_header(body)
    _, version, serializer, packet_type, request_id = _HEADER.unpack_from(body)
    if version != VERSION:
        raise _unsupported(version)
    return Header(version, serializer, packet_type, request_id)


def _slow_header(body: bytes | bytearray | memoryview) -> Header:
    """``decode_header`` for a short frame or one without the magic:
    the checks in order, so that each failure gets its own error."""
    if not MAGIC.startswith(bytes(body[:2])):
        raise BadMagicError(
            f"frame starts with {bytes(body[:2]).hex(' ')}, not the magic "
            f"{MAGIC.hex(' ')}: not a netim peer"
        )
    if len(body) < HEADER_SIZE:
        raise BadHeaderError(
            f"frame of {len(body)} bytes is shorter than the "
            f"{HEADER_SIZE}-byte header"
        )
    _, version, serializer, packet_type, request_id = _HEADER.unpack_from(body)
    if version != VERSION:
        raise _unsupported(version)
    return Header(version, serializer, packet_type, request_id)


def _unsupported(version: int) -> UnsupportedVersionError:
    # Past the version byte, another version's header may mean anything:
    # the reply echoes no request id read from it.
    return UnsupportedVersionError(
        f"protocol version {version} is not supported (this peer speaks "
        f"version {VERSION})"
    )
