"""Pending writes of one channel: Netty's ChannelOutboundBuffer.

``write()`` only queues; ``flush()`` marks everything queued so far as
ready and asks the transport to send it. Separating the two is what lets a
handler answer sixteen requests with sixteen writes and one system call:
the socket channel sends the flushed entries with one gathering
``sendmsg`` (at most ``IOV_MAX`` buffers at a time), after joining runs of
small entries into one buffer, which then goes through plain ``send``
(see ``gather``).

Memory is bounded by watermarks. Every queued entry counts its length plus
a fixed overhead (the entry's own bookkeeping, so that a flood of empty
messages still counts). Above the high watermark the channel turns
unwritable and the pipeline hears ``channel_writability_changed``; below
the low watermark it turns writable again. Handlers that respect this
(stop producing while unwritable) keep memory bounded however slow the
peer is.

Completion is tracked by byte position instead of per-entry objects:
each write that carries a future records the stream offset at which it
ends, and the future succeeds when that many bytes have left. Writes
without a future, the common case, cost one list append.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable
from typing import Any, Final

from .buffer import ByteBuf, BytesLike
from .future import Future

__all__ = ["ChannelClosedError", "OutboundBuffer", "WriteBufferWaterMark"]


def _iov_max() -> int:
    try:
        return os.sysconf("SC_IOV_MAX")
    except (ValueError, OSError):  # pragma: no cover - Linux has it
        return 1024


# Buffers one sendmsg may take (1024 on Linux).
IOV_MAX: Final = _iov_max()

# Bytes counted per queued entry on top of its length, for the entry's own
# memory; Netty uses 96 for its Java entry object.
ENTRY_OVERHEAD: Final = 64


# Entries smaller than this on average are joined before a gathering
# write (see OutboundBuffer.gather).
JOIN_BELOW: Final = 1024


class ChannelClosedError(ConnectionError):
    """The channel closed before this write could be sent."""


class WriteBufferWaterMark:
    """Where writability flips. Netty's defaults: 32 KiB low, 64 KiB high.

    64 KiB per channel is about one socket send buffer: enough to keep the
    kernel busy, small enough that 10,000 slow peers cost at most 640 MiB.
    """

    __slots__ = ("high", "low")

    def __init__(self, low: int = 32 * 1024, high: int = 64 * 1024) -> None:
        if low < 0 or high < low:
            raise ValueError(f"need 0 <= low <= high, got {low}, {high}")
        self.low = low
        self.high = high

    def __repr__(self) -> str:
        return f"WriteBufferWaterMark(low={self.low}, high={self.high})"


DEFAULT_WATER_MARK: Final = WriteBufferWaterMark()


def as_buffer(msg: Any) -> BytesLike:
    """The bytes of an outbound message, without copying when possible."""
    if isinstance(msg, (bytes, bytearray, memoryview)):
        return msg
    if isinstance(msg, ByteBuf):
        return msg.view()
    raise TypeError(
        f"cannot write {type(msg).__name__}: the transport takes bytes, "
        "bytearray, memoryview or ByteBuf (add an encoder for the rest)"
    )


class OutboundBuffer:
    """Queued and flushed writes of one channel, with watermark tracking.

    ``entries`` holds buffers in order; the first ``flushed`` of them are
    ready to go, and ``head_offset`` bytes of the first one were already
    sent. The transport reads those three fields and reports progress with
    ``remove_bytes``.
    """

    __slots__ = (
        "_high",
        "_low",
        "_on_writability",
        "_promises",
        "entries",
        "flushed",
        "flushed_bytes",
        "head_offset",
        "pending",
        "total_written",
        "unwritable",
        "water_mark",
    )

    def __init__(
        self,
        on_writability: Callable[[], None],
        water_mark: WriteBufferWaterMark = DEFAULT_WATER_MARK,
    ) -> None:
        self.entries: list[BytesLike] = []
        self.flushed = 0
        self.flushed_bytes = 0
        self.head_offset = 0
        # Bytes (plus per-entry overhead) queued and not yet written.
        self.pending = 0
        # Bytes ever written: the stream position futures wait for.
        self.total_written = 0
        self.unwritable = False
        self.water_mark = water_mark
        self._high = water_mark.high
        self._low = water_mark.low
        self._on_writability = on_writability
        # (stream offset where the write ends, future), in offset order.
        self._promises: deque[tuple[int, Future]] | None = None

    def __len__(self) -> int:
        return len(self.entries)

    def is_empty(self) -> bool:
        return not self.entries

    def add(self, msg: Any, promise: Future | None) -> None:
        """Queue one message (not yet flushed).

        A ``memoryview`` must be a flat view of bytes (format "B"), as
        frames and ``ByteBuf.view()`` are: sizes are its ``len``, and
        checking every view's format would cost 5 % of echo throughput
        (measured). Cast a wider view first: ``view.cast("B")``.
        """
        # This runs once per message: exact type checks before the
        # general conversion, and no more bookkeeping than the watermark
        # needs (a future's position is derived only when there is one).
        if type(msg) is not memoryview and type(msg) is not bytes:
            msg = as_buffer(msg)
        self.entries.append(msg)
        pending = self.pending = self.pending + len(msg) + ENTRY_OVERHEAD
        if promise is not None:
            self._track(promise)
        if pending > self._high and not self.unwritable:
            self.unwritable = True
            self._on_writability()

    def _track(self, promise: Future) -> None:
        # Unwritten bytes are what is pending minus the per-entry
        # overheads; the write ends that far past what was written.
        unwritten = self.pending - ENTRY_OVERHEAD * len(self.entries)
        if self._promises is None:
            self._promises = deque()
        self._promises.append((self.total_written + unwritten, promise))

    def add_flush(self) -> None:
        """Mark every queued entry as ready to send."""
        entries = self.entries
        if self.flushed == len(entries):
            return
        # All entries are flushed now, so their total size follows from
        # the pending count (sizes plus overheads, less what was sent)
        # without walking the list.
        self.flushed_bytes = (
            self.pending - ENTRY_OVERHEAD * len(entries) + self.head_offset
        )
        self.flushed = len(entries)

    def flushed_buffers(self, max_bytes: int) -> list[BytesLike]:
        """The next flushed buffers for one gathering write.

        At most IOV_MAX buffers, stopping once ``max_bytes`` is reached
        (but always at least one, so that progress is made).
        """
        count = min(self.flushed, IOV_MAX)
        entries = self.entries
        if count == self.flushed and self.flushed_bytes <= max_bytes:
            buffers = entries[:count]
        else:
            buffers = []
            total = 0
            for i in range(count):
                buffers.append(entries[i])
                total += len(entries[i])
                if total >= max_bytes:
                    break
        if self.head_offset:
            buffers[0] = memoryview(buffers[0])[self.head_offset :]
        return buffers

    def gather(self, max_bytes: int) -> tuple[list[BytesLike], int]:
        """The buffers for the next ``sendmsg`` and their total size.

        Runs of small entries are joined into one buffer first. Each
        buffer handed to sendmsg costs about 0.1 us in Python and in the
        kernel, while copying 64 bytes costs a few nanoseconds; for large
        entries the balance reverses and they go as they are, unjoined.
        (Measured: docs/perf/001-echo-reactor.md.)
        """
        flushed = self.flushed
        offered = self.flushed_bytes - self.head_offset
        if (
            flushed == len(self.entries)
            and not self.head_offset
            and flushed <= IOV_MAX
            and offered <= max_bytes
        ):
            # The usual case: everything queued goes in one call.
            buffers = self.entries
            if flushed > 1 and offered < flushed * JOIN_BELOW:
                return [b"".join(buffers)], offered
            return buffers[:], offered
        buffers = self.flushed_buffers(max_bytes)
        if len(buffers) != flushed:
            offered = sum(map(len, buffers))
        if len(buffers) > 1 and offered < len(buffers) * JOIN_BELOW:
            return [b"".join(buffers)], offered
        return buffers, offered

    def remove_bytes(self, written: int) -> None:
        """Account for ``written`` bytes that left from the flushed head."""
        if written == self.flushed_bytes - self.head_offset:
            # Everything flushed went out: the common case, no walking.
            count = self.flushed
            del self.entries[:count]
            self.flushed = 0
            self.flushed_bytes = 0
            self.head_offset = 0
            self._written(written, count)
            return
        entries = self.entries
        remaining = written + self.head_offset
        done = 0
        while done < self.flushed:
            size = len(entries[done])
            if remaining < size:
                break
            remaining -= size
            done += 1
        del entries[:done]
        self.flushed -= done
        self.flushed_bytes -= written + self.head_offset - remaining
        self.head_offset = remaining
        self._written(written, done)

    def _written(self, written: int, entries_done: int) -> None:
        self.total_written += written
        self.pending -= written + entries_done * ENTRY_OVERHEAD
        promises = self._promises
        if promises:
            position = self.total_written
            while promises and promises[0][0] <= position:
                promises.popleft()[1].try_set_result(None)
        if self.unwritable and self.pending < self._low:
            self.unwritable = False
            self._on_writability()

    def fail_all(self, cause: BaseException) -> None:
        """Drop everything queued and fail the futures waiting on it."""
        self.entries.clear()
        self.flushed = 0
        self.flushed_bytes = 0
        self.head_offset = 0
        self.pending = 0
        promises, self._promises = self._promises, None
        if promises:
            for _, promise in promises:
                promise.try_set_exception(cause)
