"""The echo-frame server a Python user would write on asyncio's Protocol API.

This is the peer baseline netim is measured against: nothing clever, just
the idiomatic shape of a framed server on `loop.create_server`, run either
on the stock asyncio loop or on uvloop.

The echo-frame protocol: a frame is a 4-byte big-endian length N followed
by N payload bytes; every frame goes back to its sender unchanged.

    python bench/baseline/asyncio_echo.py --port 9000 --loop uvloop

It prints "listening on HOST:PORT" once bound, so a runner can wait for it.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Coroutine
from typing import Any, cast

HEADER_BYTES = 4

# Largest payload accepted.  Without a limit, a peer could announce a
# 4 GiB frame and make us buffer until memory runs out.
MAX_FRAME_BYTES = 16 * 1024 * 1024


class FrameTooLarge(Exception):
    """The peer announced a frame larger than MAX_FRAME_BYTES."""


class EchoProtocol(asyncio.Protocol):
    """Answer every complete frame with the same frame, one frame at a time.

    Bytes accumulate in a buffer; each data_received call takes every
    complete frame out of it as a message of its own (as a server that
    looks at its messages must), and all the answers leave in ONE
    transport.write. That is the fair, idiomatic batching: the Protocol
    API gives no flush consolidation for free, but gathering the replies
    to one read is the obvious thing to write, and netim too writes once
    per channel per read.

    This is the like-for-like peer of netim's echo server, which hands
    each frame to its handler as a message too.
    """

    transport: asyncio.Transport

    def __init__(self) -> None:
        self.buffer = bytearray()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport, so this is
        # a cast for the type checker, not a check.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        try:
            frames = split_frames(self.buffer)
        except FrameTooLarge:
            self.transport.abort()  # the peer broke the protocol
            return
        if frames:
            self.transport.write(b"".join(frames))


class RunEchoProtocol(EchoProtocol):
    """The cheapest correct echo: answer a run of frames with that run.

    An echo's answer to a run of complete frames is that run of bytes, so
    once the frame boundaries are checked it can go back as one slice,
    with no object per frame. No server that reads its messages can do
    this; it is measured as the upper bound of a Python framed server.
    """

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        try:
            complete = complete_frames_length(self.buffer)
        except FrameTooLarge:
            self.transport.abort()  # the peer broke the protocol
            return
        if not complete:
            return  # need more data
        # The slice is a new object, so the transport may keep it as long
        # as it likes while we reuse the buffer.
        self.transport.write(self.buffer[:complete])
        del self.buffer[:complete]


def split_frames(buffer: bytearray) -> list[bytes]:
    """Take the complete frames off the front of ``buffer``, each as its
    own bytes object; a partial frame after them stays for a later read."""
    frames = []
    offset = 0
    end = len(buffer)
    while end - offset >= HEADER_BYTES:
        length = int.from_bytes(buffer[offset : offset + HEADER_BYTES], "big")
        if length > MAX_FRAME_BYTES:
            raise FrameTooLarge(length)
        frame_end = offset + HEADER_BYTES + length
        if frame_end > end:
            break
        frames.append(bytes(buffer[offset:frame_end]))
        offset = frame_end
    del buffer[:offset]
    return frames


def complete_frames_length(buffer: bytearray) -> int:
    """How many bytes at the start of `buffer` are complete frames; a
    partial frame after them is left for a later read."""
    offset = 0
    end = len(buffer)
    while end - offset >= HEADER_BYTES:
        header = buffer[offset : offset + HEADER_BYTES]
        length = int.from_bytes(header, "big")
        if length > MAX_FRAME_BYTES:
            raise FrameTooLarge(length)
        if end - offset - HEADER_BYTES < length:
            break
        offset += HEADER_BYTES + length
    return offset


async def serve(host: str, port: int, runs: bool) -> None:
    loop = asyncio.get_running_loop()
    protocol = RunEchoProtocol if runs else EchoProtocol
    server = await loop.create_server(protocol, host, port)
    bound = server.sockets[0].getsockname()
    print(f"listening on {bound[0]}:{bound[1]}", flush=True)
    async with server:
        await server.serve_forever()


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9000)
    parser.add_argument(
        "--loop", choices=("asyncio", "uvloop"), default="asyncio"
    )
    parser.add_argument(
        "--runs",
        action="store_true",
        help="echo runs of frames as one slice (no object per frame)",
    )
    return parser.parse_args(argv)


def run(loop: str, main: Coroutine[Any, Any, None]) -> None:
    if loop == "uvloop":
        import uvloop  # only needed, and only imported, when asked for

        uvloop.run(main)
    else:
        asyncio.run(main)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        run(args.loop, serve(args.host, args.port, args.runs))
    except KeyboardInterrupt:
        pass  # Ctrl-C, or the runner's SIGINT: a normal way to stop


if __name__ == "__main__":
    main()
