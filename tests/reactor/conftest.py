"""Shared tools for the reactor's real-socket tests.

The loop runs in the test thread, one turn at a time (``LoopDriver``), and
the far end of each connection is a plain non-blocking socket (``Peer``)
that the driver pumps between turns. Nothing runs concurrently, so a test
reads as a sequence of steps and needs no locks or sleeps; every wait is a
``run_until`` with a deadline.

Teardown closes every channel, listener and peer, then the loop, so that
no ``ResourceWarning`` (an error in this project) escapes a test.
"""

from __future__ import annotations

import socket
import struct
import time
from collections.abc import Callable
from typing import Any

import pytest

from reactor import (
    ChannelHandler,
    ChannelHandlerContext,
    ChannelInboundHandler,
    ChannelOptions,
    EventLoop,
    ServerBootstrap,
    ServerSocketChannel,
    SocketChannel,
)

# Upper bound for any single wait. Generous: a wait normally ends in a few
# milliseconds, and only a bug makes it run out.
DEADLINE = 5.0

# Bytes received per peer recv() call while pumping.
PEER_CHUNK = 256 * 1024


class Recorder(ChannelInboundHandler):
    """Writes down every event that reaches it, and passes it on."""

    def __init__(self, *, echo: bool = False) -> None:
        self.echo = echo
        self.events: list[tuple[Any, ...]] = []
        self.received = bytearray()

    def names(self) -> list[str]:
        """Event names, with runs of reads collapsed to one 'read'."""
        out: list[str] = []
        for name, *_ in self.events:
            if not (name == "read" and out and out[-1] == "read"):
                out.append(name)
        return out

    def count(self, name: str) -> int:
        return sum(1 for event in self.events if event[0] == name)

    def handler_added(self, ctx: ChannelHandlerContext) -> None:
        self.events.append(("handler_added",))

    def handler_removed(self, ctx: ChannelHandlerContext) -> None:
        self.events.append(("handler_removed",))

    def channel_registered(self, ctx: ChannelHandlerContext) -> None:
        self.events.append(("registered",))
        ctx.fire_channel_registered()

    def channel_unregistered(self, ctx: ChannelHandlerContext) -> None:
        self.events.append(("unregistered",))
        ctx.fire_channel_unregistered()

    def channel_active(self, ctx: ChannelHandlerContext) -> None:
        self.events.append(("active",))
        ctx.fire_channel_active()

    def channel_inactive(self, ctx: ChannelHandlerContext) -> None:
        self.events.append(("inactive",))
        ctx.fire_channel_inactive()

    def channel_read(self, ctx: ChannelHandlerContext, msg: Any) -> None:
        data = msg.to_bytes()
        self.events.append(("read", len(data), ctx.channel.is_open))
        self.received += data
        if self.echo:
            ctx.write_and_flush(data)

    def channel_read_complete(self, ctx: ChannelHandlerContext) -> None:
        self.events.append(("read_complete",))
        ctx.fire_channel_read_complete()

    def user_event_triggered(
        self, ctx: ChannelHandlerContext, event: object
    ) -> None:
        self.events.append(("user_event", event))
        ctx.fire_user_event_triggered(event)

    def channel_writability_changed(self, ctx: ChannelHandlerContext) -> None:
        self.events.append(("writability", ctx.channel.is_writable))
        ctx.fire_channel_writability_changed()

    def exception_caught(
        self, ctx: ChannelHandlerContext, exc: BaseException
    ) -> None:
        # Recorded and consumed: a transport error is expected in these
        # tests, and the tail would only log it.
        self.events.append(("exception", exc))


class Peer:
    """The other end of a connection: a plain socket, never blocking.

    ``pump()`` sends what is queued and, while ``reading``, receives what
    has arrived; the driver calls it between loop turns.
    """

    def __init__(self, sock: socket.socket) -> None:
        sock.setblocking(False)
        self.sock = sock
        self.reading = True
        self.received = bytearray()
        self.eof = False
        self.error: OSError | None = None
        self._out = bytearray()

    @property
    def unsent(self) -> int:
        return len(self._out)

    def send(self, data: bytes) -> None:
        self._out += data
        self.pump()

    def pump(self) -> None:
        if self.sock.fileno() < 0:
            return
        while self._out:
            try:
                sent = self.sock.send(self._out)
            except BlockingIOError:
                break
            except OSError as exc:
                self.error = exc
                self._out.clear()
                break
            del self._out[:sent]
        while self.reading and not self.eof and self.error is None:
            try:
                data = self.sock.recv(PEER_CHUNK)
            except BlockingIOError:
                break
            except OSError as exc:
                self.error = exc
                break
            if not data:
                self.eof = True
            self.received += data

    def shutdown_write(self) -> None:
        self.sock.shutdown(socket.SHUT_WR)

    def reset(self) -> None:
        """Close with SO_LINGER 0: the kernel sends RST instead of FIN."""
        self.sock.setsockopt(
            socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
        )
        self.sock.close()

    def close(self) -> None:
        self.sock.close()


class LoopDriver:
    """Runs an ``EventLoop`` in the test thread, one turn at a time."""

    def __init__(self, loop: EventLoop) -> None:
        self.loop = loop
        self.peers: list[Peer] = []
        self.servers: list[ServerSocketChannel] = []
        self.channels: list[SocketChannel] = []
        # The handlers each accepted channel was given, in order; they
        # stay reachable here after close empties the pipeline.
        self.handlers_of: dict[SocketChannel, list[ChannelHandler]] = {}

    # -- turning the loop -----------------------------------------------------

    def turn(self, max_wait: float = 0.002) -> None:
        """Pump the peers, then run one loop turn that blocks at most
        ``max_wait`` seconds."""
        for peer in self.peers:
            peer.pump()
        loop = self.loop
        timer = loop.call_later(max_wait, _nothing)
        loop._run_once()
        loop.cancel_timer(timer)

    def run_until(
        self,
        condition: Callable[[], object],
        timeout: float = DEADLINE,
        what: str = "condition",
    ) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}")
            self.turn()

    def run_turns(self, count: int) -> None:
        for _ in range(count):
            self.turn()

    def idle_polls(self, seconds: float) -> int:
        """Run the loop undisturbed for ``seconds``; return its polls.

        Only a timer ends the run, so on a quiet loop this is 1 or 2; a
        loop spinning on a level-triggered event counts thousands.
        """
        loop = self.loop
        before = loop.poll_count
        loop.call_later(seconds, loop.stop)
        loop.run()
        return loop.poll_count - before

    # -- building connections -------------------------------------------------

    def serve(
        self,
        *handlers: Callable[[], ChannelHandler],
        options: ChannelOptions | None = None,
        sndbuf: int | None = None,
    ) -> ServerSocketChannel:
        """A listener whose children get one new handler per factory."""

        def init(channel: SocketChannel) -> None:
            if sndbuf is not None:
                channel.sock.setsockopt(
                    socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf
                )
            made = [factory() for factory in handlers]
            for handler in made:
                channel.pipeline.add_last(handler)
            self.handlers_of[channel] = made
            self.channels.append(channel)

        bootstrap = ServerBootstrap(self.loop).child_initializer(init)
        if options is not None:
            bootstrap.child_options(options)
        server = bootstrap.bind("127.0.0.1", 0)
        self.servers.append(server)
        return server

    def handler(self, channel: SocketChannel, cls: type) -> Any:
        """The handler of type ``cls`` that ``channel`` was given."""
        return next(h for h in self.handlers_of[channel] if isinstance(h, cls))

    def peer(self, address: Any, *, rcvbuf: int | None = None) -> Peer:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            if rcvbuf is not None:
                # Before connect, so the window is small from the start.
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            sock.connect(address)
        except BaseException:
            sock.close()
            raise
        peer = Peer(sock)
        self.peers.append(peer)
        return peer

    def accept(self, server: ServerSocketChannel) -> SocketChannel:
        """Run until ``server`` has accepted one more child; return it."""
        count = len(self.channels)
        self.run_until(lambda: len(self.channels) > count, what="accept")
        channel = self.channels[count]
        self.run_until(lambda: channel.is_active, what="active")
        return channel

    def pair(
        self,
        *handlers: Callable[[], ChannelHandler],
        options: ChannelOptions | None = None,
        sndbuf: int | None = None,
        rcvbuf: int | None = None,
    ) -> tuple[SocketChannel, Peer]:
        """A fresh server-side channel and the peer connected to it."""
        server = self.serve(*handlers, options=options, sndbuf=sndbuf)
        peer = self.peer(server.local_address, rcvbuf=rcvbuf)
        return self.accept(server), peer

    # -- teardown -------------------------------------------------------------

    def close(self) -> None:
        for peer in self.peers:
            peer.close()
        for server in self.servers:
            server.close()
        for channel in self.channels:
            channel.close()
        loop = self.loop
        for handler in loop.handlers():
            close = getattr(handler, "close", None)
            if close is not None:
                close()
        # Inactive and unregistered events run as callbacks.
        for _ in range(3):
            self.turn(0)
        loop.close()


def _nothing() -> None:
    pass


@pytest.fixture
def drive() -> Any:
    driver = LoopDriver(EventLoop())
    try:
        yield driver
    finally:
        driver.close()


@pytest.fixture
def recorder() -> Callable[..., Recorder]:
    """A factory for ``Recorder`` handlers (the class itself)."""
    return Recorder
