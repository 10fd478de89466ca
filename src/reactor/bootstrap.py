"""Bootstraps: the short way to a listening server or a connected client.

``ServerBootstrap`` binds a listening socket on a loop and gives every
accepted connection to an *initializer*, a function that fills the new
channel's pipeline (Netty's ChannelInitializer)::

    def init(channel):
        channel.pipeline.add_last(FrameDecoder()).add_last(Echo())

    loop = EventLoop()
    ServerBootstrap(loop).child_initializer(init).bind("127.0.0.1", 9000)
    loop.run()

``Bootstrap`` connects a client channel the same way.

``serve_in_workers`` runs one loop per process in N forked processes that
share one port through SO_REUSEPORT: the kernel spreads incoming
connections over the listeners, and no process ever hands a socket to
another. Each worker is single-threaded, exactly like a one-process server.
"""

from __future__ import annotations

import errno
import ipaddress
import logging
import os
import select
import signal
import socket
import threading
from collections.abc import Callable
from typing import Any, Final

from .channel import (
    DEFAULT_OPTIONS,
    ChannelOptions,
    ServerSocketChannel,
    SocketChannel,
)
from .future import Future
from .loop import EventLoop

__all__ = [
    "Bootstrap",
    "ServerBootstrap",
    "reserve_port",
    "serve_in_workers",
]

_log = logging.getLogger("reactor.bootstrap")

Initializer = Callable[[SocketChannel], None]

# Pending connections the kernel queues before accept; Linux caps it at
# net.core.somaxconn (4096 on current kernels).
DEFAULT_BACKLOG: Final = 4096
DEFAULT_CONNECT_TIMEOUT: Final = 10.0


# Linux's IP_BIND_ADDRESS_NO_PORT (include/uapi/linux/in.h); Python's
# socket module does not name it.
_IP_BIND_ADDRESS_NO_PORT: Final = getattr(
    socket, "IP_BIND_ADDRESS_NO_PORT", 24
)


def _is_ip_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _no_handlers(channel: SocketChannel) -> None:
    pass


class ServerBootstrap:
    """Configures and binds a listening channel."""

    def __init__(self, loop: EventLoop) -> None:
        self.loop = loop
        self._initializer: Initializer = _no_handlers
        self._options = DEFAULT_OPTIONS

    def child_initializer(self, initializer: Initializer) -> ServerBootstrap:
        """The function that builds each accepted channel's pipeline."""
        self._initializer = initializer
        return self

    def child_options(self, options: ChannelOptions) -> ServerBootstrap:
        self._options = options
        return self

    def bind(
        self,
        host: str,
        port: int,
        *,
        reuse_port: bool = False,
        backlog: int = DEFAULT_BACKLOG,
    ) -> ServerSocketChannel:
        """Listen on ``host:port`` (port 0 picks a free port)."""
        sock = _listening_socket(host, port, reuse_port)
        try:
            sock.listen(backlog)
            return ServerSocketChannel(
                self.loop, sock, self._initializer, self._options
            )
        except BaseException:
            sock.close()
            raise


def _listening_socket(host: str, port: int, reuse_port: bool) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
    except BaseException:
        sock.close()
        raise
    return sock


def reserve_port(host: str, port: int = 0) -> socket.socket:
    """A bound, *not listening* SO_REUSEPORT socket that fixes a port.

    Workers that bind port 0 would each get a different port. The parent
    reserves one first; a socket that does not listen receives no
    connections, so it only keeps the number while the workers bind it.
    """
    return _listening_socket(host, port, reuse_port=True)


class Bootstrap:
    """Connects client channels."""

    def __init__(self, loop: EventLoop) -> None:
        self.loop = loop
        self._initializer: Initializer = _no_handlers
        self._options = DEFAULT_OPTIONS

    def initializer(self, initializer: Initializer) -> Bootstrap:
        self._initializer = initializer
        return self

    def options(self, options: ChannelOptions) -> Bootstrap:
        self._options = options
        return self

    def connect(
        self,
        host: str,
        port: int,
        *,
        source: str | None = None,
        timeout: float = DEFAULT_CONNECT_TIMEOUT,
    ) -> Future:
        """Connect; the future's result is the active channel.

        ``host`` may be an IP address or a name. A name is resolved on a
        short-lived thread: ``getaddrinfo`` blocks, and the loop must not.
        """
        result = Future()
        if _is_ip_address(host):
            self._connect_address(host, port, source, timeout, result)
        else:
            threading.Thread(
                target=self._resolve,
                args=(host, port, source, timeout, result),
                name=f"resolve {host}",
                daemon=True,
            ).start()
        return result

    def _resolve(
        self,
        host: str,
        port: int,
        source: str | None,
        timeout: float,
        result: Future,
    ) -> None:
        # Runs on the resolver thread; hands back to the loop with submit.
        loop = self.loop
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
            address = str(infos[0][4][0])
        except OSError as exc:
            loop.submit(result.try_set_exception, exc)
            return
        loop.submit(
            self._connect_address, address, port, source, timeout, result
        )

    def _connect_address(
        self,
        host: str,
        port: int,
        source: str | None,
        timeout: float,
        result: Future,
    ) -> None:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            if source is not None:
                if family == socket.AF_INET:
                    # Let connect() pick the local port, knowing the
                    # destination: bind() alone must find a port free for
                    # every destination, so thousands of connections in
                    # TIME_WAIT from an earlier run exhaust the range.
                    sock.setsockopt(
                        socket.IPPROTO_IP, _IP_BIND_ADDRESS_NO_PORT, 1
                    )
                sock.bind((source, 0))
            code = sock.connect_ex((host, port))
        except OSError as exc:
            sock.close()
            result.set_exception(exc)
            return
        if code not in (0, errno.EINPROGRESS):
            sock.close()
            result.set_exception(OSError(code, os.strerror(code)))
            return
        _Connector(self, sock, (host, port), result, timeout)

    def _connected(
        self, sock: socket.socket, address: Any, result: Future
    ) -> None:
        try:
            channel = SocketChannel(self.loop, sock, self._options, address)
            self._initializer(channel)
        except Exception as exc:
            sock.close()
            result.set_exception(exc)
            return
        channel.register()
        result.set_result(channel)


class _Connector:
    """Waits for a non-blocking connect to finish (EPOLLOUT)."""

    __slots__ = ("_address", "_bootstrap", "_result", "_sock", "_timer")

    def __init__(
        self,
        bootstrap: Bootstrap,
        sock: socket.socket,
        address: Any,
        result: Future,
        timeout: float,
    ) -> None:
        self._bootstrap = bootstrap
        self._sock = sock
        self._address = address
        self._result = result
        loop = bootstrap.loop
        loop.add_reader(sock.fileno(), self, select.EPOLLOUT)
        self._timer = loop.call_later(timeout, self._timed_out)

    def _handle_events(self, events: int) -> None:
        loop = self._bootstrap.loop
        loop.remove(self._sock.fileno())
        loop.cancel_timer(self._timer)
        code = self._sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if code:
            loop.close_socket_later(self._sock)
            # OSError, not ConnectionError: only OSError(errno, ...) picks
            # the errno's subclass (ConnectionRefusedError...), which is
            # what an immediate failure in connect() already raises.
            self._result.set_exception(OSError(code, os.strerror(code)))
            return
        self._bootstrap._connected(self._sock, self._address, self._result)

    def _timed_out(self) -> None:
        loop = self._bootstrap.loop
        loop.remove(self._sock.fileno())
        loop.close_socket_later(self._sock)
        self._result.try_set_exception(
            TimeoutError(f"connect to {self._address} timed out")
        )


def serve_in_workers(workers: int, serve: Callable[[int], None]) -> int:
    """Run ``serve(worker_index)`` in ``workers`` forked processes.

    The parent waits, forwards SIGINT/SIGTERM to the workers (each should
    shut down gracefully), and returns the first non-zero exit status, or
    0. With ``workers == 1`` it runs ``serve(0)`` in this process.
    """
    if workers < 1:
        raise ValueError("workers must be >= 1")
    if workers == 1:
        serve(0)
        return 0
    stop_signals = (signal.SIGINT, signal.SIGTERM)
    children: list[int] = []
    forwarded: set[int] = set()

    def forward(signum: int, frame: Any) -> None:
        forwarded.add(signum)
        for child in children:
            try:
                os.kill(child, signum)
            except ProcessLookupError:
                pass

    # Stop signals are held back until ``forward`` is in place: one that
    # came while forking would kill the parent (default action) and
    # orphan the workers already forked. Unblocking delivers it, so it
    # is forwarded to every worker. (Found by tests/e2e, which stop a
    # server the moment it announces itself.)
    old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals)
    try:
        for index in range(workers):
            pid = os.fork()
            if pid == 0:  # the worker
                status = 0
                try:
                    signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
                    serve(index)
                except BaseException:
                    _log.exception("worker %d failed", index)
                    status = 1
                finally:
                    os._exit(status)
            children.append(pid)
        previous = {sig: signal.signal(sig, forward) for sig in stop_signals}
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
    status = 0
    try:
        for child in children:
            _, code = os.waitpid(child, 0)
            exit_code = os.waitstatus_to_exitcode(code)
            if -exit_code in forwarded:
                # Killed by the signal we forwarded, before its own
                # handler was installed: it was still starting, and it
                # stopped as asked. Not a failure.
                exit_code = 0
            if exit_code and not status:
                status = exit_code
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return status
