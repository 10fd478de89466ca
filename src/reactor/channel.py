"""Channels: a connected socket, a listening socket, and what they share.

A channel owns its pipeline and carries Netty's lifecycle::

    registered -> active -> (read, read complete)* -> inactive
               -> unregistered

``Channel`` holds the transport-independent part (pipeline, writability,
the close future). ``SocketChannel`` is a TCP connection driven by the
epoll loop; ``ServerSocketChannel`` accepts connections and hands each to
an initializer that builds its pipeline. The embedded channel in
``embedded.py`` is a third kind, with no socket at all.

Reading
    The loop's shared receive buffer takes each ``recv_into``; the channel
    copies out exactly the bytes received, into a ``ByteBuf`` that travels
    down the pipeline. Nothing per connection is allocated between reads.

Half-closure
    A read of 0 bytes means the peer sent FIN. Bytes that came before it
    have already been delivered by then. By default the channel closes;
    with ``allow_half_closure`` it stops reading (EPOLLIN removed, so the
    level-triggered loop cannot spin on the end-of-file), fires
    ``InputShutdownEvent`` and can still write.

Closing
    ``close()`` is idempotent and shares one future with every caller.
    Output is dropped first, so a write during close fails at once; the
    descriptor is released after the current poll batch (see loop.py);
    ``channel_inactive`` and ``channel_unregistered`` are fired from a
    later callback, never from inside the code that closed.
"""

from __future__ import annotations

import errno
import itertools
import logging
import select
import socket
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

from .buffer import AdaptiveReadSize, ByteBuf
from .future import Future
from .loop import RECEIVE_BUFFER_SIZE
from .outbound import (
    DEFAULT_WATER_MARK,
    ChannelClosedError,
    OutboundBuffer,
    WriteBufferWaterMark,
)
from .pipeline import ChannelPipeline

if TYPE_CHECKING:
    from .loop import EventLoop, Scheduler

__all__ = [
    "Channel",
    "ChannelOptions",
    "InputShutdownEvent",
    "ServerSocketChannel",
    "SocketChannel",
]

_log = logging.getLogger("reactor.channel")

EPOLLIN: Final = select.EPOLLIN
EPOLLOUT: Final = select.EPOLLOUT
EPOLLRDHUP: Final = select.EPOLLRDHUP
EPOLLHUP: Final = select.EPOLLHUP
EPOLLERR: Final = select.EPOLLERR
_READ_INTEREST: Final = EPOLLIN | EPOLLRDHUP
_READABLE: Final = EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR

# Reads per wake-up when each read fills its buffer (the default of
# ChannelOptions.max_reads_per_event). Level triggering wakes us again
# for the rest, so a small number keeps peers fair.
MAX_READS_PER_EVENT: Final = 4

# sendmsg calls per flush before yielding to other channels (Netty: 16).
WRITE_SPIN_COUNT: Final = 16

# Bytes offered to one sendmsg. Offering far more than the socket buffer
# only makes the kernel walk buffers it will not take.
MAX_BYTES_PER_GATHERING_WRITE: Final = 1024 * 1024

# Queued peers (see ChannelOptions.queued_read_size) that make a crowd.
# Each one that is being read adds a whole allowance of work to every
# turn; a handful add a few milliseconds, and one sending a large
# message alone must not be slowed down for that.
CROWD: Final = 8

# Read sizes: Netty's defaults (64 bytes at least, 2 KiB to start: more
# than one Ethernet frame); at most the loop's shared receive buffer.
MIN_READ_SIZE: Final = 64
INITIAL_READ_SIZE: Final = 2048

_ids = itertools.count(1)


# Channel states: open; closing (output dropped, events not yet fired);
# closed (inactive and unregistered fired, close future done).
OPEN, CLOSING, CLOSED = 0, 1, 2


class InputShutdownEvent:
    """User event: the peer finished sending (half-closure allowed)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "InputShutdownEvent"


INPUT_SHUTDOWN: Final = InputShutdownEvent()


class ChannelOptions:
    """Per-connection settings; one instance is shared by many channels."""

    __slots__ = (
        "allow_half_closure",
        "auto_read",
        "max_read_size",
        "max_reads_per_event",
        "queued_read_size",
        "tcp_nodelay",
        "water_mark",
    )

    def __init__(
        self,
        *,
        auto_read: bool = True,
        allow_half_closure: bool = False,
        tcp_nodelay: bool = True,
        water_mark: WriteBufferWaterMark = DEFAULT_WATER_MARK,
        max_read_size: int = 65536,
        max_reads_per_event: int = MAX_READS_PER_EVENT,
        queued_read_size: int | None = None,
    ) -> None:
        if not MIN_READ_SIZE <= max_read_size <= RECEIVE_BUFFER_SIZE:
            raise ValueError(
                f"max_read_size must be in {MIN_READ_SIZE}.."
                f"{RECEIVE_BUFFER_SIZE} (the loop's receive buffer), "
                f"got {max_read_size}"
            )
        self.auto_read = auto_read
        self.allow_half_closure = allow_half_closure
        self.tcp_nodelay = tcp_nodelay
        self.water_mark = water_mark
        if max_reads_per_event < 1:
            raise ValueError(
                f"max_reads_per_event must be >= 1, got {max_reads_per_event}"
            )
        self.max_read_size = max_read_size
        # At most max_read_size * max_reads_per_event bytes of one
        # connection go to the pipeline per loop turn: what bounds the
        # work one busy peer can put between another peer's turns.
        self.max_reads_per_event = max_reads_per_event
        if queued_read_size is not None and not (
            MIN_READ_SIZE <= queued_read_size <= max_read_size
        ):
            raise ValueError(
                f"queued_read_size must be in {MIN_READ_SIZE}.."
                f"{max_read_size} (max_read_size), got {queued_read_size}"
            )
        # A peer whose turn filled its whole allowance had at least that
        # much queued in its socket: it sends faster than it is served.
        # While CROWD or more peers are like that, its reads are cut to
        # this size (None: never), so that the senders with a queue get
        # a smaller share of each turn and a peer with one message waits
        # for less of their work. The cut ends with the first read that
        # comes back short: the peer caught up. A peer sending one large
        # message alone or among a few busy ones is no crowd and is not
        # cut (among a flood it is, like every queued peer); a peer that
        # keeps up never is. Measured: docs/perf/012-queued-senders.md.
        self.queued_read_size = queued_read_size


DEFAULT_OPTIONS: Final = ChannelOptions()


class Channel:
    """What every channel has: an id, a loop, a pipeline, a lifecycle."""

    __slots__ = (
        "_active",
        "_auto_read",
        "_close_future",
        "_outbound",
        "_registered",
        "_state",
        "id",
        "last_read_time",
        "last_write_time",
        "loop",
        "pipeline",
    )

    def __init__(
        self,
        loop: Scheduler,
        water_mark: WriteBufferWaterMark = DEFAULT_WATER_MARK,
    ) -> None:
        self.id = next(_ids)
        self.loop: Any = loop
        self.pipeline = ChannelPipeline(self)
        self._outbound: OutboundBuffer | None = OutboundBuffer(
            self._writability_changed, water_mark
        )
        # Created on demand: most channels never have it asked for.
        self._close_future: Future | None = None
        self._state = OPEN
        self._active = False
        self._registered = False
        self._auto_read = True
        # Activity clocks, kept by the transport for idle detection, so
        # that idle handlers need no per-read or per-write work.
        self.last_read_time = self.last_write_time = loop.now

    # -- state ----------------------------------------------------------------

    @property
    def is_active(self) -> bool:
        return self._active

    @property
    def is_open(self) -> bool:
        return self._state == OPEN

    @property
    def is_registered(self) -> bool:
        return self._registered

    @property
    def is_writable(self) -> bool:
        """False while pending output is above the high watermark."""
        out = self._outbound
        return out is not None and not out.unwritable

    def bytes_before_unwritable(self) -> int:
        out = self._outbound
        if out is None or out.unwritable:
            return 0
        return max(0, out.water_mark.high - out.pending + 1)

    def has_pending_output(self) -> bool:
        out = self._outbound
        return out is not None and not out.is_empty()

    @property
    def pending_output_bytes(self) -> int:
        out = self._outbound
        return 0 if out is None else out.pending

    @property
    def close_future(self) -> Future:
        """Completes once the channel is closed and its events fired."""
        future = self._close_future
        if future is None:
            future = self._close_future = Future()
            if self._state == CLOSED:
                future.set_result(None)
        return future

    def _begin_close(self, promise: Future | None) -> bool:
        """Start closing once; later callers only wait for the outcome.

        Returns True to the one caller that must do the closing.
        """
        if promise is not None:
            self.close_future.add_listener(
                lambda _: promise.try_set_result(None)
            )
        if self._state != OPEN:
            return False
        self._state = CLOSING
        return True

    def _finish_close(self, was_active: bool) -> None:
        """Fire the closing events; runs as a callback after the close."""
        pipeline = self.pipeline
        if was_active:
            pipeline.fire_channel_inactive()
        if self._registered:
            self._registered = False
            pipeline.fire_channel_unregistered()
        pipeline.destroy()
        self._state = CLOSED
        if self._close_future is not None:
            self._close_future.try_set_result(None)

    @property
    def auto_read(self) -> bool:
        return self._auto_read

    @auto_read.setter
    def auto_read(self, value: bool) -> None:
        if value == self._auto_read:
            return
        self._auto_read = value
        if value:
            self._begin_read()
        else:
            self._stop_reading()

    # -- operations: they enter the pipeline at the tail ----------------------

    def write(self, msg: Any, promise: Future | None = None) -> None:
        self.pipeline.tail.write(msg, promise)

    def flush(self) -> None:
        self.pipeline.tail.flush()

    def write_and_flush(self, msg: Any, promise: Future | None = None) -> None:
        self.pipeline.tail.write(msg, promise)
        self.pipeline.tail.flush()

    def close(self, promise: Future | None = None) -> Future:
        return self.pipeline.tail.close(promise)

    def read(self) -> None:
        self.pipeline.tail.read()

    def close_gracefully(self, linger: float = 2.0) -> Future:
        """Close after what was written reaches the peer. A channel with
        no kernel queue in between (the embedded one) just closes; the
        socket channel overrides this with a lingering close."""
        return self.close()

    # -- transport hooks (the head context calls these) -----------------------

    def _write_after_close(self, msg: Any, promise: Future | None) -> None:
        """A write that reached the head after the channel closed."""
        if promise is not None:
            promise.try_set_exception(ChannelClosedError(repr(self)))

    def _flush_outbound(self) -> None:
        raise NotImplementedError

    def _close_transport(self, promise: Future | None) -> None:
        raise NotImplementedError

    def _begin_read(self) -> None:
        raise NotImplementedError

    def _stop_reading(self) -> None:
        raise NotImplementedError

    def _writability_changed(self) -> None:
        self.pipeline.fire_channel_writability_changed()

    def _unhandled_exception(self, exc: BaseException) -> bool:
        """Hook for the tail; True when the channel recorded ``exc``."""
        return False

    def _unhandled_message(self, msg: Any) -> bool:
        """Hook for the tail; True when the channel kept ``msg``."""
        return False

    def __repr__(self) -> str:
        return f"[id: 0x{self.id:08x}]"


class SocketChannel(Channel):
    """A TCP connection on an epoll loop."""

    __slots__ = (
        "_events",
        "_fd",
        "_input_shutdown",
        "_lingering",
        "_options",
        "_parked",
        "_queued",
        "_read_once",
        "_read_size",
        "_reading",
        "_remote",
        "_writing",
        "sock",
    )

    def __init__(
        self,
        loop: EventLoop,
        sock: socket.socket,
        options: ChannelOptions = DEFAULT_OPTIONS,
        remote: Any = None,
    ) -> None:
        super().__init__(loop, options.water_mark)
        sock.setblocking(False)
        if options.tcp_nodelay:
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass  # not TCP (a Unix socket pair in a test): harmless
        self.sock = sock
        self._fd = sock.fileno()
        self._options = options
        self._auto_read = options.auto_read
        self._read_size: AdaptiveReadSize | None = None
        # More was queued than its last read took (counted by the loop
        # in queued_readers; see ChannelOptions.queued_read_size).
        self._queued = False
        self._events = 0  # epoll interest currently registered
        self._reading = False
        self._read_once = False
        self._input_shutdown = False
        self._lingering = False  # closing gracefully (close_gracefully)
        self._parked = False  # off epoll after a hang-up while not reading
        self._writing = False  # inside _write_flushed (see there)
        if remote is not None:
            # Interned: 10,000 clients from one address share one string.
            remote = (sys.intern(remote[0]), *remote[1:])
        self._remote = remote

    # -- lifecycle ------------------------------------------------------------

    def register(self) -> None:
        """Join the loop; fires registered, then active (and reads)."""
        if self._state != OPEN:
            return  # the initializer closed it (a refused connection)
        self.loop.add_reader(self._fd, self, 0)
        self._registered = True
        self.pipeline.fire_channel_registered()
        if self._state == OPEN:
            self._active = True
            self.pipeline.fire_channel_active()

    def _close_transport(self, promise: Future | None) -> None:
        self._close(None, promise)

    def _close(
        self, cause: BaseException | None, promise: Future | None = None
    ) -> None:
        if not self._begin_close(promise):
            return
        was_active = self._active
        self._active = False
        self._leave_queue()
        # Output goes first, so that writes from now on fail at once.
        out, self._outbound = self._outbound, None
        loop = self.loop
        loop.remove(self._fd)  # parked or not
        self._events = 0
        # Ends a read loop that a handler's close() interrupted: its socket
        # is only closed after the poll batch, so without this the loop
        # would go on reading and firing reads on a closed channel.
        self._reading = False
        loop.close_socket_later(self.sock)
        if out is not None:
            out.fail_all(cause or ChannelClosedError(repr(self)))
        loop.call_soon(self._finish_close, was_active)

    @property
    def remote_address(self) -> Any:
        if self._remote is None:
            try:
                self._remote = self.sock.getpeername()
            except OSError:
                return None
        return self._remote

    # -- interest -------------------------------------------------------------

    def _set_interest(self, events: int) -> None:
        if events != self._events and self._outbound is not None:
            self._events = events
            if not self._parked:
                self.loop.modify(self._fd, events)

    def _begin_read(self) -> None:
        if self._outbound is None or self._input_shutdown:
            return
        if not self._auto_read:
            self._read_once = True
        if self._parked:
            # Back on epoll: level triggering reports the hang-up again,
            # and this time we read what is left and then close.
            self._parked = False
            self.loop.add_reader(self._fd, self, self._events)
        if not self._reading:
            self._reading = True
            self._set_interest(self._events | _READ_INTEREST)

    def close_gracefully(self, linger: float = 2.0) -> Future:
        """Close so that what the kernel still holds for the peer arrives.

        Closing a socket while unread bytes sit in its receive queue, or
        arrive after the close, makes the kernel answer with a reset, and
        a reset makes the peer drop whatever it has not read yet: replies
        already written would be lost. So this is a lingering close: send
        FIN after the queued bytes (shutdown of the write side), then read
        and throw away the peer's input until it closes too, or until
        ``linger`` seconds pass. The returned future completes when the
        channel is closed.
        """
        if self._outbound is None or self._lingering:
            return self.close_future
        if not self._outbound.is_empty():
            # Output the peer would not take in time: lingering cannot
            # save it, and a peer that does not read would hold us up.
            return self.close()
        try:
            self.sock.shutdown(socket.SHUT_WR)
        except OSError:
            return self.close()  # already broken: nothing to protect
        self._lingering = True
        self._leave_queue()  # its input is only thrown away from now on
        if self._parked:
            self._parked = False
            self.loop.add_reader(self._fd, self, self._events)
        self._reading = True
        self._set_interest(_READ_INTEREST)
        self.loop.call_later(linger, self.close)
        return self.close_future

    def _discard_input(self) -> None:
        scratch = self.loop.recv_buffer
        for _ in range(MAX_READS_PER_EVENT):
            try:
                if not self.sock.recv_into(scratch):
                    break  # the peer closed: so can we
            except BlockingIOError:
                return
            except OSError:
                break  # reset or broken: close now
        else:
            return  # more to come; level triggering calls again
        self._close(None)

    def stop_input(self) -> None:
        """Stop reading for good; output keeps working.

        What the peer sends from now on stays unread. Graceful shutdown
        uses it so that draining replies does not take in new requests
        (an echo would otherwise keep answering while it drains).
        """
        if self._outbound is None or self._input_shutdown:
            return
        self._input_shutdown = True
        self._leave_queue()  # never read again: no part of any turn
        self._stop_reading()

    def _stop_reading(self) -> None:
        if self._reading:
            self._reading = False
            self._set_interest(self._events & ~_READ_INTEREST)

    # -- events ---------------------------------------------------------------

    def _handle_events(self, events: int) -> None:
        if self._outbound is None:
            return  # closed: a stale event; the socket may be gone too
        try:
            self._dispatch_events(events)
        except Exception as exc:
            # Our bug, not the peer's: close the channel rather than let
            # level triggering call us again and again with the same fd.
            _log.exception("%r: transport error; closing", self)
            self._close(exc)

    def _dispatch_events(self, events: int) -> None:
        if self._lingering:
            self._discard_input()
            return
        if events & _READABLE:
            if self._reading:
                self._read_ready()
            elif events & EPOLLERR:
                self._close(self._socket_error())
            elif events & EPOLLHUP:
                if self._input_shutdown:
                    self._close(None)
                else:
                    # Not reading now (auto-read off): leave epoll so the
                    # hang-up cannot spin the loop; _begin_read returns.
                    # Unwatched, not removed: the loop must still know
                    # the channel, or shutdown would never close it.
                    self._parked = True
                    self.loop.unwatch(self._fd)
        if events & EPOLLOUT and self._outbound is not None:
            self._write_ready()

    def _socket_error(self) -> OSError:
        code = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        return ConnectionError(code, errno.errorcode.get(code, "socket error"))

    def _read_ready(self) -> None:
        loop = self.loop
        recv_buffer = loop.recv_buffer
        recv_into = self.sock.recv_into
        head = self.pipeline.head
        sizer = self._read_size
        if sizer is None:
            # Created on the first read: idle connections never pay for it.
            maximum = self._options.max_read_size
            sizer = self._read_size = AdaptiveReadSize(
                minimum=MIN_READ_SIZE,
                initial=min(INITIAL_READ_SIZE, maximum),
                maximum=maximum,
            )
        size = guess = sizer.guess
        if self._queued and loop.queued_readers >= CROWD:
            cut = self._options.queued_read_size
            if cut is not None and cut < size:
                size = cut
        total = 0
        end_of_input = False
        failure = None
        # A read() asked for while auto-read is off is used up by this
        # batch; one asked for by the handlers it calls is a new request
        # and must survive it (Netty's pull pattern).
        self._read_once = False
        for _ in range(self._options.max_reads_per_event):
            try:
                count = recv_into(recv_buffer, size)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:
                failure = exc
                break
            if count == 0:
                end_of_input = True
                break
            total += count
            head.fire_channel_read(ByteBuf.adopt(recv_buffer[:count]))
            if count < size or not self._reading:
                break  # the socket is (probably) drained, or we paused
        if not total:
            # Nothing was waiting after all (the read that filled the
            # allowance emptied the socket): caught up.
            self._leave_queue()
        else:
            self.last_read_time = loop.now
            if (
                self._options.queued_read_size is not None
                and self._outbound is not None  # not closed by a handler
            ):
                self._note_queued(size < guess, size, total)
            if size == guess:
                sizer.record(total)  # a cut read says nothing of the guess
            head.fire_channel_read_complete()
        if not self._auto_read and not self._read_once:
            self._stop_reading()
        if failure is not None:
            if self._outbound is not None:
                head.fire_exception_caught(failure)
                self._close(failure)
            # The exception's traceback holds this frame, and this frame
            # the exception: a cycle that would keep the channel until a
            # full garbage collection.
            failure = None
        elif end_of_input:
            self._input_ended()

    def _note_queued(self, was_cut: bool, size: int, total: int) -> None:
        options = self._options
        reads = options.max_reads_per_event
        # A cut peer is still queued while its cut reads come back full;
        # the first short one shows it caught up. An uncut one counts
        # only with a full allowance of the largest size: a client with a
        # few messages in flight (a closed loop's window) never has that
        # much waiting. A full read may also have emptied the socket: the
        # peer then stays queued until its next read, which is cut like
        # the others while it comes back full, or finds nothing and ends
        # the mark. (Asking the kernel with FIONREAD after each full read
        # would settle it at once; it measured no better, for an extra
        # system call per full read: docs/perf/012-queued-senders.md.)
        allowance = size if was_cut else options.max_read_size
        if total < allowance * reads:
            self._leave_queue()
        elif not self._queued:
            self._queued = True
            self.loop.queued_readers += 1

    def _leave_queue(self) -> None:
        """No longer counted as queued. A paused peer (auto-read off)
        stays counted: its queue is still there, and it is read again
        as soon as it is resumed."""
        if self._queued:
            self._queued = False
            self.loop.queued_readers -= 1

    def _input_ended(self) -> None:
        if self._outbound is None:
            return
        self._leave_queue()
        if self._options.allow_half_closure:
            self._input_shutdown = True
            self._stop_reading()
            self.pipeline.fire_user_event_triggered(INPUT_SHUTDOWN)
        else:
            self._close(None)

    # -- writing --------------------------------------------------------------

    def _flush_outbound(self) -> None:
        out = self._outbound
        if out is None:
            return
        out.add_flush()
        # While EPOLLOUT is armed the kernel buffer is full; the event
        # will flush, so trying now would only cost a failing syscall.
        # Inside _write_flushed (a completion listener flushing again),
        # marking is enough: the running write loop sends it.
        if out.flushed and not self._events & EPOLLOUT and not self._writing:
            self._write_flushed(out)

    def _write_ready(self) -> None:
        out = self._outbound
        if out is not None:
            self._write_flushed(out)

    def _write_flushed(self, out: OutboundBuffer) -> None:
        # Not re-entered: completion listeners run inside remove_bytes,
        # and one that writes and flushes the next chunk would otherwise
        # nest a write loop per chunk until RecursionError (Netty guards
        # flush0 the same way). The loop below re-reads ``out`` each
        # round, so what they flushed is sent by this call.
        self._writing = True
        try:
            self._write_quantum(out)
        finally:
            self._writing = False

    def _write_quantum(self, out: OutboundBuffer) -> None:
        sock = self.sock
        for _ in range(WRITE_SPIN_COUNT):
            buffers, offered = out.gather(MAX_BYTES_PER_GATHERING_WRITE)
            try:
                # One buffer (the usual case, small entries being joined)
                # goes through send(), whose call is cheaper than sendmsg's.
                if len(buffers) == 1:
                    sent = sock.send(buffers[0])
                else:
                    sent = sock.sendmsg(buffers)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError as exc:
                # Reset or broken pipe: nothing queued can arrive now.
                self._close(exc)
                return
            if sent or not offered:
                # (Nothing offered: only empty writes were flushed. They
                # are retired here, or they would never count as sent.)
                out.remove_bytes(sent)
                self.last_write_time = self.loop.now
                if self._outbound is None:
                    return  # a completion listener closed the channel
            if not out.flushed:
                if self._events & EPOLLOUT:
                    self._set_interest(self._events & ~EPOLLOUT)
                return
            if sent < offered:
                # The kernel took less than offered: its buffer is full.
                self._set_interest(self._events | EPOLLOUT)
                return
        # Out of quantum with the kernel still accepting: let the other
        # channels have a turn, and continue from a callback.
        self.loop.call_soon(self._write_ready)

    def __repr__(self) -> str:
        remote = self._remote
        peer = f" R:{remote[0]}:{remote[1]}" if remote else ""
        return f"[id: 0x{self.id:08x}{peer}]"


class ServerSocketChannel:
    """A listening socket that accepts connections in bounded batches.

    Not a ``Channel``: it has no pipeline and no lifecycle events; it
    hands each accepted socket to an initializer and registers the new
    ``SocketChannel``.

    When the process runs out of descriptors (EMFILE), accept fails while
    the connection stays queued, so a level-triggered loop would be woken
    again at once and spin. Instead the listener leaves epoll for
    ``ACCEPT_RETRY_DELAY`` and then tries again; the socket stays open and
    pending clients wait in the backlog.
    """

    is_server = True

    # Connections accepted per wake-up: enough for a login storm, few
    # enough that established connections are not starved meanwhile.
    ACCEPT_BATCH: Final = 64
    ACCEPT_RETRY_DELAY: Final = 0.1

    def __init__(
        self,
        loop: EventLoop,
        sock: socket.socket,
        initializer: Callable[[SocketChannel], None],
        options: ChannelOptions = DEFAULT_OPTIONS,
    ) -> None:
        sock.setblocking(False)
        self.loop = loop
        self.sock = sock
        self._fd = sock.fileno()
        self._initializer = initializer
        self._options = options
        self._paused = False
        self._closed = False
        self.close_future = Future()
        self.accepted = 0
        self.accept_pauses = 0
        loop.add_reader(self._fd, self, EPOLLIN)

    @property
    def local_address(self) -> Any:
        return self.sock.getsockname()

    def _handle_events(self, events: int) -> None:
        accept = self.sock.accept
        for _ in range(self.ACCEPT_BATCH):
            try:
                conn, address = accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno in (
                    errno.EMFILE,
                    errno.ENFILE,
                    errno.ENOBUFS,
                    errno.ENOMEM,
                ):
                    self._pause_accepting(exc)
                    return
                if exc.errno == errno.ECONNABORTED:
                    continue  # the client gave up while queued
                raise
            self.accepted += 1
            self._start_child(conn, address)

    def _start_child(self, conn: socket.socket, address: Any) -> None:
        try:
            child = SocketChannel(self.loop, conn, self._options, address)
            self._initializer(child)
        except Exception:
            _log.exception("initializing a connection from %s failed", address)
            conn.close()
            return
        child.register()

    def _pause_accepting(self, exc: OSError) -> None:
        if self._paused or self._closed:
            return
        self._paused = True
        self.accept_pauses += 1
        _log.warning(
            "accept failed (%s); pausing accepts for %.1fs",
            exc.strerror,
            self.ACCEPT_RETRY_DELAY,
        )
        # Unwatched, not removed: shutdown must still find and close it.
        self.loop.unwatch(self._fd)
        self.loop.call_later(self.ACCEPT_RETRY_DELAY, self._resume_accepting)

    def _resume_accepting(self) -> None:
        if self._closed:
            return
        self._paused = False
        self.loop.add_reader(self._fd, self, EPOLLIN)

    def close(self) -> Future:
        if not self._closed:
            self._closed = True
            self.loop.remove(self._fd)
            self.loop.close_socket_later(self.sock)
            self.close_future.try_set_result(None)
        return self.close_future

    def __repr__(self) -> str:
        return f"<ServerSocketChannel {self.local_address}>"
