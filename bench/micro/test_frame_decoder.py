"""Microbenchmarks of the length-field codec.

The workload, everywhere below: **64-byte frames on the wire**, each a
4-byte big-endian length field (value 60) and a 60-byte payload; the
decoder is ``LengthFieldBasedFrameDecoder(65536, 0, 4, 0, 4)``, so every
frame handed on is a 60-byte ``memoryview``. 1024 such frames make
exactly 64 KiB. Divide a 64 KiB median by 1024 for the cost per frame.

* ``test_scan``: the scanner alone on one 64 KiB ``bytes``; each frame is
  made and freed (handed to a sink that drops it). ``test_scan_collect``
  keeps the round's frames in a list instead, until the round ends.
* ``test_decoder_64k``: the whole handler in an embedded pipeline, with
  one handler after it that takes the frames.
* ``test_decoder_frame_per_read``: the ping-pong case, 1024 reads of one
  frame each, every read a fresh ``ByteBuf`` as a socket channel fires it
  (made outside the timing).
* ``test_prepend``: 1024 payloads of 64 bytes through a prepender on a
  real socket channel (outbound buffer, one flush, ``sendmsg`` on a Unix
  socket pair drained each round): the header joined to the payload,
  against header and payload as two messages.

Run: ``pytest bench/micro --benchmark-only`` (add ``--benchmark-columns=
median,ops`` for a short table).
"""

from __future__ import annotations

import collections
import socket
import struct
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import pytest

from codec import LengthFieldPrepender
from codec.frame import LengthFieldBasedFrameDecoder
from reactor.buffer import ByteBuf
from reactor.channel import SocketChannel
from reactor.embedded import EmbeddedChannel
from reactor.loop import EventLoop
from reactor.pipeline import ChannelHandlerContext, ChannelInboundHandler

FRAMES = 1024
PAYLOAD = 60
FRAME = struct.pack(">I", PAYLOAD) + bytes(range(PAYLOAD))
DATA = FRAME * FRAMES
assert len(FRAME) == 64 and len(DATA) == 64 * 1024

ROUNDS = 200


def decoder_class(build: ModuleType) -> type[LengthFieldBasedFrameDecoder]:
    return type(
        "BenchDecoder",
        (LengthFieldBasedFrameDecoder,),
        {"__slots__": (), "implementation": build},
    )


class CountFrames(ChannelInboundHandler):
    """Takes the frames, as a business handler would, and counts them."""

    __slots__ = ("count",)

    def __init__(self) -> None:
        self.count = 0

    def channel_read(self, ctx: ChannelHandlerContext, msg: Any) -> None:
        self.count += 1


# -- decoding -----------------------------------------------------------------


def test_scan(benchmark: Any, build: ModuleType) -> None:
    scanner = build.FrameScanner(build.FrameSpec(65536, 0, 4, 0, 4))
    # Each frame is dropped as soon as it is handed on, as by a handler
    # that is done with it: created and freed, never kept.
    drop = collections.deque(maxlen=0).append
    frames: list[memoryview] = []
    scanner.feed(DATA, frames.append, None)
    assert len(frames) == FRAMES and bytes(frames[-1]) == FRAME[4:]

    def scan() -> None:
        scanner.feed(DATA, drop, None)

    benchmark(scan)
    assert scanner.cumulation is None


def test_scan_collect(benchmark: Any, build: ModuleType) -> None:
    # The same, keeping all 1024 frames to the end of the round: then the
    # collector's young generation fills with live views, which it
    # promotes and scans again later. A cost of holding many frames at
    # once, whichever build made them.
    scanner = build.FrameScanner(build.FrameSpec(65536, 0, 4, 0, 4))
    frames: list[memoryview] = []

    def scan() -> int:
        scanner.feed(DATA, frames.append, None)
        count = len(frames)
        frames.clear()
        return count

    assert benchmark(scan) == FRAMES


def test_decoder_64k(benchmark: Any, build: ModuleType) -> None:
    sink = CountFrames()
    channel = EmbeddedChannel(decoder_class(build)(65536, 0, 4, 0, 4), sink)

    def decode() -> None:
        channel.write_inbound(DATA)

    benchmark(decode)
    assert sink.count % FRAMES == 0 and sink.count > 0


def test_decoder_frame_per_read(benchmark: Any, build: ModuleType) -> None:
    sink = CountFrames()
    decoder = decoder_class(build)(65536, 0, 4, 0, 4)
    channel = EmbeddedChannel(decoder, sink)
    pipeline = channel.pipeline

    def fresh_reads() -> tuple[tuple[list[ByteBuf]], dict[str, Any]]:
        return ([ByteBuf.adopt(bytearray(FRAME)) for _ in range(FRAMES)],), {}

    def decode(reads: list[ByteBuf]) -> None:
        for buf in reads:
            pipeline.fire_channel_read(buf)

    benchmark.pedantic(decode, setup=fresh_reads, rounds=ROUNDS)
    assert sink.count == FRAMES * ROUNDS or benchmark.disabled


# -- encoding -----------------------------------------------------------------


class JoinedPrepender(LengthFieldPrepender):
    __slots__ = ()
    join_limit = 1 << 30


class TwoPartPrepender(LengthFieldPrepender):
    __slots__ = ()
    join_limit = -1


@pytest.fixture
def socket_channel() -> Iterator[tuple[SocketChannel, socket.socket]]:
    """A socket channel (never registered: writes go straight out) and
    the peer end it writes to."""
    loop = EventLoop()
    ours, peer = socket.socketpair()
    for sock in (ours, peer):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 22)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
    channel = SocketChannel(loop, ours)
    try:
        yield channel, peer
    finally:
        ours.close()
        peer.close()
        loop.close()


@pytest.mark.parametrize(
    "prepender_class",
    [JoinedPrepender, TwoPartPrepender],
    ids=["joined", "two-messages"],
)
def test_prepend(
    benchmark: Any,
    socket_channel: tuple[SocketChannel, socket.socket],
    prepender_class: type[LengthFieldPrepender],
) -> None:
    channel, peer = socket_channel
    channel.pipeline.add_last(prepender_class(4))
    payloads = [bytes([i % 256]) * 64 for i in range(FRAMES)]
    expected = FRAMES * (4 + 64)
    sink = bytearray(expected)
    write = channel.write

    def encode() -> None:
        for payload in payloads:
            write(payload)
        channel.flush()
        received = 0
        while received < expected:
            received += peer.recv_into(memoryview(sink)[received:])

    benchmark(encode)
    assert sink[:68] == b"\x00\x00\x00\x40" + payloads[0]
    assert not channel.has_pending_output()
