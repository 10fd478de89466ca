"""Test tools: the server's pipeline on embedded channels, and a client
side that speaks packets to it, all in memory."""

from __future__ import annotations

import dataclasses
from typing import Any

from im.config import Settings
from im.domain import Appended, MessageDraft, MessageStore, Pending
from im.infrastructure import InMemoryMessageStore
from im.infrastructure.tokens import issue_token
from im.interfaces.handlers import ProtocolCodec
from im.interfaces.services import Services
from im.protocol import Direction, Login, Packet, decode, encode
from im.server import build_services, connection_handlers, open_stores
from reactor import EmbeddedChannel

SECRET = bytes(range(32))


def make_services(
    messages: MessageStore | None = None, **overrides: Any
) -> Services:
    """Services on the in-memory stores; ``messages`` replaces the
    message store (one that completes when the test says, say)."""
    settings = dataclasses.replace(
        Settings(store="memory", secret=SECRET.hex()), **overrides
    )
    stores = open_stores(settings, submit=None)  # type: ignore[arg-type]
    if messages is not None:
        stores = dataclasses.replace(stores, messages=messages)
    # Flush at once: each embedded channel runs only its own loop, so a
    # flush batched on one loop would never reach another's channel.
    return build_services(settings, stores, SECRET, lambda f: f())


class Peer:
    """One client connection through the server's own pipeline (frames
    in, frames out), in memory."""

    def __init__(self, services: Services) -> None:
        self.services = services
        handlers = [handler for _, handler in connection_handlers(services)]
        self.channel = EmbeddedChannel(*handlers)
        [self.closing] = [
            h.closing for h in handlers if isinstance(h, ProtocolCodec)
        ]
        self._next_id = 1
        self._output = bytearray()

    def send(
        self, packet: Packet | bytes, request_id: int | None = None
    ) -> int:
        """Send a packet (or raw frame body); its request id."""
        if request_id is None:
            request_id, self._next_id = self._next_id, self._next_id + 1
        data = (
            packet if isinstance(packet, bytes) else encode(packet, request_id)
        )
        self.channel.write_inbound(self.services.framing.frame(data))
        return request_id

    def frames(self) -> list[bytes]:
        """The frame bodies the server wrote since the last call."""
        self.channel.run_pending_tasks()
        output = self._output
        while (data := self.channel.read_outbound()) is not None:
            output += data
        bodies = []
        while len(output) >= 4:
            end = 4 + int.from_bytes(output[:4], "big")
            if len(output) < end:
                break
            bodies.append(bytes(output[4:end]))
            del output[:end]
        return bodies

    def received(self) -> list[tuple[Any, Any]]:
        """Everything the server wrote since the last call, decoded."""
        return [decode(body, Direction.TO_CLIENT) for body in self.frames()]

    def packets(self) -> list[Packet]:
        return [packet for _, packet in self.received()]

    def login(self, user: str, device: str = "phone") -> list[Packet]:
        token = issue_token(SECRET, user)
        self.send(Login(token, device, "test/1"))
        return self.packets()


class SlowAppends(InMemoryMessageStore):
    """Appends complete when the test calls ``complete``, as a disk
    store's do some time after the request."""

    def __init__(self) -> None:
        super().__init__()
        self.waiting: list[tuple[MessageDraft, Pending[Appended]]] = []

    def append(self, draft: MessageDraft) -> Pending[Appended]:
        pending: Pending[Appended] = Pending()
        self.waiting.append((draft, pending))
        return pending

    def complete(self) -> None:
        waiting, self.waiting = self.waiting, []
        for draft, pending in waiting:
            pending.resolve(super().append(draft).result())


def logged_in(services: Services, user: str, device: str = "phone") -> Peer:
    peer = Peer(services)
    peer.login(user, device)
    return peer
