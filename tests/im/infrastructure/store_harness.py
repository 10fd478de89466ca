"""Test tools for the stores: a ``submit`` that the test drains, and the
two stores behind one face so that contract tests run on both."""

from __future__ import annotations

import queue
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from im.domain import (
    ConversationId,
    DeviceAddress,
    DeviceId,
    GroupStore,
    MessageDraft,
    MessageStore,
    Pending,
    UserId,
)
from im.infrastructure import (
    InMemoryGroupStore,
    InMemoryMessageStore,
    SQLiteStore,
)

T = TypeVar("T")

# The longest any wait may take. Generous: a wait normally ends within
# milliseconds, and only a bug (a result never posted) reaches it.
DEADLINE = 10.0


class Pump:
    """The loop, as far as a store can tell: ``submit`` queues a call
    from any thread, and the test runs the queued calls on its own
    thread until the results it waits for are in."""

    def __init__(self) -> None:
        self._posted: queue.SimpleQueue[
            tuple[Callable[..., Any], tuple[Any, ...]]
        ] = queue.SimpleQueue()

    def submit(self, callback: Callable[..., Any], *args: Any) -> None:
        self._posted.put((callback, args))

    def until_done(self, *pendings: Pending[Any]) -> None:
        deadline = time.monotonic() + DEADLINE
        while not all(p.done for p in pendings):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError("the store never completed")
            try:
                callback, args = self._posted.get(timeout=remaining)
            except queue.Empty:
                continue
            callback(*args)

    def value(self, pending: Pending[T]) -> T:
        self.until_done(pending)
        return pending.result()

    def run_posted(self) -> int:
        """Run what has been posted so far; how many calls that was."""
        ran = 0
        while True:
            try:
                callback, args = self._posted.get_nowait()
            except queue.Empty:
                return ran
            callback(*args)
            ran += 1


@dataclass
class Stores:
    """A message store and a group store, and how to wait on them."""

    kind: str
    messages: MessageStore
    groups: GroupStore
    pump: Pump = field(default_factory=Pump)
    engine: SQLiteStore | None = None

    def value(self, pending: Pending[T]) -> T:
        return self.pump.value(pending)

    def close(self) -> None:
        if self.engine is not None:
            self.engine.close()


def open_stores(kind: str, directory: Path) -> Stores:
    if kind == "memory":
        return Stores(kind, InMemoryMessageStore(), InMemoryGroupStore())
    pump = Pump()
    # Uncached, every group read goes to the tables.
    cache = 0 if kind == "sqlite-uncached" else 1024
    engine = SQLiteStore(
        directory / "netim.db", pump.submit, group_cache_size=cache
    )
    return Stores(kind, engine.messages, engine.groups, pump, engine)


def dev(user: str, device: str = "phone") -> DeviceAddress:
    return DeviceAddress(UserId(user), DeviceId(device))


def draft(
    conversation: ConversationId,
    client_id: str,
    sender: str = "alice",
    to: str = "bob",
    *,
    message_id: int = 1,
    body: bytes = b"",
) -> MessageDraft:
    return MessageDraft(
        message_id=message_id,
        client_message_id=client_id,
        conversation_id=conversation,
        sender=dev(sender),
        to=to,
        content_type=1,
        body=body,
        timestamp_ms=1_700_000_000_000,
    )
