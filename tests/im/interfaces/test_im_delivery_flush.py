"""Backlog, then live, never overtaking, each message once per session.

``Delivery`` is driven here with a store whose backlog reads complete
when the test says, and a channel whose writability the test sets, so
every interleaving the server can meet is played on purpose.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import pytest

from codec import LengthFieldPrepender
from im.application import SyncBacklog
from im.domain import (
    BacklogStart,
    ConversationId,
    DeviceAddress,
    DeviceId,
    Message,
    MessageDraft,
    MessagePage,
    Pending,
    UserId,
)
from im.infrastructure import InMemoryGroupStore, InMemoryMessageStore
from im.interfaces import delivery as delivery_module
from im.interfaces.delivery import Delivery
from im.interfaces.wire import PushEncoder
from im.protocol import Direction, Push, Serializer, SyncPage, decode

ALICE, BOB = UserId("alice"), UserId("bob")
BOB_PHONE = DeviceAddress(BOB, DeviceId("phone"))
ALICE_PHONE = DeviceAddress(ALICE, DeviceId("phone"))
TO_BOB = ConversationId.direct(ALICE, BOB)
FRAMING = LengthFieldPrepender(4)


class SlowReads(InMemoryMessageStore):
    """Backlog reads wait for the test. ``late``: the read sees the
    store as it is when completed; otherwise as it was when asked."""

    def __init__(self) -> None:
        super().__init__()
        self.reads: list[tuple[Callable[[], MessagePage], Pending[Any]]] = []
        self.late = True

    def read_backlog(
        self,
        device: DeviceAddress,
        starts: Sequence[BacklogStart],
        limit: int,
    ) -> Pending[MessagePage]:
        def read() -> MessagePage:
            parent = super(SlowReads, self)
            return parent.read_backlog(device, starts, limit).result()

        snapshot = None if self.late else read()
        pending: Pending[MessagePage] = Pending()
        self.reads.append((lambda: snapshot or read(), pending))
        return pending

    def complete_read(self) -> None:
        read, pending = self.reads.pop(0)
        pending.resolve(read())

    def add(self, text: str) -> Message:
        seq = self._last_seq(TO_BOB) + 1
        draft = MessageDraft(
            seq, f"c{seq}", TO_BOB, ALICE_PHONE, BOB, 1, text.encode(), 0
        )
        return self.append(draft).result().message


class FakeLoop:
    """Callbacks wait until the test runs them (``Harness.run_soon``)."""

    def __init__(self) -> None:
        self.soon: list[Callable[[], None]] = []

    def call_soon(self, callback: Callable[..., Any], *args: Any) -> None:
        self.soon.append(lambda: callback(*args))


class FakeChannel:
    def __init__(self, loop: FakeLoop) -> None:
        self.is_open = True
        self.is_writable = True
        self.loop = loop


class FakeSession:
    """What Delivery needs of a session; records what it was sent."""

    def __init__(self, loop: FakeLoop) -> None:
        self.address = BOB_PHONE
        self.channel = FakeChannel(loop)
        self.serializer = Serializer.MSGPACK
        self.frames: list[Any] = []

    def send(self, data: bytes) -> None:
        self.frames.append(decode(data, Direction.TO_CLIENT)[1])

    def send_frame(self, frame: bytes) -> None:
        assert int.from_bytes(frame[:4], "big") == len(frame) - 4
        self.send(frame[4:])

    def seqs(self) -> list[int]:
        out = []
        for frame in self.frames:
            if isinstance(frame, Push):
                out.append(frame.message.seq)
            elif isinstance(frame, SyncPage):
                out.extend(m.seq for m in frame.messages)
        return out


class Harness:
    def __init__(self, page_size: int = 200) -> None:
        self.store = SlowReads()
        self.loop = FakeLoop()
        self.soon = self.loop.soon
        self.delivery = Delivery(
            SyncBacklog(self.store, InMemoryGroupStore()),
            page_size=page_size,
        )
        self.session = FakeSession(self.loop)

    def run_soon(self) -> None:
        while self.soon:
            self.soon.pop(0)()

    def live(self, text: str) -> None:
        """A message stored and pushed while the device is online."""
        message = self.store.add(text)
        self.delivery.push(PushEncoder(message, FRAMING.frame))

    def settle(self) -> None:
        """Complete every read and queued step until nothing is left."""
        while self.store.reads or self.soon:
            if self.store.reads:
                self.store.complete_read()
            self.run_soon()


def test_live_messages_wait_for_the_backlog() -> None:
    h = Harness()
    for i in range(3):
        h.store.add(f"old {i}")
    h.delivery.start_flush(h.session)  # type: ignore[arg-type]
    h.live("new")  # arrives while the backlog read is in flight
    assert h.session.frames == []
    h.settle()
    assert h.session.seqs() == [1, 2, 3, 4]
    assert not h.delivery.flushing


@pytest.mark.parametrize("late", [True, False], ids=["late", "early"])
def test_a_held_push_is_sent_once_whether_or_not_the_page_had_it(
    late: bool,
) -> None:
    h = Harness()
    h.store.late = late
    h.store.add("old")
    h.delivery.start_flush(h.session)  # type: ignore[arg-type]
    h.live("during")
    h.settle()
    assert h.session.seqs() == [1, 2]
    h.live("after")
    assert h.session.seqs() == [1, 2, 3]


def test_a_long_backlog_goes_in_pages_and_ends_with_has_more_false() -> None:
    h = Harness(page_size=4)
    for i in range(10):
        h.store.add(f"m{i}")
    h.delivery.start_flush(h.session)  # type: ignore[arg-type]
    for i in range(3):
        h.live(f"live {i}")
        h.store.complete_read()
        h.run_soon()
    h.settle()
    pages = [f for f in h.session.frames if isinstance(f, SyncPage)]
    assert [p.has_more for p in pages][-1] is False
    assert h.session.seqs() == list(range(1, 14))


def test_the_flush_waits_while_the_channel_is_unwritable() -> None:
    h = Harness(page_size=2)
    for i in range(4):
        h.store.add(f"m{i}")
    h.delivery.start_flush(h.session)  # type: ignore[arg-type]
    h.store.complete_read()
    h.session.channel.is_writable = False
    h.run_soon()
    assert h.store.reads == [], "no read while the device cannot take it"
    h.session.channel.is_writable = True
    h.delivery.channel_writable()
    h.settle()
    assert h.session.seqs() == [1, 2, 3, 4]


def test_a_device_that_fell_behind_catches_up_from_the_store() -> None:
    h = Harness()
    h.delivery.start_flush(h.session)  # type: ignore[arg-type]
    h.settle()
    h.live("a")
    h.session.channel.is_writable = False
    h.live("b")  # not sent: behind
    h.live("c")
    assert h.session.seqs() == [1]
    h.session.channel.is_writable = True
    h.delivery.channel_writable()
    h.settle()
    assert h.session.seqs() == [1, 2, 3]
    h.live("d")
    assert h.session.seqs() == [1, 2, 3, 4], "live again"


def test_too_many_held_pushes_start_another_pass(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(delivery_module, "HELD_PUSH_LIMIT", 2)
    h = Harness()
    h.store.late = False  # the first pass sees none of the live ones
    h.store.add("old")
    h.delivery.start_flush(h.session)  # type: ignore[arg-type]
    for i in range(5):
        h.live(f"live {i}")
    h.settle()
    assert h.session.seqs() == [1, 2, 3, 4, 5, 6]
    assert h.delivery.flush_passes == 2


def test_nothing_is_sent_after_the_channel_closed() -> None:
    h = Harness()
    h.store.add("old")
    h.delivery.start_flush(h.session)  # type: ignore[arg-type]
    h.session.channel.is_open = False
    h.settle()
    assert h.session.frames == []
