"""A channel with no socket, for testing handlers in memory.

``EmbeddedChannel`` runs a real pipeline on a loop whose clock the test
moves by hand. Push bytes or objects in at the head with
``write_inbound``; collect what reached the tail with ``read_inbound``.
Write at the tail with ``write_outbound``; collect what reached the head
(after a flush) with ``read_outbound``. Exceptions that no handler took
are kept and re-raised by ``check_exception``, which ``write_inbound`` and
``write_outbound`` call, so a failing handler fails the test.

Timers (``call_later``, the timing wheel) run when the test calls
``advance_time``; callbacks queued with ``call_soon`` run at the end of
each ``write_*`` call or with ``run_pending_tasks``.
"""

from __future__ import annotations

import collections
from typing import Any

from .channel import Channel
from .future import Future
from .loop import Scheduler
from .outbound import ChannelClosedError
from .pipeline import ChannelHandler

__all__ = ["EmbeddedChannel", "ManualClock"]


class ManualClock:
    """A clock that only moves when told to."""

    __slots__ = ("now",)

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


class EmbeddedLoop(Scheduler):
    """A scheduler on a manual clock; nothing runs by itself."""

    def __init__(self) -> None:
        self.clock = ManualClock()
        super().__init__(self.clock)

    def submit(self, callback: Any, *args: Any) -> None:
        self.call_soon(callback, *args)

    def in_loop_thread(self) -> bool:
        return True

    def run_pending(self) -> None:
        self.now = self.clock()
        while self._ready:
            self._run_ready()

    def advance(self, seconds: float) -> None:
        """Move the clock and run everything that came due."""
        self.clock.now += seconds
        self._run_due_timers()
        self.run_pending()


class _EmbeddedOutbound:
    """Pending writes of an embedded channel, kept as the objects written.

    Unlike a socket, the embedded channel lets any object reach the head,
    so that a test can see exactly what the handlers produced.
    """

    __slots__ = ("unflushed",)

    unwritable = False
    pending = 0

    def __init__(self) -> None:
        self.unflushed: list[tuple[Any, Future | None]] = []

    def add(self, msg: Any, promise: Future | None) -> None:
        self.unflushed.append((msg, promise))

    def is_empty(self) -> bool:
        return not self.unflushed

    def fail_all(self, cause: BaseException) -> None:
        pending, self.unflushed = self.unflushed, []
        for _, promise in pending:
            if promise is not None:
                promise.try_set_exception(cause)


class EmbeddedChannel(Channel):
    """A channel driven by the test: see the module docstring."""

    def __init__(self, *handlers: ChannelHandler) -> None:
        loop = EmbeddedLoop()
        super().__init__(loop)
        self.inbound: collections.deque[Any] = collections.deque()
        self.outbound: collections.deque[Any] = collections.deque()
        self._outbound = _EmbeddedOutbound()  # type: ignore[assignment]
        self._exceptions: list[BaseException] = []
        self.read_requests = 0
        for handler in handlers:
            self.pipeline.add_last(handler)
        self._registered = True
        self.pipeline.fire_channel_registered()
        self._active = True
        self.pipeline.fire_channel_active()
        loop.run_pending()

    # -- driving the pipeline -------------------------------------------------

    def write_inbound(self, *msgs: Any) -> bool:
        """Fire each message as a read, then read-complete.

        Returns whether anything reached the tail (is readable with
        ``read_inbound``).
        """
        self._ensure_open()
        self.last_read_time = self.loop.time()
        for msg in msgs:
            self.pipeline.fire_channel_read(msg)
        self.pipeline.fire_channel_read_complete()
        self.loop.run_pending()
        self.check_exception()
        return bool(self.inbound)

    def write_outbound(self, *msgs: Any) -> bool:
        """Write each message at the tail, then flush.

        Returns whether anything reached the head (``read_outbound``).
        """
        self._ensure_open()
        for msg in msgs:
            self.pipeline.write(msg)
        self.pipeline.flush()
        self.loop.run_pending()
        self.check_exception()
        return bool(self.outbound)

    def read_inbound(self) -> Any:
        """The oldest message that reached the tail, or None."""
        return self.inbound.popleft() if self.inbound else None

    def read_outbound(self) -> Any:
        """The oldest message that reached the head and was flushed."""
        return self.outbound.popleft() if self.outbound else None

    def fire_event(self, event: object) -> None:
        self.pipeline.fire_user_event_triggered(event)
        self.loop.run_pending()
        self.check_exception()

    def run_pending_tasks(self) -> None:
        self.loop.run_pending()

    def advance_time(self, seconds: float) -> None:
        """Move the loop's clock; due timers and callbacks run."""
        self.loop.advance(seconds)

    def check_exception(self) -> None:
        """Raise the first exception that reached the tail, if any."""
        if self._exceptions:
            exc = self._exceptions[0]
            self._exceptions.clear()
            raise exc

    def finish(self) -> bool:
        """Close, then say whether any message is left to read."""
        self.close()
        self.loop.run_pending()
        self.check_exception()
        return bool(self.inbound or self.outbound)

    def _ensure_open(self) -> None:
        if not self.is_open:
            raise ChannelClosedError(f"{self!r} is closed")

    # -- the in-memory transport ----------------------------------------------

    def _flush_outbound(self) -> None:
        out = self._outbound
        if out is None:
            return
        pending, out.unflushed = out.unflushed, []  # type: ignore[attr-defined]
        for msg, promise in pending:
            self.outbound.append(msg)
            if promise is not None:
                promise.try_set_result(None)
        if pending:
            self.last_write_time = self.loop.time()

    def _close_transport(self, promise: Future | None) -> None:
        if not self._begin_close(promise):
            return
        was_active = self._active
        self._active = False
        out, self._outbound = self._outbound, None
        if out is not None:
            out.fail_all(ChannelClosedError(repr(self)))
        self.loop.call_soon(self._finish_close, was_active)

    def _begin_read(self) -> None:
        self.read_requests += 1

    def _stop_reading(self) -> None:
        pass

    def _unhandled_exception(self, exc: BaseException) -> bool:
        self._exceptions.append(exc)
        return True

    def _unhandled_message(self, msg: Any) -> bool:
        self.inbound.append(msg)
        return True

    def __repr__(self) -> str:
        return f"[embedded id: 0x{self.id:08x}]"
