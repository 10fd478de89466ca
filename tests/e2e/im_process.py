"""``netim serve`` as a child process, and the clients that talk to it.

Shared by the IM end-to-end tests. The server is started exactly as a
user starts it (``python -m im.cli serve``, which is what the ``netim``
command runs), in a session of its own so that a test can ``kill -9``
it, and it is always killed at teardown. Clients are the library's
blocking ``Client`` (what the chat uses), or a plain socket for the
tests that must send what no well-behaved client would.
"""

from __future__ import annotations

import os
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Self

import codec
import im
import reactor
from im.client import Client
from im.infrastructure.tokens import issue_token
from im.protocol import (
    Direction,
    FrameReader,
    Header,
    Login,
    Packet,
    decode,
    encode_frame,
)

SECRET = bytes(range(32))
STARTUP_TIMEOUT = 15.0
STOP_TIMEOUT = 10.0
# Long enough for a loaded CI machine; every wait ends as soon as its
# condition holds, so a passing test never comes near it.
DEADLINE = 15.0

# The child imports the very packages this process imported, so the
# tests run the same code installed or from the source tree (and the same
# codec build: NETIM_PURE_PYTHON passes through the environment).
_PACKAGE_DIRS = list(
    dict.fromkeys(
        str(Path(module.__file__ or "").resolve().parents[1])
        for module in (reactor, codec, im)
    )
)


def child_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NETIM_")}
    for kept in ("NETIM_PURE_PYTHON", "NETIM_REQUIRE_COMPILED"):
        if kept in os.environ:
            env[kept] = os.environ[kept]
    paths = [*_PACKAGE_DIRS, *env.get("PYTHONPATH", "").split(os.pathsep)]
    env["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
    return env


def wait_for(
    condition: Callable[[], Any], what: str, timeout: float = DEADLINE
) -> Any:
    """Poll ``condition`` until it is true; its value. Fails after
    ``timeout`` seconds, naming ``what`` it waited for."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


class ImServer:
    """One ``netim serve`` process over a database in ``workdir``.

    ``start`` may be called again after ``kill`` or ``stop``: the same
    port and the same database, as an operator restarting it would.
    """

    def __init__(self, workdir: Path, options: Iterable[str] = ()) -> None:
        self.workdir = workdir
        self.database = workdir / "netim.db"
        self.options = list(options)
        self.host = "127.0.0.1"
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = workdir / "server.log"
        self._clients: list[Client] = []
        self._sockets: list[socket.socket] = []

    # -- the process ----------------------------------------------------------

    def command(self) -> list[str]:
        """The server's command line (a subclass may start another)."""
        return [
            sys.executable, "-m", "im.cli", "serve",
            "--host", self.host, "--port", str(self.port),
            "--database", str(self.database), "--secret", SECRET.hex(),
            *self.options,
        ]  # fmt: skip

    def start(self) -> Self:
        assert self.process is None, "already running"
        log = self.log_path.open("ab")
        try:
            self.process = subprocess.Popen(
                self.command(),
                stdout=subprocess.PIPE,
                stderr=log,
                env=child_env(),
                cwd=self.workdir,
                start_new_session=True,
            )
        finally:
            log.close()
        self.port = self._read_port(self.process)
        return self

    def _read_port(self, process: subprocess.Popen[bytes]) -> int:
        assert process.stdout is not None
        deadline = time.monotonic() + STARTUP_TIMEOUT
        line = b""
        while not line.endswith(b"\n"):
            left = deadline - time.monotonic()
            ready, _, _ = select.select([process.stdout], [], [], max(left, 0))
            if not ready:
                raise AssertionError(f"server did not start: {self.log()}")
            chunk = os.read(process.stdout.fileno(), 1)
            if not chunk:
                raise AssertionError(f"server exited at start: {self.log()}")
            line += chunk
        words = line.decode().split()
        assert words[:2] == ["listening", "on"], line
        return int(words[2].rsplit(":", 1)[1])

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def kill(self) -> None:
        """``kill -9``: no shutdown, no last commit, no goodbye."""
        process = self.process
        assert process is not None
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(STOP_TIMEOUT)
        self._forget_process()

    def stop(self) -> int:
        """SIGTERM, as an operator stops it; the exit status."""
        process = self.process
        assert process is not None
        process.send_signal(signal.SIGTERM)
        status = process.wait(STOP_TIMEOUT)
        self._forget_process()
        return status

    def _forget_process(self) -> None:
        assert self.process is not None
        if self.process.stdout is not None:
            self.process.stdout.close()
        self.process = None

    def close(self) -> None:
        """Teardown: every client closed, the server gone whatever
        state the test left it in."""
        for client in self._clients:
            client.close()
        for sock in self._sockets:
            sock.close()
        if self.process is not None:
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.process.wait(STOP_TIMEOUT)
            self._forget_process()

    # -- clients --------------------------------------------------------------

    def token(
        self, user: str, ttl: float = 3600.0, now: float | None = None
    ) -> str:
        """A token signed with the server's secret, valid from ``now``
        (default: the current time) for ``ttl`` seconds."""
        return issue_token(SECRET, user, ttl=ttl, now=now)

    def connect(self, **options: Any) -> Client:
        """A library client, not logged in; closed at teardown."""
        options.setdefault("request_timeout", DEADLINE)
        client = Client.connect(self.host, self.port, **options)
        self._clients.append(client)
        return client

    def login(
        self, user: str, device: str = "phone", **options: Any
    ) -> Client:
        """A library client logged in as ``user`` on ``device`` whose
        backlog has arrived (it waits in ``drain_pushes``)."""
        client = self.connect(**options)
        client.login(self.token(user), device)
        client.wait_backlog(timeout=DEADLINE)
        return client

    def raw(self, receive_buffer: int | None = None) -> RawPeer:
        """A plain socket to the server, for what no client would send;
        ``receive_buffer`` shrinks its kernel receive queue (set before
        connecting, so the window is small from the start)."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sockets.append(sock)
        if receive_buffer is not None:
            sock.setsockopt(
                socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer
            )
        sock.settimeout(DEADLINE)
        sock.connect((self.host, self.port))
        return RawPeer(sock)


class RawPeer:
    """A socket speaking frames by hand: send bytes, read packets."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.reader = FrameReader()
        self.frames: list[bytes] = []

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def send_packet(self, packet: Packet, request_id: int = 1) -> None:
        self.send(encode_frame(packet, request_id))

    def login(self, token: str, device: str = "raw") -> Packet:
        self.send_packet(Login(token, device, "e2e/1"), request_id=1)
        _, reply = self.next_packet()
        return reply

    def next_packet(self, timeout: float = DEADLINE) -> tuple[Header, Packet]:
        """The next packet from the server; fails if the connection
        ends or nothing comes within ``timeout``."""
        deadline = time.monotonic() + timeout
        while not self.frames:
            self.sock.settimeout(max(deadline - time.monotonic(), 0.001))
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                raise AssertionError("no packet from the server") from None
            if not data:
                raise AssertionError("the server closed the connection")
            self.frames.extend(self.reader.feed(data))
        return decode(self.frames.pop(0), Direction.TO_CLIENT)

    def packets_until_closed(self, timeout: float = DEADLINE) -> list[Packet]:
        """Every packet the server sends before it closes the
        connection; fails if it is still open after ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            self.sock.settimeout(max(deadline - time.monotonic(), 0.001))
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                raise AssertionError("the connection stayed open") from None
            except ConnectionResetError:
                data = b""
            if not data:
                break
            self.frames.extend(self.reader.feed(data))
        packets = [decode(f, Direction.TO_CLIENT)[1] for f in self.frames]
        self.frames.clear()
        return packets
