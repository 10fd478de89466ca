"""The load generator's side of the protocol: the hot packets, fast.

A load generator that decodes as carefully as the server does spends as
much CPU per message as the server it measures, and then it measures
itself. ``im.protocol.decode`` checks every field of every packet (a
PUSH costs about 8 us there); the load generator trusts what the server
sends it, so for the packets it sees by the thousand (PUSH, SERVER_ACK,
PONG) it checks the header bytes and reads the fields straight out of
the msgpack array (about 0.5 us). Whatever is wrong with the data shows
up in the integrity check (a seq out of order, a message missing), which
is the load generator's real test of the server.

Requests it sends by the thousand (SEND_TO_USER, SEND_TO_GROUP,
DELIVERY_ACK, PING) are built the same way: a header from
``im.protocol.header`` and a msgpack array in the packet's field order.
The tests check that each is byte for byte what ``im.protocol.encode``
writes. Everything rare (LOGIN, groups, errors) goes through
``im.protocol`` itself.

Message content carries the send time: 16 hex digits of
``time.monotonic_ns()`` (CLOCK_MONOTONIC is one clock for every process
of the machine, so a recipient in another load process reads the same
clock), then ASCII padding up to the chosen size. It is TEXT, as a chat
message is, so the server pays for its UTF-8 check.
"""

from __future__ import annotations

import struct
from typing import Any, Final

import msgpack

from im.protocol import ContentType, PacketType, Serializer
from im.protocol.constants import MAGIC, VERSION
from im.protocol.header import encode_header

__all__ = [
    "HEADER_SIZE",
    "TIMESTAMP_DIGITS",
    "content_with_time",
    "delivery_ack",
    "packet_type",
    "ping",
    "read_fields",
    "request_id",
    "send_to_group",
    "send_to_user",
    "sent_at",
]

HEADER_SIZE: Final = 10
TIMESTAMP_DIGITS: Final = 16

_MSGPACK: Final = Serializer.MSGPACK
_TEXT: Final = int(ContentType.TEXT)
_PREFIX: Final = MAGIC + bytes([VERSION, _MSGPACK])
_TYPE_AND_ID: Final = struct.Struct(">HI")
_packb = msgpack.Packer(use_bin_type=True).pack
_unpackb = msgpack.unpackb


# -- out ----------------------------------------------------------------------


def send_to_user(
    request_id: int, client_message_id: str, to_user: str, content: bytes
) -> bytes:
    """SEND_TO_USER with TEXT ``content``: a frame body, no prefix."""
    return encode_header(
        PacketType.SEND_TO_USER, request_id, _MSGPACK
    ) + _packb([client_message_id, to_user, _TEXT, content])


def send_to_group(
    request_id: int, client_message_id: str, group_id: str, content: bytes
) -> bytes:
    """SEND_TO_GROUP with TEXT ``content``: a frame body, no prefix."""
    return encode_header(
        PacketType.SEND_TO_GROUP, request_id, _MSGPACK
    ) + _packb([client_message_id, group_id, _TEXT, content])


def delivery_ack(conversation_id: str, seq: int) -> bytes:
    return encode_header(PacketType.DELIVERY_ACK, 0, _MSGPACK) + _packb(
        [conversation_id, seq]
    )


def ping(request_id: int) -> bytes:
    return encode_header(PacketType.PING, request_id, _MSGPACK) + _packb([])


def content_with_time(now_ns: int, size: int) -> bytes:
    """Message content of ``size`` bytes that starts with ``now_ns``."""
    stamp = b"%016x" % now_ns
    return stamp + b"." * (size - TIMESTAMP_DIGITS)


def sent_at(content: bytes) -> int:
    """The send time (monotonic ns) that ``content_with_time`` wrote;
    -1 for content that does not start with one."""
    try:
        return int(content[:TIMESTAMP_DIGITS], 16)
    except ValueError:
        return -1


# -- in -----------------------------------------------------------------------


def packet_type(frame: Any) -> int:
    """The packet type of a frame body from the server; -1 when its
    first bytes are not this protocol's version 1 in msgpack (JSON is
    never asked for here)."""
    if frame[:4] != _PREFIX:
        return -1
    kind: int = _TYPE_AND_ID.unpack_from(frame, 4)[0]
    return kind


def request_id(frame: Any) -> int:
    rid: int = _TYPE_AND_ID.unpack_from(frame, 4)[1]
    return rid


def read_fields(frame: Any) -> Any:
    """The packet's fields, as the msgpack array the server wrote."""
    return _unpackb(frame[HEADER_SIZE:])
