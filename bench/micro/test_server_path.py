"""Microbenchmark of one direct message through the whole IM server.

The server's own pipeline (``im.server.connection_handlers``) on two
embedded channels, alice's and bob's, with the in-memory store: no
sockets and no other process, so what is timed is the server's Python
work per message and nothing the machine's network or scheduler adds.
That is the part of the end-to-end figure (``bench/im.py p2p``) that
netim's own code decides, and it can be compared commit against commit
to a few per cent where the end-to-end runs move by tens.

One message, as the load generator makes it: alice's SEND_TO_USER
frame goes in; the server answers her with a SERVER_ACK and pushes the
message to bob; bob's DELIVERY_ACK goes in. Each round sends ``BATCH``
messages, every one with a fresh client message id (a repeated id is a
duplicate, which stores nothing), then reads the output off both
channels. Divide a median by ``BATCH`` for the cost of one message.

Run: ``pytest bench/micro/test_server_path.py --benchmark-only``.
"""

from __future__ import annotations

import dataclasses
import itertools
from typing import Any

import pytest

from im.config import Settings
from im.domain import ConversationId, DeviceAddress, DeviceId, UserId
from im.infrastructure.tokens import issue_token
from im.protocol import (
    ContentType,
    DeliveryAck,
    Direction,
    Login,
    Push,
    SendToUser,
    ServerAck,
    decode,
    encode,
)
from im.server import build_services, connection_handlers, open_stores
from reactor import EmbeddedChannel

BATCH = 100
ROUNDS = 100
TEXT = b"Running ten minutes late; order me the usual and save me a seat."
SECRET = bytes(range(32))


class Client:
    """One connection's pipeline, fed frames, its output read as bodies."""

    def __init__(self, services: Any, user: str) -> None:
        handlers = [handler for _, handler in connection_handlers(services)]
        self.channel = EmbeddedChannel(*handlers)
        self.frame = services.framing.frame
        self.write(encode(Login(issue_token(SECRET, user), "pc", "b/1"), 1))

    def write(self, body: bytes) -> None:
        self.channel.write_inbound(self.frame(body))

    def output(self) -> list[bytes]:
        """Frame bodies written since the last call."""
        data = bytearray()
        while (chunk := self.channel.read_outbound()) is not None:
            data += chunk
        bodies = []
        while data:
            end = 4 + int.from_bytes(data[:4], "big")
            bodies.append(bytes(data[4:end]))
            del data[:end]
        return bodies


@pytest.mark.parametrize(
    "talks_to", [1, 1000], ids=["talks-to-1", "talks-to-1000"]
)
def test_direct_message(benchmark: Any, talks_to: int) -> None:
    settings = Settings(store="memory", secret=SECRET.hex())
    settings = dataclasses.replace(settings, rate_limit=1e9, rate_burst=10**9)
    stores = open_stores(settings, submit=None)  # type: ignore[arg-type]
    # Flush at once: each embedded channel has its own loop.
    services = build_services(settings, stores, SECRET, lambda f: f())
    alice, bob = Client(services, "alice"), Client(services, "bob")
    for n in range(1, talks_to):
        other = DeviceAddress(UserId(f"user-{n}"), DeviceId("pc"))
        services.send.to_user(
            other, f"hello-{n}", UserId("bob"), ContentType.TEXT, TEXT
        )
    alice.output(), bob.output()  # the login replies, the pushes
    conversation = ConversationId.direct(UserId("alice"), UserId("bob"))
    ids = itertools.count(1)
    request_ids = itertools.count(2)

    def batch() -> tuple[tuple[list[bytes], list[bytes]], dict[str, Any]]:
        # Made outside the timing: the client's work, not the server's.
        sends, acks = [], []
        for _ in range(BATCH):
            n = next(ids)
            sends.append(
                encode(
                    SendToUser(f"m-{n:032}", "bob", ContentType.TEXT, TEXT),
                    next(request_ids),
                )
            )
            acks.append(encode(DeliveryAck(conversation.value, n), 0))
        return (sends, acks), {}

    def messages(sends: list[bytes], acks: list[bytes]) -> None:
        for send, ack in zip(sends, acks, strict=True):
            alice.write(send)
            bob.write(ack)
        alice.channel.run_pending_tasks()
        bob.channel.run_pending_tasks()
        replies.append((alice.output(), bob.output()))

    replies: list[tuple[list[bytes], list[bytes]]] = []
    benchmark.pedantic(messages, setup=batch, rounds=ROUNDS)
    # Every message was acked to alice and pushed to bob, none refused.
    for to_alice, to_bob in replies:
        assert len(to_alice) == len(to_bob) == BATCH
        assert all(
            isinstance(decode(body, Direction.TO_CLIENT)[1], ServerAck)
            for body in to_alice
        )
        assert all(
            isinstance(decode(body, Direction.TO_CLIENT)[1], Push)
            for body in to_bob
        )
