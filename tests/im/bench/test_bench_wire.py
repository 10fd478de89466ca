"""The load generator's fast packets are the protocol's, byte for byte."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from im.bench import wire
from im.protocol import (
    ChatType,
    ContentType,
    DeliveryAck,
    Direction,
    Message,
    PacketType,
    Ping,
    Push,
    SendToGroup,
    SendToUser,
    ServerAck,
    decode,
    encode,
)

ids = st.text(
    st.characters(codec="utf-8", exclude_categories=("Cs",)),
    min_size=1,
    max_size=64,
)
request_ids = st.integers(1, 2**32 - 1)
sizes = st.integers(wire.TIMESTAMP_DIGITS, 4096)
times = st.integers(0, 2**63 - 1)


@given(request_ids, ids, ids, times, sizes)
def test_send_to_user_is_what_encode_writes(rid, cmid, to, now, size):
    content = wire.content_with_time(now, size)
    expected = encode(SendToUser(cmid, to, ContentType.TEXT, content), rid)
    assert wire.send_to_user(rid, cmid, to, content) == expected


@given(request_ids, ids, ids, times, sizes)
def test_send_to_group_is_what_encode_writes(rid, cmid, group, now, size):
    content = wire.content_with_time(now, size)
    packet = SendToGroup(cmid, group, ContentType.TEXT, content)
    assert wire.send_to_group(rid, cmid, group, content) == encode(packet, rid)


@given(ids, st.integers(0, 2**64 - 1))
def test_delivery_ack_is_what_encode_writes(conversation, seq):
    expected = encode(DeliveryAck(conversation, seq))
    assert wire.delivery_ack(conversation, seq) == expected


def test_ping_is_what_encode_writes():
    assert wire.ping(7) == encode(Ping(), 7)


@given(times, sizes)
def test_the_send_time_survives_the_content(now, size):
    content = wire.content_with_time(now, size)
    assert len(content) == size
    assert content.isascii()
    assert wire.sent_at(content) == now


def test_content_without_a_time_reads_as_minus_one():
    assert wire.sent_at(b"hello, world, not hex!") == -1


def test_hot_replies_are_read_as_the_protocol_reads_them():
    message = Message(
        9, "d:x", 3, ChatType.DIRECT, "a", "phone", "b", 1, 1, b"hi"
    )
    push = memoryview(encode(Push(message)))
    assert wire.packet_type(push) == PacketType.PUSH
    _, decoded = decode(push, Direction.TO_CLIENT)
    fields = wire.read_fields(push)[0]
    assert fields[1:3] == [decoded.message.conversation_id, 3]
    assert fields[9] == b"hi"
    ack = encode(ServerAck("c1", 9, "d:x", 3, 1), 42)
    assert wire.packet_type(ack) == PacketType.SERVER_ACK
    assert wire.request_id(ack) == 42
    assert wire.read_fields(ack) == ["c1", 9, "d:x", 3, 1]


def test_a_frame_of_another_version_or_serializer_is_not_hot():
    body = bytearray(encode(Ping(), 1))
    body[2] = 2  # version
    assert wire.packet_type(body) == -1
    body[2], body[3] = 1, 2  # JSON
    assert wire.packet_type(body) == -1
