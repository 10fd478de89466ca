"""Microbenchmarks of the IM wire protocol: the packets every message
costs, encoded and decoded, under msgpack (the default) and JSON.

One direct message of **64 bytes of text** makes, in order: a
SEND_TO_USER from the sender, a SERVER_ACK back to it, a PUSH of the
stored message to each recipient device, and a DELIVERY_ACK from each;
PING is the heartbeat an idle client sends instead. Ids are of
realistic length (a UUID client message id, a direct conversation id of
42 characters).

* ``test_encode[PACKET-SERIALIZER]``: ``encode``, header and body (no
  length prefix: the pipeline's prepender adds that).
* ``test_decode[PACKET-SERIALIZER]``: ``decode`` with the direction
  check on, from what the receiving peer holds: a ``memoryview`` frame
  on the server (SEND_TO_USER, DELIVERY_ACK, PING), ``bytes`` from a
  ``FrameReader`` on the client (SERVER_ACK, PUSH).
* ``test_push_fan_out[to-N-SERIALIZER]``: the server's encode-once path
  (``PushEncoder``, as ``Services.fan_out`` uses it): a stored message
  turned into a PUSH, encoded and framed, then the frame fetched for each of N
  recipient devices (into a list, standing in for their channels).
  ``to-1`` is the cost per stored message; each further recipient
  costs ``(median[to-100] - median[to-1]) / 99``.

Medians are times per call. The groups put each packet's four rows
together; ``-k msgpack``, ``-k "decode and push"`` pick rows out.

Run: ``pytest bench/micro/test_protocol.py --benchmark-only``.
"""

from __future__ import annotations

from typing import Any

import pytest

from codec import LengthFieldPrepender
from im import domain
from im.domain import ConversationId, DeviceAddress, DeviceId, UserId
from im.interfaces.wire import PushEncoder, to_wire_ack, to_wire_message
from im.protocol import (
    VERSION,
    ContentType,
    DeliveryAck,
    Direction,
    Header,
    Packet,
    Ping,
    Push,
    SendToUser,
    Serializer,
    add_length_prefix,
    decode,
    encode,
)

TEXT = b"Running ten minutes late; order me the usual and save me a seat."
assert len(TEXT) == 64

ALICE = DeviceAddress(UserId("alice"), DeviceId("phone"))
BOB = UserId("bob")
CONVERSATION = ConversationId.direct(ALICE.user, BOB)
FRAMING = LengthFieldPrepender(4)
CLIENT_MESSAGE_ID = "3f2b8a9e-6d1c-4e57-9a0b-2c8d7e6f5a41"
MESSAGE = domain.Message(
    message_id=7_301_234_567_890_123,
    client_message_id=CLIENT_MESSAGE_ID,
    conversation_id=CONVERSATION,
    seq=1042,
    sender=ALICE,
    to=BOB,
    content_type=ContentType.TEXT,
    body=TEXT,
    timestamp_ms=1_767_225_600_123,
)

# name -> (packet, request id): a request carries a fresh id and its
# reply echoes it; pushes and acks carry none.
PACKETS: dict[str, tuple[Packet, int]] = {
    "send-to-user": (
        SendToUser(CLIENT_MESSAGE_ID, BOB, ContentType.TEXT, TEXT),
        41,
    ),
    "server-ack": (to_wire_ack(domain.ServerAck.of(MESSAGE)), 41),
    "push": (Push(to_wire_message(MESSAGE)), 0),
    "delivery-ack": (DeliveryAck(CONVERSATION.value, MESSAGE.seq), 0),
    "ping": (Ping(), 42),
}
SERIALIZERS = [
    pytest.param(Serializer.MSGPACK, id="msgpack"),
    pytest.param(Serializer.JSON, id="json"),
]


def header_of(packet: Packet, request_id: int, serializer: int) -> Header:
    return Header(VERSION, serializer, packet.TYPE, request_id)


@pytest.mark.parametrize("serializer", SERIALIZERS)
@pytest.mark.parametrize("name", list(PACKETS))
def test_encode(benchmark: Any, name: str, serializer: Serializer) -> None:
    benchmark.group = f"protocol {name}"
    packet, request_id = PACKETS[name]

    data = benchmark(encode, packet, request_id, serializer)
    assert decode(data, packet.DIRECTION) == (
        header_of(packet, request_id, serializer),
        packet,
    )


@pytest.mark.parametrize("serializer", SERIALIZERS)
@pytest.mark.parametrize("name", list(PACKETS))
def test_decode(benchmark: Any, name: str, serializer: Serializer) -> None:
    benchmark.group = f"protocol {name}"
    packet, request_id = PACKETS[name]
    direction = packet.DIRECTION
    body = encode(packet, request_id, serializer)
    data: bytes | memoryview = body
    if direction is Direction.TO_SERVER:
        # As the server's frame decoder hands it on: a view of the
        # frame's body, past the length prefix.
        data = memoryview(add_length_prefix(body))[4:]

    header, decoded = benchmark(decode, data, direction)
    assert header == header_of(packet, request_id, serializer)
    assert decoded == packet


@pytest.mark.benchmark(group="protocol push fan-out")
@pytest.mark.parametrize("serializer", SERIALIZERS)
@pytest.mark.parametrize("recipients", [1, 100], ids=["to-1", "to-100"])
def test_push_fan_out(
    benchmark: Any, recipients: int, serializer: Serializer
) -> None:
    devices = range(recipients)

    def fan_out() -> list[bytes]:
        encoder = PushEncoder(MESSAGE, FRAMING.frame)
        return [encoder.framed_for(serializer) for _ in devices]

    sent = benchmark(fan_out)
    assert len(sent) == recipients
    assert all(data is sent[0] for data in sent)  # encoded once, shared
    assert sent[0] == FRAMING.frame(encode(PACKETS["push"][0], 0, serializer))
