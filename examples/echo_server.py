"""Echo server: every frame a client sends comes straight back to it.

A frame is a 4-byte big-endian length followed by that many bytes. The
decoder keeps the length field in the frames it hands on (nothing
stripped), so echoing a frame is writing it back untouched: no prepender,
no copy. The handler writes each frame and flushes once per read batch,
which is what lets sixteen frames leave in one system call.

Run:  python examples/echo_server.py --port 9000 [--workers 2]
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from typing import Any

from codec import LengthFieldBasedFrameDecoder
from reactor import (
    ChannelHandlerContext,
    ChannelInboundHandler,
    EventLoop,
    ServerBootstrap,
    SocketChannel,
    serve_in_workers,
)
from reactor.bootstrap import reserve_port

log = logging.getLogger("echo_server")

# Echo payloads are small; a frame larger than this is a broken or
# hostile client, and the decoder rejects it as soon as its header is in.
MAX_FRAME_LENGTH = 1024 * 1024


class EchoHandler(ChannelInboundHandler):
    """Writes every frame back; flushes once per batch of reads."""

    sharable = True  # holds no per-channel state

    def channel_read(self, ctx: ChannelHandlerContext, msg: Any) -> None:
        ctx.write(msg)

    def channel_read_complete(self, ctx: ChannelHandlerContext) -> None:
        ctx.flush()

    def exception_caught(
        self, ctx: ChannelHandlerContext, exc: BaseException
    ) -> None:
        log.info("%r closing: %s", ctx.channel, exc)
        ctx.close()


ECHO = EchoHandler()


def init_channel(channel: SocketChannel) -> None:
    channel.pipeline.add_last(
        LengthFieldBasedFrameDecoder(
            max_frame_length=MAX_FRAME_LENGTH,
            length_field_offset=0,
            length_field_length=4,
            length_adjustment=0,
            initial_bytes_to_strip=0,
        ),
        "framer",
    ).add_last(ECHO, "echo")


def serve(host: str, port: int, reuse_port: bool, announce: bool) -> None:
    loop = EventLoop()
    server = (
        ServerBootstrap(loop)
        .child_initializer(init_channel)
        .bind(host, port, reuse_port=reuse_port)
    )
    if announce:
        bound_host, bound_port = server.local_address[:2]
        print(f"listening on {bound_host}:{bound_port}", flush=True)

    def shut_down(signum: int, frame: Any) -> None:
        loop.submit(loop.shutdown_gracefully, 5.0)

    signal.signal(signal.SIGTERM, shut_down)
    signal.signal(signal.SIGINT, shut_down)
    try:
        loop.run()
    finally:
        loop.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9000)
    parser.add_argument(
        "--workers", type=int, default=1, help="processes sharing the port"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    if args.workers == 1:
        serve(args.host, args.port, reuse_port=False, announce=True)
        return 0
    # Fix the port number before forking so that every worker binds the
    # same one, even when --port 0 asks for any free port.
    reserved = reserve_port(args.host, args.port)
    port = reserved.getsockname()[1]

    def worker(index: int) -> None:
        reserved.close()
        serve(args.host, port, reuse_port=True, announce=index == 0)

    status = serve_in_workers(args.workers, worker)
    reserved.close()
    return status


if __name__ == "__main__":
    sys.exit(main())
