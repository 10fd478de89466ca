"""Which messages this device holds, per conversation, and what to ack.

The server numbers each conversation's messages 1, 2, 3... with no gaps,
and takes a device's DELIVERY_ACK as cumulative: "I hold everything up
to seq n". So one number per conversation is the whole story, as long
as it only ever claims what the device really holds. This module keeps
that number (``contiguous``: the highest seq received with nothing
missing below it) and, above it, the seqs that arrived early
(``held``). From them it answers the three questions a client has:

* Is this message new, or a copy of one I have (a PUSH sent again by a
  sync, a page fetched twice)? Copies are dropped, so the application
  sees each message once.
* Is something missing? A message beyond a hole opens a gap.
* What may I ack? ``contiguous``, never more: acking past a hole would
  tell the server to forget messages this device never got.

Where counting starts: anchoring
--------------------------------
A fresh client does not know where a conversation starts for it: the
device may have acked seq 40 in an earlier run, or joined a group at
seq 300. It learns it from the server, and only from the server:

* a sync page starts each conversation just after what the server
  holds for the device, so the first synced message of a conversation
  ``anchors`` it at that seq minus one;
* once a full sync has finished on this connection, anything the
  server had for the device has been handed over, so a live PUSH of a
  conversation not seen yet anchors it at its seq minus one.

Before that, a PUSH of an unknown conversation is taken (and shown) but
not anchored: guessing "seq - 1" there could be wrong (seq 5 may still
wait in the backlog when 6 is pushed live), and an ack built on the
guess would lose seq 5 for good. Such seqs wait in ``held`` and are
anchored when the sync finishes. The server sends each device its
backlog, ending in a last page, right after LOGIN_OK, which counts as
that full sync; a client of a server that did not would never ack
automatically until it synced.

The device's own messages never anchor. Their seqs come with their
SERVER_ACKs, which the server does not hold back behind the backlog as
it holds pushes: a device may learn of its own seq 5 before the push of
someone else's seq 4. Anchoring at 4 would drop that push as a copy and
ack past it. So own seqs wait apart (``own``) until others' messages
anchor the conversation, then join what it holds.

Positions an application saved earlier (``positions``) anchor their
conversations from the start, and are acked once to tell the server.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import NamedTuple

__all__ = ["DeliveryTracker", "Receipt"]


class Receipt(NamedTuple):
    """The outcome of ``DeliveryTracker.receive``."""

    #: False for a copy of a message this device already holds.
    new: bool
    #: The hole (first, last seq) that this message opened, if any.
    gap: tuple[int, int] | None = None


_NEW = Receipt(True)
_COPY = Receipt(False)


class _Conversation:
    """What one conversation looks like from this device."""

    __slots__ = ("acked", "contiguous", "held", "own")

    def __init__(self) -> None:
        # None until anchored (see the module docstring).
        self.contiguous: int | None = None
        # Seqs received above ``contiguous`` (all of them while not
        # anchored). Usually empty: pushes arrive in order.
        self.held: set[int] = set()
        # While not anchored: seqs of the device's own messages, known
        # from their SERVER_ACKs. They say nothing of what lies below
        # them, so they never anchor; anchoring takes them in.
        self.own: set[int] = set()
        # The highest seq the server has been told (or told us) that
        # this device holds; an ack is due while contiguous > acked.
        self.acked = 0

    def anchor(self, holds_up_to: int) -> None:
        """The device holds everything up to ``holds_up_to``."""
        if self.contiguous is not None and holds_up_to <= self.contiguous:
            return
        if self.own:
            self.held |= self.own
            self.own = set()
        held = self.held
        top = holds_up_to
        # Seqs held just above the new base join the contiguous run.
        while top + 1 in held:
            top += 1
        if held:
            self.held = {seq for seq in held if seq > top}
        self.contiguous = top


class DeliveryTracker:
    """Per-conversation receive state; see the module docstring.

    Pure bookkeeping: no I/O, no clock. ``positions`` are conversations
    the device is known to hold up to some seq (saved by an application
    from an earlier run, say).
    """

    __slots__ = ("_conversations",)

    def __init__(self, positions: Mapping[str, int] | None = None) -> None:
        self._conversations: dict[str, _Conversation] = {}
        for conversation_id, seq in (positions or {}).items():
            self.assume(conversation_id, seq)

    # -- receiving ------------------------------------------------------------

    def receive(
        self,
        conversation_id: str,
        seq: int,
        *,
        anchor: bool,
        own: bool = False,
    ) -> Receipt:
        """Record that the device now holds message ``seq``.

        ``anchor`` allows an unknown conversation to be anchored just
        below this message (and below any seq held for it): True for a
        synced message, or for a push once a sync has finished. ``own``
        is for the device's own message, known from its SERVER_ACK: it
        never anchors (others' messages may still be on their way to
        below it, held by the server behind the backlog).
        """
        state = self._conversations.get(conversation_id)
        if state is None:
            state = self._conversations[conversation_id] = _Conversation()
        if state.contiguous is None and own:
            if seq in state.own or seq in state.held:
                return _COPY
            state.own.add(seq)
            return _NEW
        held = state.held
        if state.contiguous is None:
            if not anchor:
                if seq in held:
                    return _COPY
                held.add(seq)
                return _NEW
            if seq in state.own:
                return _COPY
            lowest = min(seq, min(held)) if held else seq
            if state.own:
                lowest = min(lowest, min(state.own))
            state.anchor(lowest - 1)
            # What the server starts a device at, it holds as acked.
            state.acked = max(state.acked, lowest - 1)
            held = state.held  # anchoring may have replaced the set
        contiguous = state.contiguous
        assert contiguous is not None
        if seq <= contiguous or seq in held:
            return _COPY
        if seq == contiguous + 1:
            state.anchor(seq)
            return _NEW
        # Beyond a hole. Report the hole only when this message extends
        # the known frontier: one that lands inside an old hole is a
        # late arrival, not news.
        top = max(held) if held else contiguous
        held.add(seq)
        if seq > top + 1:
            return Receipt(True, (top + 1, seq - 1))
        return _NEW

    def anchor_pending(self) -> None:
        """A full sync has finished: anchor every conversation still
        waiting for it just below the lowest seq it holds."""
        for state in self._conversations.values():
            # Only others' messages anchor: a conversation known only by
            # the device's own sends waits for its first push or page.
            if state.contiguous is None and state.held:
                base = min(state.held | state.own) - 1
                state.anchor(base)
                state.acked = max(state.acked, base)

    def assume(self, conversation_id: str, seq: int) -> None:
        """The application says the device holds everything up to
        ``seq`` (a saved position, or an explicit ack it sends)."""
        state = self._conversations.get(conversation_id)
        if state is None:
            state = self._conversations[conversation_id] = _Conversation()
        state.anchor(seq)

    # -- what to tell the server ----------------------------------------------

    def pending_acks(self) -> list[tuple[str, int]]:
        """(conversation, seq) for each conversation whose ack is due."""
        return [
            (conversation_id, state.contiguous)
            for conversation_id, state in self._conversations.items()
            if state.contiguous is not None and state.contiguous > state.acked
        ]

    def acks_due(self) -> bool:
        """Whether ``pending_acks`` would return anything."""
        return any(
            state.contiguous is not None and state.contiguous > state.acked
            for state in self._conversations.values()
        )

    def note_acked(self, conversation_id: str, seq: int) -> None:
        """A DELIVERY_ACK up to ``seq`` went out."""
        state = self._conversations.get(conversation_id)
        if state is not None and seq > state.acked:
            state.acked = seq

    def take_acks(self) -> list[tuple[str, int]]:
        """``pending_acks``, now counted as sent."""
        acks = self.pending_acks()
        for conversation_id, seq in acks:
            self._conversations[conversation_id].acked = seq
        return acks

    def positions(self) -> Iterator[tuple[str, int]]:
        """(conversation, seq) held contiguously, for SYNC_REQUEST's
        ``received``: the server starts those conversations after it."""
        for conversation_id, state in self._conversations.items():
            if state.contiguous:
                yield conversation_id, state.contiguous

    # -- inspection -----------------------------------------------------------

    def contiguous(self, conversation_id: str) -> int | None:
        """The highest seq held with nothing missing below it; None for
        a conversation not anchored (or never seen)."""
        state = self._conversations.get(conversation_id)
        return None if state is None else state.contiguous

    def gaps(self) -> dict[str, list[tuple[int, int]]]:
        """The holes (first, last seq) of every anchored conversation."""
        found: dict[str, list[tuple[int, int]]] = {}
        for conversation_id, state in self._conversations.items():
            if state.contiguous is None or not state.held:
                continue
            holes = []
            below = state.contiguous
            for seq in sorted(state.held):
                if seq > below + 1:
                    holes.append((below + 1, seq - 1))
                below = seq
            found[conversation_id] = holes
        return found

    def has_gaps(self) -> bool:
        return any(
            state.contiguous is not None and state.held
            for state in self._conversations.values()
        )
