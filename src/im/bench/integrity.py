"""Did every acknowledged message reach every recipient once, in order?

Each load device keeps, per conversation it belongs to, a
``ConversationView``: the seqs it holds, from PUSHes of others'
messages and from SERVER_ACKs of its own. Conversations number their
messages 1, 2, 3... with no gaps, so the view is one number
(``frontier``: everything up to it is held) plus the few seqs that came
early (``ahead``: an own message's ack can arrive after the push of the
next message). Memory stays constant however long the run.

What a view counts:

* ``duplicates``: a seq it already held. The server promises each
  message once per session; a copy is a bug (or, after a reconnect, a
  redelivery, which these runs do not do).
* ``out_of_order``: a PUSH with a seq below one pushed earlier. Pushes
  of one conversation must arrive in seq order.
* ``paged_again``: a message the device held already, in a page of
  backlog the server sent by itself (one that fell behind catches up
  that way). The protocol allows it (a page may carry the device's own
  message again; the client drops it by its seq), so it is counted, not
  a failure.

At the end the runner compares each view with the conversation's last
acknowledged seq (the highest SERVER_ACK any sender got): everything up
to it must be held. A seq below the frontier that never came shows up
as the frontier stopping short: ``missing``.

That is only a verdict on loss if the run ended settled: every load
process's drain saw nothing left in flight and nothing arriving. A
server that answers seconds late (a flood) can still be pushing when a
drain runs out of time; its last messages are then missing from the
views without being lost, and ``settled`` is false to say so.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["ConversationView", "IntegrityReport", "check"]


class ConversationView:
    """One device's view of one conversation; see the module docstring."""

    __slots__ = (
        "ahead",
        "duplicates",
        "frontier",
        "last_push",
        "out_of_order",
        "paged_again",
    )

    def __init__(self) -> None:
        self.frontier = 0
        self.ahead: set[int] = set()
        self.last_push = 0
        self.duplicates = 0
        self.out_of_order = 0
        self.paged_again = 0

    def pushed(self, seq: int) -> None:
        """A PUSH of someone else's message."""
        if seq < self.last_push:
            self.out_of_order += 1
        else:
            self.last_push = seq
        self.held(seq)

    def paged(self, seq: int) -> None:
        """A message in a page of backlog the server sent by itself."""
        if seq <= self.frontier or seq in self.ahead:
            self.paged_again += 1
        else:
            self.held(seq)

    def held(self, seq: int) -> None:
        """The device now holds ``seq`` (pushed, or its own acked)."""
        frontier = self.frontier
        if seq == frontier + 1:
            frontier = seq
            ahead = self.ahead
            if ahead:
                while frontier + 1 in ahead:
                    frontier += 1
                    ahead.discard(frontier)
            self.frontier = frontier
        elif seq <= frontier or seq in self.ahead:
            self.duplicates += 1
        else:
            self.ahead.add(seq)

    def summary(self) -> tuple[int, int, int, int, int]:
        """(frontier, ahead, duplicates, out of order, paged again):
        what the runner needs, small enough to send between processes."""
        return (
            self.frontier,
            len(self.ahead),
            self.duplicates,
            self.out_of_order,
            self.paged_again,
        )


@dataclass
class IntegrityReport:
    """The whole run's verdict, over every device and conversation."""

    conversations: int = 0
    views: int = 0
    acknowledged: int = 0
    # Seqs the devices should hold in all, their own messages included.
    expected_deliveries: int = 0
    missing: int = 0
    duplicates: int = 0
    out_of_order: int = 0
    paged_again: int = 0
    # Whether every drain ended with nothing in flight or arriving;
    # if not, what is missing may be late rather than lost.
    settled: bool = True
    # A few examples, for the report: (device, conversation, what).
    examples: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.missing or self.duplicates or self.out_of_order)

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "conversations": self.conversations,
            "views": self.views,
            "acknowledged": self.acknowledged,
            "expected_deliveries": self.expected_deliveries,
            "missing": self.missing,
            "duplicates": self.duplicates,
            "out_of_order": self.out_of_order,
            "paged_again": self.paged_again,
            "settled": self.settled,
            "examples": self.examples,
        }


_EXAMPLES = 5


def check(
    last_acked: dict[str, int],
    acked_counts: dict[str, int],
    views: dict[tuple[str, str], tuple[int, ...]],
    settled: bool = True,
) -> IntegrityReport:
    """The verdict from every sender's acks and every device's views.

    ``last_acked``: per conversation, the highest acknowledged seq.
    ``acked_counts``: per conversation, how many messages were acked.
    ``views``: per (device, conversation), ``ConversationView.summary``.
    ``settled``: whether every drain ended with nothing outstanding.
    """
    report = IntegrityReport(conversations=len(last_acked), settled=settled)
    report.acknowledged = sum(acked_counts.values())
    for (device, conversation), summary in views.items():
        frontier, ahead, duplicates, out_of_order, paged_again = summary
        report.paged_again += paged_again
        report.views += 1
        last = last_acked.get(conversation, 0)
        report.expected_deliveries += last
        missing = max(last - frontier, 0)
        report.missing += missing
        report.duplicates += duplicates
        report.out_of_order += out_of_order
        if (missing or duplicates or out_of_order) and len(
            report.examples
        ) < _EXAMPLES:
            report.examples.append(
                f"{device} in {conversation}: holds 1..{frontier} of "
                f"1..{last} (+{ahead} beyond a hole), {duplicates} "
                f"copies, {out_of_order} out of order"
            )
    return report
