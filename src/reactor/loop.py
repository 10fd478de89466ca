"""The event loop: one thread, one epoll, every socket of a process.

Design notes
============

**Level-triggered epoll.** The kernel can tell us "this fd has data" either
every time we ask while it stays true (level) or once when it becomes true
(edge). Edge triggering forces a reader to drain each socket until
``EAGAIN``, which costs one extra system call per wake-up, several
microseconds in Python, just to learn that nothing is left. With level
triggering a channel reads once per wake-up (a few times when the buffer
came back full) and is simply woken again if bytes remain, which also
keeps one busy peer from starving the others. Its cost is that interest
must be exact: a channel that does not want to read (auto-read off, or
input already ended) must remove EPOLLIN, and EPOLLOUT is registered only
while a write is waiting for the kernel, otherwise the loop would spin.

**Hang-ups and errors.** EPOLLHUP and EPOLLERR are always reported, even
when not asked for. A channel reacts by reading (so that bytes that came
with the FIN are delivered) and closing; closing is idempotent, so any mix
of flags in one event closes a channel once.

**fd reuse inside one poll batch.** ``epoll.poll()`` returns a batch of
(fd, events). While we work through it, a handler may close fd 7 and,
a few events later, the listening socket may accept a new connection that
the kernel numbers 7 again. A stale event for the old fd 7 later in the
same batch would then be delivered to the new connection. We prevent the
reuse itself: a channel that closes during a batch is unregistered at once
(so its later events find no handler), but the descriptor is closed only
after the batch has been dispatched. Until then the number stays taken.

**Other threads** never touch channels. They call ``submit()``, which
queues a callback and wakes ``poll()`` through an eventfd.

One turn of the loop:

1. wait in ``epoll.poll`` (no longer than the next timer, not at all when
   callbacks are ready),
2. dispatch the I/O events,
3. close descriptors whose channels closed during step 2,
4. run due timers,
5. run the callbacks that were ready when this step began.
"""

from __future__ import annotations

import collections
import logging
import os
import select
import signal
import socket
import threading
import time
from collections.abc import Callable
from typing import Any, Final, Protocol

from .future import Future
from .timer import TimerHandle, TimerHeap, TimingWheel

__all__ = ["EventLoop", "Scheduler"]

_log = logging.getLogger("reactor.loop")

# Events taken from the kernel per poll. Larger batches amortise the call;
# 1024 is plenty for 2 cores and keeps the result list small.
MAX_EVENTS_PER_POLL: Final = 1024

# The shared receive buffer. Every channel reads into it and copies out
# only the bytes it got, so an idle connection holds no receive memory,
# and there is no large allocation per read (see docs/difficulties.md).
RECEIVE_BUFFER_SIZE: Final = 256 * 1024

# How long graceful shutdown waits, after the drain, for peers to close
# their side (see SocketChannel.close_gracefully).
LINGER_ON_SHUTDOWN: Final = 2.0


class IOHandler(Protocol):
    """What the loop calls when a registered fd has events."""

    def _handle_events(self, events: int) -> None: ...


class Scheduler:
    """Callbacks and timers on a clock; the part of a loop without I/O.

    ``EventLoop`` adds epoll on top. The embedded test loop uses this
    class with a clock that tests move by hand.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        # ``now`` is the clock read once at the start of each turn: cheap
        # enough to stamp every read with. ``time()`` reads the clock.
        self.now = clock()
        self._ready: collections.deque[tuple[Callable[..., Any], tuple]]
        self._ready = collections.deque()
        self._timers = TimerHeap()
        self._wheel: TimingWheel | None = None
        self._wheel_timer: TimerHandle | None = None

    def time(self) -> float:
        """The loop's clock now (seconds, monotonic)."""
        return self._clock()

    def call_soon(self, callback: Callable[..., Any], *args: Any) -> None:
        """Run ``callback(*args)`` in this loop turn's callback phase."""
        self._ready.append((callback, args))

    def call_later(
        self, delay: float, callback: Callable[..., Any], *args: Any
    ) -> TimerHandle:
        return self.call_at(self._clock() + delay, callback, *args)

    def call_at(
        self, when: float, callback: Callable[..., Any], *args: Any
    ) -> TimerHandle:
        return self._timers.push(when, callback, args)

    def cancel_timer(self, handle: TimerHandle) -> None:
        if not handle.cancelled:
            handle.cancel()
            self._timers.note_cancelled()

    @property
    def wheel(self) -> TimingWheel:
        """The loop's timing wheel, for many re-armable deadlines."""
        if self._wheel is None:
            self._wheel = TimingWheel(now=self._clock())
        return self._wheel

    def schedule_on_wheel(self, entry: Any, deadline: float) -> None:
        """Put ``entry`` on the wheel; starts the wheel's tick if needed."""
        wheel = self.wheel
        wheel.schedule(entry, deadline)
        if self._wheel_timer is None:
            self._wheel_timer = self.call_later(wheel.tick, self._turn_wheel)

    def _turn_wheel(self) -> None:
        wheel = self.wheel
        wheel.advance(self._clock())
        if len(wheel):
            self._wheel_timer = self.call_later(wheel.tick, self._turn_wheel)
        else:
            self._wheel_timer = None

    def _run_due_timers(self) -> None:
        now = self.now = self._clock()
        for handle in self._timers.pop_due(now):
            self._invoke(handle.callback, handle.args)

    def _run_ready(self) -> None:
        ready = self._ready
        # Only what was queued before this phase began: callbacks queued
        # by callbacks wait for the next turn, so I/O is never starved.
        for _ in range(len(ready)):
            callback, args = ready.popleft()
            self._invoke(callback, args)

    def _invoke(self, callback: Callable[..., Any], args: tuple) -> None:
        try:
            callback(*args)
        except Exception:
            _log.exception("callback %r raised", callback)

    def _next_timeout(self) -> float:
        """How long poll may block: -1 for 'until an event'."""
        if self._ready:
            return 0
        due = self._timers.next_due()
        if due is None:
            return -1
        return max(0.0, due - self._clock())


class EventLoop(Scheduler):
    """An epoll reactor; see the module docstring for the design."""

    def __init__(self) -> None:
        super().__init__()
        self._epoll = select.epoll()
        self._handlers: dict[int, IOHandler] = {}
        self._to_close: list[socket.socket] = []
        self._dispatching = False
        self._stopping = False
        self._running_thread: int | None = None
        self.recv_buffer = bytearray(RECEIVE_BUFFER_SIZE)
        # Wake-up for other threads: an eventfd in the epoll set.
        self._submitted: collections.deque[tuple[Callable[..., Any], tuple]]
        self._submitted = collections.deque()
        self._wake_fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self._wake_pending = False
        self._epoll.register(self._wake_fd, select.EPOLLIN)
        self._handlers[self._wake_fd] = _WakeHandler(self)
        self._closed = False
        self._signals: _SignalHandler | None = None
        # Statistics, cheap to keep and useful in tests and benchmarks.
        self.poll_count = 0
        # Channels with more queued in their socket than their last read
        # took (SocketChannel._note_queued keeps the count).
        self.queued_readers = 0

    # -- registration (used by channels) --------------------------------------

    def add_reader(self, fd: int, handler: IOHandler, events: int) -> None:
        """Watch ``fd`` for ``events`` (any epoll mask, 0 included) and
        call ``handler._handle_events`` when they happen."""
        self._epoll.register(fd, events)
        self._handlers[fd] = handler

    def modify(self, fd: int, events: int) -> None:
        self._epoll.modify(fd, events)

    def remove(self, fd: int) -> None:
        if self._handlers.pop(fd, None) is not None:
            try:
                self._epoll.unregister(fd)
            except OSError:
                pass  # closed (the kernel dropped it itself) or unwatched

    def unwatch(self, fd: int) -> None:
        """Stop polling ``fd`` but keep its handler registered, so that
        ``handlers()`` (and so shutdown) still finds it; ``add_reader``
        watches it again, ``remove`` forgets it."""
        try:
            self._epoll.unregister(fd)
        except OSError:
            pass  # already unwatched, or closed

    def close_socket_later(self, sock: socket.socket) -> None:
        """Close ``sock`` once the current poll batch is dispatched."""
        if self._dispatching:
            self._to_close.append(sock)
        else:
            sock.close()

    def handlers(self) -> list[IOHandler]:
        """The registered channels (listening ones too), for shutdown and
        tests; the loop's own plumbing (wake-up, signals) is left out."""
        return [
            h
            for h in self._handlers.values()
            if not isinstance(h, (_WakeHandler, _SignalHandler))
        ]

    # -- other threads --------------------------------------------------------

    def submit(self, callback: Callable[..., Any], *args: Any) -> None:
        """Run ``callback(*args)`` on the loop; safe from any thread."""
        if self._closed:
            # Its eventfd number may belong to another file by now.
            raise RuntimeError("the loop is closed")
        self._submitted.append((callback, args))
        if not self._wake_pending:
            self._wake_pending = True
            try:
                os.eventfd_write(self._wake_fd, 1)
            except OSError:
                pass  # counter full or loop closed: it is awake anyway

    def in_loop_thread(self) -> bool:
        return threading.get_ident() == self._running_thread

    def _drain_submitted(self) -> None:
        try:
            os.eventfd_read(self._wake_fd)
        except BlockingIOError:
            pass
        # Cleared before draining: a submit racing with us either lands in
        # this drain or sets the flag again and wakes the next poll.
        self._wake_pending = False
        submitted = self._submitted
        while submitted:
            callback, args = submitted.popleft()
            self._invoke(callback, args)

    # -- running --------------------------------------------------------------

    def run(self) -> None:
        """Run until ``stop()``."""
        if self._running_thread is not None:
            raise RuntimeError("this loop is already running")
        self._running_thread = threading.get_ident()
        self._stopping = False
        try:
            while not self._stopping:
                self._run_once()
        finally:
            self._running_thread = None

    def run_until_complete(self, future: Future) -> Any:
        """Run until ``future`` is done; return its result or raise."""
        future.add_listener(lambda _: self.stop())
        if not future.done():
            self.run()
        return future.result()

    def stop(self) -> None:
        """Stop after the current turn. Safe from other threads and from
        signal handlers too."""
        self._stopping = True
        # Wake the poll even from the loop's own thread: a signal handler
        # runs there, and Python retries a poll the signal interrupted
        # with its old timeout (PEP 475), which may be "forever".
        self.submit(lambda: None)

    def _run_once(self) -> None:
        timeout = 0.0 if self._stopping else self._next_timeout()
        try:
            events = self._epoll.poll(timeout, MAX_EVENTS_PER_POLL)
        except InterruptedError:
            events = []
        self.poll_count += 1
        self.now = self._clock()
        handlers = self._handlers
        self._dispatching = True
        try:
            for fd, mask in events:
                handler = handlers.get(fd)
                if handler is None:
                    continue  # closed earlier in this batch
                try:
                    handler._handle_events(mask)
                except Exception:
                    _log.exception("I/O handler %r raised", handler)
        finally:
            self._dispatching = False
            if self._to_close:
                for sock in self._to_close:
                    sock.close()
                self._to_close.clear()
        self._run_due_timers()
        if self._ready:
            self._run_ready()

    # -- shutdown -------------------------------------------------------------

    def shutdown_gracefully(self, drain_timeout: float = 5.0) -> Future:
        """Stop accepting, let pending writes drain, then close everything.

        Phase 1 closes listening channels and stops every channel's
        input (no new requests are read). Phase 2 flushes every channel
        and waits until their output is written, or ``drain_timeout``
        passes. Phase 3 closes every channel and stops the loop. Returns
        a future that completes when phase 3 is done.
        """
        done = Future()
        deadline = self.time() + drain_timeout
        for handler in self.handlers():
            if getattr(handler, "is_server", False):
                handler.close()  # type: ignore[attr-defined]
            elif hasattr(handler, "stop_input"):
                handler.stop_input()
        for handler in self.handlers():
            flush = getattr(handler, "flush", None)
            if flush is not None:
                flush()
        self._drain_then_close(deadline, done)
        return done

    def _drain_then_close(self, deadline: float, done: Future) -> None:
        pending = [
            h
            for h in self.handlers()
            if getattr(h, "has_pending_output", lambda: False)()
        ]
        if pending and self.time() < deadline:
            self.call_later(0.01, self._drain_then_close, deadline, done)
            return
        closing = []
        for handler in self.handlers():
            close = getattr(handler, "close_gracefully", None)
            close = close or getattr(handler, "close", None)
            if close is not None:
                closing.append(close())
        self._wait_closed(closing, deadline + LINGER_ON_SHUTDOWN, done)

    def _wait_closed(
        self, closing: list[Future], deadline: float, done: Future
    ) -> None:
        # Lingering closes end when the peer closes too; the deadline
        # bounds how long a silent peer can hold the shutdown up.
        if any(not f.done() for f in closing) and self.time() < deadline:
            self.call_later(0.01, self._wait_closed, closing, deadline, done)
            return
        # Inactive/unregistered events run as callbacks: let them run.
        self.call_soon(self._finish_shutdown, done)

    def _finish_shutdown(self, done: Future) -> None:
        done.try_set_result(None)
        self.stop()

    # -- signals -------------------------------------------------------------

    def add_signal_handler(
        self, signum: int, callback: Callable[..., Any], *args: Any
    ) -> None:
        """Run ``callback(*args)`` on the loop when ``signum`` arrives.

        Main thread only. A Python-level signal handler runs at the
        interpreter's next bytecode, not when the signal arrives: a
        signal that lands just before the loop blocks in ``epoll.poll``
        would wait for the next I/O event, forever on an idle server. So
        the C-level handler writes the signal number into a socket pair
        that epoll watches (``signal.set_wakeup_fd``), and the loop reads
        it and runs the callback like any other event.
        """
        if self._signals is None:
            self._signals = _SignalHandler(self)
        self._signals.add(signum, callback, args)

    def remove_signal_handler(self, signum: int) -> None:
        """Restore the default action for ``signum``."""
        if self._signals is not None:
            self._signals.remove(signum)

    def close(self) -> None:
        """Release the loop's descriptors (call when it is not running)."""
        if self._closed:
            return
        self._closed = True
        if self._signals is not None:
            self._signals.close()
            self._signals = None
        self._epoll.close()
        os.close(self._wake_fd)


class _WakeHandler:
    """The eventfd's handler: runs what other threads submitted."""

    __slots__ = ("_loop",)

    def __init__(self, loop: EventLoop) -> None:
        self._loop = loop

    def _handle_events(self, events: int) -> None:
        self._loop._drain_submitted()


def _ignore_signal(signum: int, frame: Any) -> None:
    """The Python-level handler: the work happens in _SignalHandler."""


class _SignalHandler:
    """Turns signals into loop events through a socket pair."""

    __slots__ = ("_callbacks", "_loop", "_reader", "_writer")

    def __init__(self, loop: EventLoop) -> None:
        self._loop = loop
        self._callbacks: dict[int, tuple[Callable[..., Any], tuple]] = {}
        self._reader, self._writer = socket.socketpair()
        self._reader.setblocking(False)
        self._writer.setblocking(False)
        loop.add_reader(self._reader.fileno(), self, select.EPOLLIN)
        signal.set_wakeup_fd(self._writer.fileno(), warn_on_full_buffer=False)

    def add(
        self, signum: int, callback: Callable[..., Any], args: tuple
    ) -> None:
        self._callbacks[signum] = (callback, args)
        signal.signal(signum, _ignore_signal)

    def remove(self, signum: int) -> None:
        if self._callbacks.pop(signum, None) is not None:
            signal.signal(signum, signal.SIG_DFL)

    def _handle_events(self, events: int) -> None:
        # Each byte is the number of a signal that arrived.
        try:
            received = self._reader.recv(4096)
        except BlockingIOError:
            return
        for signum in received:
            entry = self._callbacks.get(signum)
            if entry is not None:
                self._loop.call_soon(entry[0], *entry[1])

    def close(self) -> None:
        for signum in list(self._callbacks):
            self.remove(signum)
        signal.set_wakeup_fd(-1)
        self._loop.remove(self._reader.fileno())
        self._reader.close()
        self._writer.close()
