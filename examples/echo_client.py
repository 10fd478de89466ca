"""Echo client: sends frames, checks that each comes back intact.

Built on the same reactor as the server: a client bootstrap, the same
length-field decoder, and a handler that counts and compares echoes.

Run:  python examples/echo_client.py --port 9000 --count 10000 --size 64
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any

from codec import LengthFieldBasedFrameDecoder
from reactor import (
    Bootstrap,
    ChannelHandlerContext,
    ChannelInboundHandler,
    EventLoop,
    Future,
    SocketChannel,
)

# Frames kept in flight: enough to fill the pipe, few enough to bound
# what either side buffers.
WINDOW = 64


class EchoChecker(ChannelInboundHandler):
    """Sends ``count`` frames, ``WINDOW`` at a time; verifies each echo."""

    def __init__(self, frames: list[bytes], total: int, done: Future) -> None:
        self.frames = frames
        self.total = total
        self.sent = 0
        self.received = 0
        self.done = done

    def channel_active(self, ctx: ChannelHandlerContext) -> None:
        self._send_more(ctx)
        ctx.fire_channel_active()

    def channel_read(self, ctx: ChannelHandlerContext, msg: Any) -> None:
        expected = self.frames[self.received % len(self.frames)]
        if bytes(msg) != expected:
            self.done.try_set_exception(
                AssertionError(f"frame {self.received} came back altered")
            )
            ctx.close()
            return
        self.received += 1
        if self.received == self.total:
            self.done.try_set_result(self.received)
            ctx.close()

    def channel_read_complete(self, ctx: ChannelHandlerContext) -> None:
        self._send_more(ctx)

    def channel_inactive(self, ctx: ChannelHandlerContext) -> None:
        self.done.try_set_exception(
            ConnectionError(f"closed after {self.received} echoes")
        )

    def _send_more(self, ctx: ChannelHandlerContext) -> None:
        while self.sent < self.total and self.sent - self.received < WINDOW:
            ctx.write(self.frames[self.sent % len(self.frames)])
            self.sent += 1
        ctx.flush()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9000)
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--size", type=int, default=64, help="payload bytes")
    args = parser.parse_args(argv)
    if args.count < 1:
        parser.error("--count must be at least 1")
    if args.size < 0:
        parser.error("--size must be at least 0")

    # A few distinct payloads, so a mixed-up echo would be noticed.
    frames = [
        len(payload).to_bytes(4, "big") + payload
        for payload in (os.urandom(args.size) for _ in range(16))
    ]
    loop = EventLoop()
    done = Future()
    checker = EchoChecker(frames, args.count, done)

    def init(channel: SocketChannel) -> None:
        channel.pipeline.add_last(
            LengthFieldBasedFrameDecoder(
                max_frame_length=args.size + 4,
                length_field_offset=0,
                length_field_length=4,
                length_adjustment=0,
                initial_bytes_to_strip=0,
            )
        ).add_last(checker)

    started = time.perf_counter()
    connected = Bootstrap(loop).initializer(init).connect(args.host, args.port)
    connected.add_listener(
        lambda f: f.failed() and done.try_set_exception(f.exception())
    )
    try:
        echoed = loop.run_until_complete(done)
    except OSError as exc:
        print(f"echo_client: {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    finally:
        loop.close()
    elapsed = time.perf_counter() - started
    print(
        f"{echoed} frames of {args.size} bytes echoed intact in "
        f"{elapsed:.3f}s ({echoed / elapsed:,.0f} frames/s)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
