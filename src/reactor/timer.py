"""Scheduled work: a heap for one-off timers, a wheel for many deadlines.

Two structures, because two kinds of timers behave differently.

``TimerHeap`` holds ordinary ``call_later`` callbacks: few of them, each
run once. A binary heap orders them; cancelling only marks the handle, and
the heap is rebuilt when cancelled handles outnumber live ones, so cancel
stays O(1) without the heap filling with garbage (asyncio does the same).

``TimingWheel`` holds deadlines that are pushed back over and over, such as
"close this connection if it stays silent for 60 s" on 100,000 connections.
A heap would need a new handle every time a deadline moves; the wheel
instead keeps each *entry* (the object that owns the deadline, for example
an idle-state handler) in one of N slots, keyed by when it is due. Moving a
deadline moves the entry between two dicts: no allocation, no per-tick
object. One loop timer per tick drives the wheel, and only while it has
entries. Precision is one tick, which is what heartbeats need.
"""

from __future__ import annotations

import heapq
import logging
import math
from collections.abc import Callable
from typing import Any, Final, Protocol

__all__ = ["TimerHandle", "TimerHeap", "TimingWheel", "WheelEntry"]

_log = logging.getLogger("reactor.timer")


class TimerHandle:
    """A callback scheduled for a point in time; ``cancel()`` revokes it."""

    __slots__ = ("args", "callback", "cancelled", "when")

    def __init__(
        self, when: float, callback: Callable[..., Any], args: tuple[Any, ...]
    ) -> None:
        self.when = when
        self.callback = callback
        self.args = args
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True
        # Drop references early: a cancelled timer may stay in the heap.
        self.args = ()

    def __lt__(self, other: TimerHandle) -> bool:
        return self.when < other.when

    def __repr__(self) -> str:
        state = " cancelled" if self.cancelled else ""
        return f"<TimerHandle when={self.when:.3f} {self.callback!r}{state}>"


class TimerHeap:
    """One-off timers ordered by due time."""

    __slots__ = ("_cancelled", "_heap")

    def __init__(self) -> None:
        self._heap: list[TimerHandle] = []
        self._cancelled = 0

    def __len__(self) -> int:
        # Counted, not derived from _cancelled: a handle may have been
        # cancelled directly, without note_cancelled (only a hint).
        return sum(1 for handle in self._heap if not handle.cancelled)

    def push(
        self, when: float, callback: Callable[..., Any], args: tuple[Any, ...]
    ) -> TimerHandle:
        handle = TimerHandle(when, callback, args)
        heapq.heappush(self._heap, handle)
        return handle

    def note_cancelled(self) -> None:
        """Count one cancellation; compact when garbage dominates."""
        self._cancelled += 1
        if self._cancelled > 64 and self._cancelled * 2 > len(self._heap):
            self._heap = [h for h in self._heap if not h.cancelled]
            heapq.heapify(self._heap)
            self._cancelled = 0

    def next_due(self) -> float | None:
        """When the earliest live timer is due, or None."""
        heap = self._heap
        while heap and heap[0].cancelled:
            heapq.heappop(heap)
            self._cancelled = max(0, self._cancelled - 1)
        return heap[0].when if heap else None

    def pop_due(self, now: float) -> list[TimerHandle]:
        """Remove and return the live timers due at ``now``, in order."""
        heap = self._heap
        due = []
        while heap and heap[0].when <= now:
            handle = heapq.heappop(heap)
            if handle.cancelled:
                self._cancelled = max(0, self._cancelled - 1)
            else:
                due.append(handle)
        return due


class WheelEntry(Protocol):
    """What the wheel needs of an entry: two attributes and a callback.

    The attributes are the wheel's bookkeeping, stored on the entry itself
    so that the wheel allocates nothing per entry.
    """

    _wheel_tick: int
    _wheel_slot: int

    def on_wheel_timeout(self, now: float) -> None: ...


NOT_ON_WHEEL: Final = -1
# Absorbs float rounding when converting seconds to tick numbers.
_EPSILON: Final = 1e-9


class TimingWheel:
    """A hashed timing wheel: many re-armable deadlines, one tick each."""

    __slots__ = ("_count", "_cursor_tick", "_slots", "tick")

    def __init__(
        self, tick: float = 0.1, slots: int = 512, now: float = 0.0
    ) -> None:
        if tick <= 0 or slots <= 0:
            raise ValueError("tick and slots must be positive")
        self.tick = tick
        self._slots: list[dict[WheelEntry, None]] = [{} for _ in range(slots)]
        self._count = 0
        # The tick number up to which the wheel has expired entries.
        self._cursor_tick = math.floor(now / tick + _EPSILON)

    def __len__(self) -> int:
        return self._count

    def schedule(self, entry: WheelEntry, deadline: float) -> None:
        """Put ``entry`` on the wheel, or move it, to fire at ``deadline``."""
        if getattr(entry, "_wheel_slot", NOT_ON_WHEEL) != NOT_ON_WHEEL:
            del self._slots[entry._wheel_slot][entry]
            self._count -= 1
        # The first tick at or after the deadline, so that the entry never
        # fires early. Ticks, not float seconds, decide when an entry is
        # due: comparing floats would let rounding noise (2.1 / 0.1 is
        # 21.000000000000004) push an entry back by a whole revolution.
        ticks = math.ceil(deadline / self.tick - _EPSILON)
        if ticks <= self._cursor_tick:
            # Already in the past for the wheel: the next visited slot.
            ticks = self._cursor_tick + 1
        slot = ticks % len(self._slots)
        entry._wheel_tick = ticks
        entry._wheel_slot = slot
        self._slots[slot][entry] = None
        self._count += 1

    def cancel(self, entry: WheelEntry) -> None:
        slot = getattr(entry, "_wheel_slot", NOT_ON_WHEEL)
        if slot != NOT_ON_WHEEL:
            del self._slots[slot][entry]
            entry._wheel_slot = NOT_ON_WHEEL
            self._count -= 1

    def advance(self, now: float) -> int:
        """Fire every entry due at ``now``; returns how many fired."""
        current = math.floor(now / self.tick + _EPSILON)
        fired = 0
        slots = self._slots
        # Visit each slot passed since last time, but never a slot twice
        # in one call: after a long pause one round covers the whole wheel.
        first = self._cursor_tick + 1
        last = min(current, first + len(slots) - 1)
        for tick_number in range(first, last + 1):
            bucket = slots[tick_number % len(slots)]
            if not bucket:
                continue
            # Against the current tick, not the slot's: after the wheel sat
            # idle, the slot numbers visited lag behind the clock.
            due = [e for e in bucket if e._wheel_tick <= current]
            for entry in due:
                del bucket[entry]
                entry._wheel_slot = NOT_ON_WHEEL
                self._count -= 1
            for entry in due:
                fired += 1
                try:
                    entry.on_wheel_timeout(now)
                except Exception:
                    _log.exception("timing wheel entry %r raised", entry)
        self._cursor_tick = current
        return fired
