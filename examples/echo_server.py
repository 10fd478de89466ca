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
    """Writes every frame back; flushes once per batch of reads.

    A client that sends without reading would make the server queue its
    echoes without end. So the handler stops reading from a channel
    whose output is above the high watermark, and reads again once it
    drained below the low one: memory stays bounded by the watermarks,
    and the client's own sends block on a full TCP window instead.
    """

    sharable = True  # holds no per-channel state

    def channel_read(self, ctx: ChannelHandlerContext, msg: Any) -> None:
        ctx.write(msg)

    def channel_read_complete(self, ctx: ChannelHandlerContext) -> None:
        ctx.flush()

    def channel_writability_changed(self, ctx: ChannelHandlerContext) -> None:
        channel = ctx.channel
        channel.auto_read = channel.is_writable
        ctx.fire_channel_writability_changed()

    def exception_caught(
        self, ctx: ChannelHandlerContext, exc: BaseException
    ) -> None:
        log.warning("%r closing: %s", ctx.channel, exc)
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


def serve(host: str, port: int, reuse_port: bool, announce: bool) -> int:
    """Run one server loop until a stop signal; 1 if it cannot listen."""
    loop = EventLoop()
    try:
        server = (
            ServerBootstrap(loop)
            .child_initializer(init_channel)
            .bind(host, port, reuse_port=reuse_port)
        )
    except OSError as exc:
        loop.close()
        return cannot_listen(host, port, exc)
    # Ready for SIGTERM before saying so: whoever reads the announcement
    # may stop us at once.
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, loop.shutdown_gracefully, 5.0)
    if announce:
        bound_host, bound_port = server.local_address[:2]
        print(f"listening on {bound_host}:{bound_port}", flush=True)
    try:
        loop.run()
    finally:
        loop.close()
    return 0


def cannot_listen(host: str, port: int, exc: OSError) -> int:
    print(
        f"echo_server: cannot listen on {host}:{port}: {exc.strerror}",
        file=sys.stderr,
    )
    return 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9000)
    parser.add_argument(
        "--workers", type=int, default=1, help="processes sharing the port"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    if args.workers < 1:
        parser.error("--workers must be at least 1")
    if args.workers == 1:
        return serve(args.host, args.port, reuse_port=False, announce=True)
    # Fix the port number before forking so that every worker binds the
    # same one, even when --port 0 asks for any free port.
    try:
        reserved = reserve_port(args.host, args.port)
    except OSError as exc:
        return cannot_listen(args.host, args.port, exc)
    port = reserved.getsockname()[1]

    def worker(index: int) -> None:
        reserved.close()
        status = serve(args.host, port, reuse_port=True, announce=index == 0)
        if status:
            raise SystemExit(status)

    status = serve_in_workers(args.workers, worker)
    reserved.close()
    return status


if __name__ == "__main__":
    sys.exit(main())
