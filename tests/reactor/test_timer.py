"""Timers: the heap for one-off callbacks, the wheel for many deadlines."""

import gc
import sys

from reactor.loop import Scheduler
from reactor.timer import NOT_ON_WHEEL, TimerHeap, TimingWheel


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


class Entry:
    __slots__ = ("_wheel_slot", "_wheel_tick", "fired", "name")

    def __init__(self, name=""):
        self.name = name
        self.fired = []
        self._wheel_slot = NOT_ON_WHEEL
        self._wheel_tick = 0

    def on_wheel_timeout(self, now):
        self.fired.append(now)


def test_heap_runs_due_timers_in_order_and_skips_cancelled():
    heap = TimerHeap()
    order = []
    heap.push(3.0, order.append, (3,))
    cancelled = heap.push(1.0, order.append, (1,))
    heap.push(2.0, order.append, (2,))
    cancelled.cancel()
    heap.note_cancelled()
    for handle in heap.pop_due(2.5):
        handle.callback(*handle.args)
    assert order == [2]
    assert heap.next_due() == 3.0
    assert len(heap) == 1


def test_heap_compacts_when_cancelled_handles_dominate():
    heap = TimerHeap()
    handles = [heap.push(float(i), print, ()) for i in range(200)]
    for handle in handles[:150]:
        handle.cancel()
        heap.note_cancelled()
    assert len(heap._heap) < 200  # rebuilt without the garbage
    assert len(heap) == 50


def test_scheduler_call_later_and_call_soon():
    clock = Clock()
    loop = Scheduler(clock)
    ran = []
    loop.call_later(1.0, ran.append, "later")
    loop.call_soon(ran.append, "soon")
    loop._run_ready()
    clock.now = 0.5
    loop._run_due_timers()
    assert ran == ["soon"]
    clock.now = 1.0
    loop._run_due_timers()
    assert ran == ["soon", "later"]


def test_wheel_fires_at_deadline_within_one_tick():
    wheel = TimingWheel(tick=0.1, slots=8)
    entry = Entry()
    wheel.advance(0.0)
    wheel.schedule(entry, 0.35)
    wheel.advance(0.3)
    assert entry.fired == []
    wheel.advance(0.45)
    assert entry.fired == [0.45]
    assert len(wheel) == 0


def test_wheel_keeps_deadlines_beyond_one_revolution():
    wheel = TimingWheel(tick=0.1, slots=8)  # 0.8 s per revolution
    entry = Entry()
    wheel.advance(0.0)
    wheel.schedule(entry, 2.05)
    for step in range(1, 21):
        wheel.advance(step / 10)
    assert entry.fired == []
    wheel.advance(2.1)
    assert len(entry.fired) == 1


def test_rescheduling_moves_the_entry_without_duplicates():
    wheel = TimingWheel(tick=0.1, slots=16)
    entry = Entry()
    wheel.advance(0.0)
    wheel.schedule(entry, 0.5)
    wheel.schedule(entry, 1.0)
    assert len(wheel) == 1
    wheel.advance(0.6)
    assert entry.fired == []
    wheel.advance(1.05)
    assert len(entry.fired) == 1


def test_cancel_removes_the_entry():
    wheel = TimingWheel(tick=0.1, slots=16)
    entry = Entry()
    wheel.schedule(entry, 0.5)
    wheel.cancel(entry)
    wheel.cancel(entry)  # twice is harmless
    wheel.advance(1.0)
    assert entry.fired == [] and len(wheel) == 0


def test_a_deadline_in_the_past_fires_on_the_next_tick():
    wheel = TimingWheel(tick=0.1, slots=16)
    entry = Entry()
    wheel.advance(5.0)
    wheel.schedule(entry, 1.0)
    wheel.advance(5.1)
    assert len(entry.fired) == 1


def test_100k_heartbeats_allocate_nothing_per_tick():
    """100,000 re-armed deadlines: firing and re-arming them over many
    ticks must not create objects per tick or per re-arm."""

    class Heartbeat(Entry):
        __slots__ = ("wheel",)

        def on_wheel_timeout(self, now):
            self.fired.append(None)
            self.fired.clear()  # count nothing, keep no garbage
            self.wheel.schedule(self, now + 1.0)

    # A small wheel, so that the warm-up below visits every slot and the
    # slot dicts reach their steady size before we measure.
    wheel = TimingWheel(tick=0.1, slots=16)
    entries = []
    for i in range(100_000):
        entry = Heartbeat()
        entry.wheel = wheel
        entries.append(entry)
        wheel.schedule(entry, 1.0 + (i % 10) / 10)
    wheel.advance(0.0)
    now = 0.0
    for _ in range(40):
        now += 0.1
        wheel.advance(now)
    gc.collect()
    blocks_before = sys.getallocatedblocks()
    fired = 0
    for _ in range(30):
        now += 0.1
        fired += wheel.advance(now)
    gc.collect()
    grown = sys.getallocatedblocks() - blocks_before
    assert fired >= 250_000  # every heartbeat fired about 3 times
    assert len(wheel) == 100_000
    # 300,000 firings and re-arms left (almost) no new memory blocks
    # behind: nothing is created per tick or per heartbeat.
    assert grown < 1000, grown


def test_an_idle_wheel_fires_on_time_when_used_again():
    """The cursor stops while the wheel is empty; an entry scheduled after
    a long idle spell must still fire at its deadline, not a revolution
    later."""
    wheel = TimingWheel(tick=0.1, slots=512, now=0.0)
    entry = Entry()
    wheel.advance(0.0)
    wheel.schedule(entry, 100.5)  # nothing ran in between
    wheel.advance(100.6)
    assert len(entry.fired) == 1


def test_a_handle_cancelled_directly_does_not_corrupt_the_count():
    heap = TimerHeap()
    handle = heap.push(1.0, print, ())
    heap.push(2.0, print, ())
    handle.cancel()  # not through the loop's cancel_timer
    assert heap.next_due() == 2.0
    assert len(heap) == 1
    assert heap._cancelled >= 0
