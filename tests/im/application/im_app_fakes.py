"""Test tools for the use cases: a movable clock, a device directory, a
store whose appends complete when the test says, and one wired app."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TypeVar

from im.application import (
    AcknowledgeDelivery,
    History,
    ManageGroups,
    SendMessage,
    SyncBacklog,
)
from im.domain import (
    Appended,
    DeviceAddress,
    DeviceId,
    MessageDraft,
    Pending,
    UserId,
)
from im.infrastructure import (
    CountingIdGenerator,
    InMemoryGroupStore,
    InMemoryMessageStore,
)

T = TypeVar("T")


class ManualClock:
    def __init__(self, now_ms: int = 1_700_000_000_000) -> None:
        self.now = now_ms

    def now_ms(self) -> int:
        return self.now


class DeferredMessageStore(InMemoryMessageStore):
    """Appends wait in a queue until the test runs them, in any order, as
    a threaded store's would until its writer gets to them."""

    def __init__(self) -> None:
        super().__init__()
        self.queued: list[tuple[MessageDraft, Pending[Appended]]] = []

    def append(self, draft: MessageDraft) -> Pending[Appended]:
        pending: Pending[Appended] = Pending()
        self.queued.append((draft, pending))
        return pending

    def run(self, index: int = 0) -> None:
        draft, pending = self.queued.pop(index)
        super().append(draft).add_done_callback(
            lambda done: pending.resolve(done.result())
        )

    def run_all(self) -> None:
        while self.queued:
            self.run()


@dataclass
class App:
    messages: InMemoryMessageStore = field(
        default_factory=InMemoryMessageStore
    )
    groups: InMemoryGroupStore = field(default_factory=InMemoryGroupStore)
    clock: ManualClock = field(default_factory=ManualClock)
    ids: CountingIdGenerator = field(default_factory=CountingIdGenerator)

    def __post_init__(self) -> None:
        m, g = self.messages, self.groups
        self.send = SendMessage(m, g, self.clock, self.ids)
        self.ack = AcknowledgeDelivery(m, g)
        self.sync = SyncBacklog(m, g)
        self.history = History(m, g)
        self.manage = ManageGroups(g, m, self.clock, self.ids)


def dev(user: str, device: str = "phone") -> DeviceAddress:
    return DeviceAddress(UserId(user), DeviceId(device))


def value(pending: Pending[T]) -> T:
    """The result of a Pending that must be complete already."""
    assert pending.done, "the store did not complete"
    return pending.result()
