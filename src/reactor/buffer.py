"""A byte buffer with two indexes, modelled on Netty's ByteBuf.

Layout of a buffer::

    +-------------------+------------------+------------------+
    | discardable bytes |  readable bytes  |  writable bytes  |
    +-------------------+------------------+------------------+
    0        <=    reader_index   <=   writer_index   <=   capacity

Reads advance ``reader_index``, writes advance ``writer_index``; ``get_*``
and ``set_*`` take an absolute offset and move nothing.

Storage is a ``bytearray``. Zero-copy slices are ``memoryview`` objects on
it, and here is the catch that shapes this module: CPython refuses to
resize a ``bytearray`` while any memoryview of it is alive (``BufferError``).
A decoder that handed out frames as views therefore cannot compact or grow
the same storage in place. Whenever that happens we move the readable bytes
into a fresh ``bytearray`` instead; the old one lives on, unchanged, for as
long as some view still needs it. Views handed out stay valid and never see
their bytes change under them.

``AdaptiveReadSize`` sizes socket reads the way Netty's adaptive receive
allocator does: grow fast when reads fill the buffer, shrink slowly when
they do not.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import Final

__all__ = ["AdaptiveReadSize", "ByteBuf", "BytesLike"]

# What sockets accept and views give back.
BytesLike = bytes | bytearray | memoryview

_U16_BE = struct.Struct(">H")
_U16_LE = struct.Struct("<H")
_U32_BE = struct.Struct(">I")
_U32_LE = struct.Struct("<I")
_U64_BE = struct.Struct(">Q")
_U64_LE = struct.Struct("<Q")
_I32_BE = struct.Struct(">i")
_I64_BE = struct.Struct(">q")

# Growth rule borrowed from Netty: double up to 4 MiB, then grow in 4 MiB
# steps so that a large buffer does not suddenly reserve twice its size.
_DOUBLING_LIMIT: Final = 4 * 1024 * 1024
_MIN_CAPACITY: Final = 64


def _grown_capacity(needed: int) -> int:
    if needed > _DOUBLING_LIMIT:
        steps = -(-needed // _DOUBLING_LIMIT)
        return steps * _DOUBLING_LIMIT
    capacity = _MIN_CAPACITY
    while capacity < needed:
        capacity <<= 1
    return capacity


class ByteBuf:
    """A growable byte buffer with separate reader and writer indexes."""

    __slots__ = ("_data", "_reader", "_writer")

    def __init__(self, capacity: int = 256) -> None:
        if capacity < 0:
            raise ValueError(f"capacity must be >= 0, got {capacity}")
        self._data = bytearray(capacity)
        self._reader = 0
        self._writer = 0

    @classmethod
    def wrap(cls, data: BytesLike) -> ByteBuf:
        """A buffer whose readable bytes are a copy of ``data``."""
        buf = cls.__new__(cls)
        buf._data = bytearray(data)
        buf._reader = 0
        buf._writer = len(buf._data)
        return buf

    @classmethod
    def adopt(cls, data: bytearray) -> ByteBuf:
        """A buffer that takes ownership of ``data`` without copying it.

        The caller must not use ``data`` afterwards; the buffer may write
        into it.
        """
        buf = cls.__new__(cls)
        buf._data = data
        buf._reader = 0
        buf._writer = len(data)
        return buf

    # -- indexes --------------------------------------------------------------

    @property
    def reader_index(self) -> int:
        return self._reader

    @reader_index.setter
    def reader_index(self, index: int) -> None:
        if not 0 <= index <= self._writer:
            raise IndexError(f"reader_index {index} outside 0..{self._writer}")
        self._reader = index

    @property
    def writer_index(self) -> int:
        return self._writer

    @writer_index.setter
    def writer_index(self, index: int) -> None:
        if not self._reader <= index <= len(self._data):
            raise IndexError(
                f"writer_index {index} outside "
                f"{self._reader}..{len(self._data)}"
            )
        self._writer = index

    @property
    def capacity(self) -> int:
        return len(self._data)

    def readable_bytes(self) -> int:
        return self._writer - self._reader

    def writable_bytes(self) -> int:
        return len(self._data) - self._writer

    def is_readable(self) -> bool:
        return self._writer > self._reader

    def __len__(self) -> int:
        return self._writer - self._reader

    def clear(self) -> None:
        """Forget all content; the storage is kept, not zeroed (unless a
        view of it lives: then it gets fresh storage, see the module doc)."""
        self._reset()

    def _reset(self) -> None:
        # Writing from offset 0 again would change the bytes that live
        # views show; such views keep the old storage instead.
        if _has_live_views(self._data):
            self._data = bytearray(len(self._data))
        self._reader = self._writer = 0

    # -- zero-copy views ------------------------------------------------------

    def view(self) -> memoryview:
        """A zero-copy view of the readable bytes; indexes do not move."""
        data = self._data
        if self._reader == 0 and self._writer == len(data):
            # What a socket read gives: one object instead of two.
            return memoryview(data)
        return memoryview(data)[self._reader : self._writer]

    def slice(self, index: int, length: int) -> memoryview:
        """A zero-copy view of ``length`` bytes at absolute ``index``."""
        self._check_range(index, length, self._writer)
        return memoryview(self._data)[index : index + length]

    def read_slice(self, length: int) -> memoryview:
        """The next ``length`` readable bytes as a view; advances."""
        start = self._reader
        self._check_range(start, length, self._writer)
        self._reader = start + length
        return memoryview(self._data)[start : start + length]

    def writable_view(self, min_size: int = 1) -> memoryview:
        """A view of the writable region, at least ``min_size`` long.

        Fill it (for example with ``socket.recv_into``) and then call
        ``advance_writer`` with the count written.
        """
        self.ensure_writable(min_size)
        return memoryview(self._data)[self._writer :]

    def advance_writer(self, count: int) -> None:
        if not 0 <= count <= len(self._data) - self._writer:
            raise IndexError(f"cannot advance writer by {count}")
        self._writer += count

    # -- reading --------------------------------------------------------------

    def skip_bytes(self, count: int) -> None:
        self._check_range(self._reader, count, self._writer)
        self._reader += count

    def read_bytes(self, count: int) -> bytes:
        start = self._reader
        self._check_range(start, count, self._writer)
        self._reader = start + count
        return bytes(self._data[start : start + count])

    def read_u8(self) -> int:
        self._check_range(self._reader, 1, self._writer)
        value = self._data[self._reader]
        self._reader += 1
        return value

    def read_u16(self) -> int:
        return self._read(_U16_BE)

    def read_u16_le(self) -> int:
        return self._read(_U16_LE)

    def read_u32(self) -> int:
        return self._read(_U32_BE)

    def read_u32_le(self) -> int:
        return self._read(_U32_LE)

    def read_i32(self) -> int:
        return self._read(_I32_BE)

    def read_u64(self) -> int:
        return self._read(_U64_BE)

    def read_u64_le(self) -> int:
        return self._read(_U64_LE)

    def read_i64(self) -> int:
        return self._read(_I64_BE)

    def get_u8(self, index: int) -> int:
        self._check_range(index, 1, self._writer)
        return self._data[index]

    def get_uint(
        self, index: int, length: int, big_endian: bool = True
    ) -> int:
        """An unsigned integer of ``length`` bytes at ``index``."""
        self._check_range(index, length, self._writer)
        return int.from_bytes(
            self._data[index : index + length],
            "big" if big_endian else "little",
        )

    def _read(self, codec: struct.Struct) -> int:
        start = self._reader
        self._check_range(start, codec.size, self._writer)
        self._reader = start + codec.size
        value: int = codec.unpack_from(self._data, start)[0]
        return value

    # -- writing --------------------------------------------------------------

    def write_bytes(self, data: BytesLike) -> None:
        count = len(data)
        self.ensure_writable(count)
        self._data[self._writer : self._writer + count] = data
        self._writer += count

    def write_u8(self, value: int) -> None:
        self.ensure_writable(1)
        self._data[self._writer] = value
        self._writer += 1

    def write_u16(self, value: int) -> None:
        self._write(_U16_BE, value)

    def write_u16_le(self, value: int) -> None:
        self._write(_U16_LE, value)

    def write_u32(self, value: int) -> None:
        self._write(_U32_BE, value)

    def write_u32_le(self, value: int) -> None:
        self._write(_U32_LE, value)

    def write_i32(self, value: int) -> None:
        self._write(_I32_BE, value)

    def write_u64(self, value: int) -> None:
        self._write(_U64_BE, value)

    def write_u64_le(self, value: int) -> None:
        self._write(_U64_LE, value)

    def write_i64(self, value: int) -> None:
        self._write(_I64_BE, value)

    def set_uint(
        self, index: int, length: int, value: int, big_endian: bool = True
    ) -> None:
        """Store ``value`` in ``length`` bytes at ``index``; no index moves."""
        self._check_range(index, length, len(self._data))
        self._data[index : index + length] = value.to_bytes(
            length, "big" if big_endian else "little"
        )

    def _write(self, codec: struct.Struct, value: int) -> None:
        self.ensure_writable(codec.size)
        codec.pack_into(self._data, self._writer, value)
        self._writer += codec.size

    # -- capacity and compaction ----------------------------------------------

    def ensure_writable(self, count: int) -> None:
        """Make room for ``count`` more bytes after ``writer_index``."""
        if len(self._data) - self._writer >= count:
            return
        readable = self._writer - self._reader
        needed = readable + count
        # Reclaiming the read part is enough when it frees a lot of room;
        # otherwise grow. Either way may meet live views (see module doc).
        if self._reader and len(self._data) >= 2 * needed:
            self._move_readable(len(self._data))
        else:
            self._move_readable(_grown_capacity(needed))

    def discard_read_bytes(self) -> None:
        """Move the readable bytes to offset 0, reclaiming the read ones."""
        if self._reader == 0:
            return
        if self._reader == self._writer:
            self._reset()
            return
        self._move_readable(len(self._data))

    def discard_some_read_bytes(self) -> None:
        """The cheap compaction decoders use between reads.

        Resets when everything was read, moves bytes only when more than
        half of the capacity is already read, and otherwise does nothing.
        """
        if self._reader == self._writer:
            self._reset()
        elif self._reader > len(self._data) >> 1:
            self._move_readable(len(self._data))

    def _move_readable(self, capacity: int) -> None:
        start, end = self._reader, self._writer
        data = self._data
        if _has_live_views(data):
            fresh = bytearray(capacity)
            fresh[: end - start] = data[start:end]
            self._data = fresh
        else:
            # A memmove, then a resize that may reuse the same block.
            data[: end - start] = data[start:end]
            del data[end - start :]
            data.extend(bytes(capacity - (end - start)))
        self._reader, self._writer = 0, end - start

    # -- misc -----------------------------------------------------------------

    def to_bytes(self) -> bytes:
        """A copy of the readable bytes; indexes do not move."""
        return bytes(self._data[self._reader : self._writer])

    def __iter__(self) -> Iterator[int]:
        return iter(self._data[self._reader : self._writer])

    def __repr__(self) -> str:
        return (
            f"ByteBuf(ridx={self._reader}, widx={self._writer}, "
            f"cap={len(self._data)})"
        )

    @staticmethod
    def _check_range(index: int, length: int, limit: int) -> None:
        if length < 0 or index < 0 or index + length > limit:
            raise IndexError(
                f"range {index}..{index + length} outside 0..{limit}"
            )


def _has_live_views(data: bytearray) -> bool:
    """Whether some memoryview still exports ``data``.

    CPython has no query for this; a resize attempt is the test. It must
    happen before any byte moves, or a live view would see its bytes change.
    """
    try:
        data.append(0)
    except BufferError:
        return True
    data.pop()
    return False


def _read_size_table() -> tuple[int, ...]:
    # 16..496 in steps of 16, then powers of two up to 1 GiB: fine steps
    # where small reads are common, coarse ones above.
    sizes = list(range(16, 512, 16))
    size = 512
    while size <= 1 << 30:
        sizes.append(size)
        size <<= 1
    return tuple(sizes)


_READ_SIZES: Final = _read_size_table()


def _index_of(size: int) -> int:
    for i, candidate in enumerate(_READ_SIZES):
        if candidate >= size:
            return i
    return len(_READ_SIZES) - 1


class AdaptiveReadSize:
    """Guess how many bytes the next socket read should ask for.

    Netty's rule: a read that fills the guess makes the next guess four
    table steps larger at once; the guess shrinks one step only after two
    reads in a row came in under the next smaller size. Fast up, slow down
    keeps bulk transfers efficient without bloating idle-ish connections.
    """

    __slots__ = (
        "_index",
        "_max_index",
        "_min_index",
        "_shrink_below",
        "_shrink_next",
        "guess",
    )

    STEP_UP: Final = 4
    STEP_DOWN: Final = 1

    def __init__(
        self, minimum: int = 64, initial: int = 2048, maximum: int = 65536
    ) -> None:
        if not minimum <= initial <= maximum:
            raise ValueError("need minimum <= initial <= maximum")
        self._min_index = _index_of(minimum)
        self._max_index = _index_of(maximum)
        self._shrink_next = False
        self._move_to(_index_of(initial))

    def _move_to(self, index: int) -> None:
        self._index = index
        self.guess = _READ_SIZES[index]
        # A read at or under this size counts towards shrinking.
        self._shrink_below = _READ_SIZES[
            max(index - self.STEP_DOWN, self._min_index)
        ]

    def record(self, total_read: int) -> None:
        """Feed the byte count of one read batch; adjusts the guess."""
        # Runs once per read: the two thresholds are precomputed, so the
        # usual case (neither) costs two comparisons.
        if total_read <= self._shrink_below:
            if self._shrink_next:
                self._shrink_next = False
                self._move_to(
                    max(self._index - self.STEP_DOWN, self._min_index)
                )
            else:
                self._shrink_next = True
        elif total_read >= self.guess:
            self._shrink_next = False
            self._move_to(min(self._index + self.STEP_UP, self._max_index))
