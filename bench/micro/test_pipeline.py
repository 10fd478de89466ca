"""Microbenchmarks of pipeline dispatch: what one more handler costs.

One event per call, so **the medians are times per event**: a 60-byte
``memoryview`` (a decoded frame) fired inbound at the head of an
``EmbeddedChannel``, or written outbound at its tail, through a chain of
handlers to a sink at the far end that takes it (so nothing piles up in
the channel between calls).

* ``test_inbound_read[forward-N]``: ``pipeline.fire_channel_read``
  through N inbound handlers that override ``channel_read`` only to pass
  the message on, the least a handler that looks at reads can do.
* ``test_outbound_write[forward-N]``: ``channel.write`` (what a business
  handler calls) through N outbound handlers overriding ``write``.
* ``[skip-8]``: eight handlers of the other direction in the chain
  instead, as decoders and encoders share a server's pipeline. The skip
  masks step over them without calling them.

How to read them: one handler costs the slope,
``(median[forward-8] - median[forward-1]) / 7``, and ``forward-4``
should fall on that line. The fixed cost of an event (the entry call,
the sink, the benchmark's own call) is ``median[forward-1]`` less one
slope; ``(median[skip-8] - fixed) / 8`` is what a handler that does not
take the event costs (the mask test that steps over its context).

Run: ``pytest bench/micro/test_pipeline.py --benchmark-only``.
"""

from __future__ import annotations

from typing import Any

import pytest

from reactor.embedded import EmbeddedChannel
from reactor.future import Future
from reactor.pipeline import (
    M_READ,
    M_WRITE,
    ChannelHandler,
    ChannelHandlerContext,
    ChannelInboundHandler,
    ChannelOutboundHandler,
    handler_mask,
)

MSG = memoryview(bytes(64))[4:]
CHAINS = ["forward-1", "forward-4", "forward-8", "skip-8"]


class ForwardRead(ChannelInboundHandler):
    """Passes every read on; an override, so reads do enter it."""

    __slots__ = ()

    def channel_read(self, ctx: ChannelHandlerContext, msg: Any) -> None:
        ctx.fire_channel_read(msg)


class ForwardWrite(ChannelOutboundHandler):
    """Passes every write on; an override, so writes do enter it."""

    __slots__ = ()

    def write(
        self, ctx: ChannelHandlerContext, msg: Any, promise: Future | None
    ) -> None:
        ctx.write(msg, promise)


# The benchmarks mean nothing if the masks skip the forwarders, or do not
# skip the handlers of the other direction.
assert handler_mask(ForwardRead) == M_READ
assert handler_mask(ForwardWrite) == M_WRITE


class ReadSink(ChannelInboundHandler):
    __slots__ = ("count", "last")

    def __init__(self) -> None:
        self.count = 0
        self.last: Any = None

    def channel_read(self, ctx: ChannelHandlerContext, msg: Any) -> None:
        self.count += 1
        self.last = msg


class WriteSink(ChannelOutboundHandler):
    __slots__ = ("count", "last")

    def __init__(self) -> None:
        self.count = 0
        self.last: Any = None

    def write(
        self, ctx: ChannelHandlerContext, msg: Any, promise: Future | None
    ) -> None:
        self.count += 1
        self.last = msg


def chain_of(
    name: str, forward: type[ChannelHandler], other: type[ChannelHandler]
) -> list[ChannelHandler]:
    kind, count = name.split("-")
    cls = forward if kind == "forward" else other
    return [cls() for _ in range(int(count))]


@pytest.mark.benchmark(group="pipeline inbound read")
@pytest.mark.parametrize("chain", CHAINS)
def test_inbound_read(benchmark: Any, chain: str) -> None:
    sink = ReadSink()
    handlers = chain_of(chain, ForwardRead, ForwardWrite)
    channel = EmbeddedChannel(*handlers, sink)

    benchmark(channel.pipeline.fire_channel_read, MSG)
    channel.check_exception()
    assert sink.count > 0 and sink.last is MSG
    assert not channel.inbound  # nothing went past the sink
    assert channel.pipeline.handlers() == [*handlers, sink]


@pytest.mark.benchmark(group="pipeline outbound write")
@pytest.mark.parametrize("chain", CHAINS)
def test_outbound_write(benchmark: Any, chain: str) -> None:
    sink = WriteSink()
    handlers = chain_of(chain, ForwardWrite, ForwardRead)
    # Writes travel tail to head: the sink goes first, next to the head.
    channel = EmbeddedChannel(sink, *handlers)

    benchmark(channel.write, MSG)
    channel.check_exception()
    assert sink.count > 0 and sink.last is MSG
    channel.flush()
    assert channel.read_outbound() is None  # nothing went past the sink
    assert channel.pipeline.handlers() == [sink, *handlers]
