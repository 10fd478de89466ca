"""Microbenchmarks of ``ByteBuf``, on the operations the hot path uses.

The workload, as for the codec: **1024 messages of 64 bytes, 64 KiB in
all, in a buffer of 64 KiB**. Every benchmark but the compaction ones
does 1024 operations per round, one per message; divide a median by
1024 for the cost of one operation (the Python ``for`` loop around it,
some 15 ns, is included).

* ``test_write_bytes``: 1024 payloads of 64 bytes into a cleared
  buffer, as ``bytes`` and as ``memoryview`` (frames are views).
* ``test_write_frame``: a 4-byte big-endian length and a 60-byte
  payload, 1024 times: the 64 KiB the codec benchmarks decode.
* ``test_write_int`` and ``test_read_int``: 1024 integers of 4 and 8
  bytes, big- and little-endian.
* ``test_read_frame``: the decoder's loop by hand: a length, then its
  payload as a zero-copy ``read_slice``, 1024 times.
* ``test_slice``: a 64-byte view at an absolute offset (``slice``), at
  the reader (``read_slice``), and the copy a view avoids
  (``read_bytes``).
* ``test_discard_read_bytes``: one compaction of a full 64 KiB buffer
  per round (not 1024), with half a frame (32 bytes) left unread, or
  everything read; with no view of the storage alive, or with one (a
  frame still held by a handler, which forces fresh storage). These
  rounds are one call each, so each includes the timer's own cost (some
  0.1 us: subtract it before comparing).

Run: ``pytest bench/micro/test_buffer.py --benchmark-only``.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

import pytest

from reactor.buffer import ByteBuf

MESSAGES = 1024
SIZE = 64
CAPACITY = MESSAGES * SIZE
PAYLOAD = bytes(range(SIZE))
FRAME = struct.pack(">I", SIZE - 4) + PAYLOAD[: SIZE - 4]
DATA = FRAME * MESSAGES
assert len(DATA) == CAPACITY == 64 * 1024

ROUNDS = 200

# name -> (write method, read method, struct format)
INTS = {
    "u32-be": ("write_u32", "read_u32", ">I"),
    "u32-le": ("write_u32_le", "read_u32_le", "<I"),
    "u64-be": ("write_u64", "read_u64", ">Q"),
    "u64-le": ("write_u64_le", "read_u64_le", "<Q"),
}
# One value for every width: its bytes differ under either byte order,
# so reading with the wrong one would fail the check.
VALUE = 0x01020304


# -- writing ------------------------------------------------------------------


@pytest.mark.benchmark(group="buffer write")
@pytest.mark.parametrize("kind", [bytes, memoryview], ids=lambda k: k.__name__)
def test_write_bytes(benchmark: Any, kind: type) -> None:
    buf = ByteBuf(CAPACITY)
    payload = kind(PAYLOAD)
    write = buf.write_bytes

    def fill() -> None:
        buf.clear()
        for _ in range(MESSAGES):
            write(payload)

    benchmark(fill)
    assert buf.to_bytes() == PAYLOAD * MESSAGES
    assert buf.capacity == CAPACITY  # filled, never grown


@pytest.mark.benchmark(group="buffer write")
def test_write_frame(benchmark: Any) -> None:
    buf = ByteBuf(CAPACITY)
    payload = PAYLOAD[: SIZE - 4]
    write_u32, write_bytes = buf.write_u32, buf.write_bytes

    def fill() -> None:
        buf.clear()
        for _ in range(MESSAGES):
            write_u32(SIZE - 4)
            write_bytes(payload)

    benchmark(fill)
    assert buf.to_bytes() == DATA and buf.capacity == CAPACITY


@pytest.mark.benchmark(group="buffer write")
@pytest.mark.parametrize("name", list(INTS))
def test_write_int(benchmark: Any, name: str) -> None:
    method, _, fmt = INTS[name]
    buf = ByteBuf(CAPACITY)
    write: Callable[[int], None] = getattr(buf, method)

    def fill() -> None:
        buf.clear()
        for _ in range(MESSAGES):
            write(VALUE)

    benchmark(fill)
    assert buf.to_bytes() == struct.pack(fmt, VALUE) * MESSAGES


# -- reading ------------------------------------------------------------------


@pytest.mark.benchmark(group="buffer read")
@pytest.mark.parametrize("name", list(INTS))
def test_read_int(benchmark: Any, name: str) -> None:
    _, method, fmt = INTS[name]
    buf = ByteBuf.wrap(struct.pack(fmt, VALUE) * MESSAGES)
    read: Callable[[], int] = getattr(buf, method)

    def drain() -> int:
        buf.reader_index = 0
        value = 0
        for _ in range(MESSAGES):
            value = read()
        return value

    assert benchmark(drain) == VALUE
    assert not buf.is_readable()


@pytest.mark.benchmark(group="buffer read")
def test_read_frame(benchmark: Any) -> None:
    buf = ByteBuf.wrap(DATA)
    read_u32, read_slice = buf.read_u32, buf.read_slice

    def drain() -> memoryview:
        buf.reader_index = 0
        for _ in range(MESSAGES):
            frame = read_slice(read_u32())
        return frame

    assert benchmark(drain) == FRAME[4:]
    assert not buf.is_readable()


@pytest.mark.benchmark(group="buffer slice")
@pytest.mark.parametrize("method", ["slice", "read_slice", "read_bytes"])
def test_slice(benchmark: Any, method: str) -> None:
    buf = ByteBuf.wrap(PAYLOAD * MESSAGES)
    offsets = range(0, CAPACITY, SIZE)
    if method == "slice":
        take = buf.slice

        def cut() -> Any:
            for offset in offsets:
                piece = take(offset, SIZE)
            return piece

    else:
        take_next = getattr(buf, method)

        def cut() -> Any:
            buf.reader_index = 0
            for _ in offsets:
                piece = take_next(SIZE)
            return piece

    piece = benchmark(cut)
    assert type(piece) is (bytes if method == "read_bytes" else memoryview)
    assert piece == PAYLOAD


# -- compaction ---------------------------------------------------------------

Compaction = tuple[ByteBuf, memoryview | None]


@pytest.mark.benchmark(group="buffer compaction")
@pytest.mark.parametrize("live", [False, True], ids=["no-view", "live-view"])
@pytest.mark.parametrize("left", [SIZE // 2, 0], ids=["tail-32", "all-read"])
def test_discard_read_bytes(benchmark: Any, left: int, live: bool) -> None:
    buf = ByteBuf.wrap(DATA)

    def full_buffer() -> tuple[Compaction, dict[str, Any]]:
        # Compaction zeroes what it frees: write the last two frames
        # again, read all but ``left`` bytes, maybe hold the last whole
        # frame as a handler would.
        buf.writer_index = CAPACITY - 2 * SIZE
        buf.write_bytes(FRAME * 2)
        buf.reader_index = CAPACITY - left
        held = buf.slice(CAPACITY - SIZE, SIZE) if live else None
        return (buf, held), {}

    def compact(buf: ByteBuf, held: memoryview | None) -> memoryview | None:
        buf.discard_read_bytes()
        return held

    held = benchmark.pedantic(compact, setup=full_buffer, rounds=ROUNDS)
    assert buf.reader_index == 0 and buf.capacity == CAPACITY
    assert buf.to_bytes() == DATA[CAPACITY - left :]
    # A live view keeps its bytes: the storage it shows was left alone.
    assert held is None or held == FRAME
