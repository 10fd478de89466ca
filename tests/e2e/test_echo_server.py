"""End to end: ``examples/echo_server.py`` as a real process, real sockets.

The server runs as a child process in a session of its own, so that the
whole process group (parent and workers) can be checked for survivors and
killed at teardown whatever happened. Each wait has a deadline; none of
them is expected to come near it.
"""

from __future__ import annotations

import importlib.util
import os
import random
import re
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import codec
import reactor

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
SERVER_COMMAND = [sys.executable, str(EXAMPLES / "echo_server.py")]
CLIENT_COMMAND = [sys.executable, str(EXAMPLES / "echo_client.py")]

# The children import the very packages this test process imported, so
# the tests run the same code installed or from the source tree (and the
# same codec build: NETIM_PURE_PYTHON passes through the environment).
PACKAGE_DIRS = list(
    dict.fromkeys(
        str(Path(module.__file__ or "").resolve().parents[1])
        for module in (reactor, codec)
    )
)


def _load_example(name: str) -> Any:
    path = EXAMPLES / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"example_{name}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# The server's own limit, not a copy of it: the tests follow a change.
MAX_FRAME_LENGTH: int = _load_example("echo_server").MAX_FRAME_LENGTH

HEADER = 4  # the echo protocol's length field: 4 bytes, big-endian

STARTUP_TIMEOUT = 10.0
# A bad header must end its connection at once; 2 s is far beyond that.
CLOSE_DEADLINE = 2.0
# The server drains output for up to 5 s when stopping; idle, it needs
# only milliseconds.
STOP_DEADLINE = 6.0
IO_TIMEOUT = 5.0


def frame(payload: bytes) -> bytes:
    return len(payload).to_bytes(HEADER, "big") + payload


def payload_of(size: int, seed: int = 0) -> bytes:
    return random.Random(size * 7919 + seed).randbytes(size)


def child_env() -> dict[str, str]:
    env = os.environ.copy()
    paths = [*PACKAGE_DIRS, *env.get("PYTHONPATH", "").split(os.pathsep)]
    env["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
    return env


def wait_for(
    condition: Callable[[], object], timeout: float, what: str
) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def group_alive(pgid: int) -> bool:
    """True while any process of the group ``pgid`` exists."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def recv_exactly(sock: socket.socket, size: int) -> bytes:
    data = bytearray()
    while len(data) < size:
        chunk = sock.recv(min(size - len(data), 1 << 20))
        if not chunk:
            raise AssertionError(
                f"connection closed after {len(data)} of {size} bytes"
            )
        data += chunk
    return bytes(data)


def read_until_closed(sock: socket.socket, timeout: float) -> bytes:
    """What arrives before the server closes (FIN or RST) ``sock``;
    fails if it is still open after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    data = bytearray()
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"still open after {timeout}s")
        sock.settimeout(remaining)
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return bytes(data)
        except TimeoutError:
            continue  # the deadline check above fails the test
        if not chunk:
            return bytes(data)
        data += chunk


class Server:
    """A running echo server process and the port it announced."""

    def __init__(self, proc: subprocess.Popen[bytes], stderr: Path) -> None:
        self.proc = proc
        self.stderr_path = stderr
        self.port = self._read_announcement()

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def _read_announcement(self) -> int:
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + STARTUP_TIMEOUT
        line = b""
        while not line.endswith(b"\n"):
            remaining = deadline - time.monotonic()
            ready = remaining > 0 and select.select([fd], [], [], remaining)
            if not ready or not ready[0]:
                raise AssertionError(f"no announcement:\n{self.stderr}")
            byte = os.read(fd, 1)
            if not byte:
                raise AssertionError(
                    f"server exited before listening:\n{self.stderr}"
                )
            line += byte
        match = re.fullmatch(rb"listening on (\S+):(\d+)\n", line)
        assert match, f"unexpected announcement {line!r}"
        return int(match[2])

    def stop(self, signum: int, timeout: float = STOP_DEADLINE) -> int:
        """Signal the parent; return its exit status (fail on a hang)."""
        self.proc.send_signal(signum)
        return self.wait(timeout, signal.Signals(signum).name)

    def wait(self, timeout: float, after: str) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"server still running {timeout}s after {after}:\n"
                f"{self.stderr}"
            ) from None

    def assert_all_gone(self) -> None:
        """No process of the server's group survives it (no orphans)."""
        # Orphaned workers would be re-parented and keep running; a
        # moment covers the reaping of ones that have just exited.
        wait_for(
            lambda: not group_alive(self.proc.pid),
            2.0,
            f"every process of group {self.proc.pid} to exit",
        )

    def kill(self) -> None:
        """Teardown: whatever is left of the group dies."""
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()
        assert self.proc.stdout is not None
        self.proc.stdout.close()


def _launcher(directory: Path) -> tuple[Callable[..., Server], list[Server]]:
    servers: list[Server] = []

    def start(*args: str) -> Server:
        stderr = directory / f"server-{len(servers)}.err"
        with stderr.open("wb") as err:
            proc = subprocess.Popen(
                [*SERVER_COMMAND, "--port", "0", *args],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=err,
                env=child_env(),
                start_new_session=True,
            )
        try:
            server = Server(proc, stderr)
        except BaseException:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            assert proc.stdout is not None
            proc.stdout.close()
            raise
        servers.append(server)
        return server

    return start, servers


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    """Starts ``echo_server.py --port 0 [args]``; kills what is left."""
    start, servers = _launcher(tmp_path)
    try:
        yield start
    finally:
        for server in servers:
            server.kill()


@pytest.fixture(scope="module")
def echo_server(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Server]:
    """One single-worker server shared by the tests that only echo."""
    start, servers = _launcher(tmp_path_factory.mktemp("echo"))
    try:
        yield start()
    finally:
        for server in servers:
            server.kill()


@pytest.fixture
def connect() -> Iterator[Callable[..., socket.socket]]:
    """Opens client connections to a port; closes them at teardown."""
    socks: list[socket.socket] = []

    def open_connection(port: int, rcvbuf: int | None = None) -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        socks.append(sock)
        if rcvbuf is not None:
            # Before connect, so that the window is small from the start.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.settimeout(IO_TIMEOUT)
        sock.connect(("127.0.0.1", port))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock

    try:
        yield open_connection
    finally:
        for sock in socks:
            sock.close()


def assert_echoes(sock: socket.socket, payload: bytes) -> None:
    sent = frame(payload)
    sock.sendall(sent)
    assert recv_exactly(sock, len(sent)) == sent


def tcp_queues(local_port: int, remote_port: int) -> tuple[int, int]:
    """(send queue, receive queue) of a loopback TCP socket, in bytes."""
    with open("/proc/net/tcp") as table:
        next(table)
        for line in table:
            fields = line.split()
            local, remote = fields[1], fields[2]
            if (
                int(local.rsplit(":", 1)[1], 16) == local_port
                and int(remote.rsplit(":", 1)[1], 16) == remote_port
            ):
                send, receive = fields[4].split(":")
                return int(send, 16), int(receive, 16)
    raise AssertionError(f"no socket {local_port} -> {remote_port}")


# Echo left waiting in the server: the client's receive buffer is pinned
# small and it reads nothing, so the server's output backs up, it turns
# unwritable and (the echo server's back-pressure) stops reading. What it
# read by then is either echoed or queued in the process.
SMALL_RCVBUF = 64 * 1024
ECHO_CHUNK = 64 * 1024


def tcp_buffer_limit(name: str) -> int:
    """The most a socket's kernel buffer grows to on its own (the third
    figure of net.ipv4.tcp_rmem or tcp_wmem)."""
    with open(f"/proc/sys/net/ipv4/{name}") as limits:
        return int(limits.read().split()[2])


# More than the kernel can hold on the way, so that the server has to stop
# taking it: the server's receive buffer, which the kernel may grow to
# tcp_rmem's limit (32 MiB on some machines) while the server reads fast,
# and the client's and the server's send buffers, plus room to spare.
BACKLOG_BYTES = (
    tcp_buffer_limit("tcp_rmem")
    + 2 * tcp_buffer_limit("tcp_wmem")
    + 8 * 1024 * 1024
)


def leave_echo_pending(sock: socket.socket, port: int) -> bytes:
    """Send frames, reading none of the echo, until the server stops
    taking them; return the echo owed: every whole frame the server has
    read (bytes still in the kernel queues were never read by it)."""
    chunk = frame(payload_of(ECHO_CHUNK - HEADER))
    stream = chunk * (BACKLOG_BYTES // len(chunk))
    sent = send_until_blocked(sock, stream)
    client_port = sock.getsockname()[1]

    def unread() -> int:
        in_flight = tcp_queues(client_port, port)[0]
        return in_flight + tcp_queues(port, client_port)[1]

    # Settled: the server neither reads nor writes any more.
    last = unread()
    for _ in range(3):
        time.sleep(0.2)
        now = unread()
        if now == last:
            break
        last = now
    read_by_server = sent - last
    whole_frames = read_by_server // len(chunk)
    assert whole_frames >= 2, "the server read almost nothing"
    assert sent < len(stream), "the server never pushed back"
    return stream[: whole_frames * len(chunk)]


def send_until_blocked(sock: socket.socket, data: bytes) -> int:
    """Send without blocking until the peer stops taking bytes."""
    sock.setblocking(False)
    sent = 0
    deadline = time.monotonic() + IO_TIMEOUT
    idle_since = time.monotonic()
    try:
        while sent < len(data) and time.monotonic() < deadline:
            try:
                sent += sock.send(data[sent : sent + 1024 * 1024])
                idle_since = time.monotonic()
            except BlockingIOError:
                if time.monotonic() - idle_since > 0.3:
                    break
                select.select([], [sock], [], 0.05)
    finally:
        sock.setblocking(True)
        sock.settimeout(IO_TIMEOUT)
    return sent


# -- echoing --------------------------------------------------------------


@pytest.mark.parametrize("size", [0, 1, 64, 64 * 1024])
def test_a_frame_comes_back_byte_for_byte(echo_server, connect, size):
    sock = connect(echo_server.port)
    assert_echoes(sock, payload_of(size))
    assert_echoes(sock, payload_of(size, seed=1))  # and the next one


def test_the_largest_allowed_frame_is_echoed(echo_server, connect):
    # The limit counts the whole frame, header included (Netty's rule).
    sock = connect(echo_server.port)
    assert_echoes(sock, payload_of(MAX_FRAME_LENGTH - HEADER))


def test_many_frames_in_one_send_come_back_in_order(echo_server, connect):
    sizes = [0, 1, 64, 3, 64 * 1024, 0, 200, 4096, 1, 64 * 1024, 17] * 8
    stream = b"".join(frame(payload_of(n, i)) for i, n in enumerate(sizes))
    sock = connect(echo_server.port)
    sock.sendall(stream)  # one call: the server reads many frames at once
    assert recv_exactly(sock, len(stream)) == stream


def test_a_frame_split_across_sends_is_echoed_once_complete(
    echo_server, connect
):
    first = frame(payload_of(64 * 1024))
    second = frame(payload_of(100))
    stream = first + second
    # Cuts inside the first header, right after it, inside the body,
    # one byte into the second header, and one byte before the end.
    cuts = [2, HEADER, 1000, len(first) + 1, len(stream) - 1]
    sock = connect(echo_server.port)
    start = 0
    for cut in cuts:
        sock.sendall(stream[start:cut])
        start = cut
        time.sleep(0.005)  # separate segments, separate reads
        if cut < len(first):
            assert select.select([sock], [], [], 0)[0] == [], "echo early"
        elif cut == len(first) + 1:
            # The first frame is complete: it alone comes back.
            assert recv_exactly(sock, len(first)) == first
    # One byte short of the second frame: nothing may come back yet.
    assert select.select([sock], [], [], 0.1)[0] == []
    sock.sendall(stream[start:])
    assert recv_exactly(sock, len(second)) == second


def test_the_echo_client_example_sees_every_frame_intact(echo_server):
    result = subprocess.run(
        [*CLIENT_COMMAND, "--port", str(echo_server.port), "--count", "2000"],
        capture_output=True,
        text=True,
        env=child_env(),
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert re.match(
        r"2000 frames of 64 bytes echoed intact in ", result.stdout
    ), result.stdout


# -- bad input ------------------------------------------------------------


@pytest.mark.parametrize(
    "length",
    [0xFFFF_FFFF, MAX_FRAME_LENGTH - HEADER + 1],
    ids=["0xFFFFFFFF", "one-above-the-limit"],
)
def test_an_oversized_length_closes_only_that_connection(
    echo_server, connect, length
):
    good = connect(echo_server.port)
    assert_echoes(good, b"before")
    # A frame in progress on the good connection when the bad one comes.
    pending = frame(payload_of(5000))
    good.sendall(pending[:2500])

    bad = connect(echo_server.port)
    started = time.monotonic()
    bad.sendall(length.to_bytes(HEADER, "big"))  # the header, no body
    assert read_until_closed(bad, CLOSE_DEADLINE) == b""
    assert time.monotonic() - started < CLOSE_DEADLINE

    good.sendall(pending[2500:])
    assert recv_exactly(good, len(pending)) == pending
    assert_echoes(good, b"after")
    assert echo_server.proc.poll() is None


def test_an_http_request_is_closed(echo_server, connect):
    # "GET " read as a length is 1,195,725,856: far above the limit.
    assert int.from_bytes(b"GET ", "big") > MAX_FRAME_LENGTH
    bystander = connect(echo_server.port)
    sock = connect(echo_server.port)
    sock.sendall(b"GET / HTTP/1.1\r\n\r\n")
    assert read_until_closed(sock, CLOSE_DEADLINE) == b""
    assert_echoes(bystander, b"still here")


# -- processes and signals ------------------------------------------------


def _net_connections(process: Any) -> list[Any]:
    # psutil 6 renamed connections() to net_connections().
    method = getattr(process, "net_connections", None) or process.connections
    return list(method("tcp"))


STOP_SIGNALS = pytest.mark.parametrize(
    "signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"]
)


def stop_gracefully(
    server: Server, signum: int, sock: socket.socket, pending: bytes
) -> None:
    """Stop ``server`` with ``signum`` while ``pending`` echo is still
    waiting in it for ``sock``: a graceful stop delivers every byte of it
    before closing, and exits 0. A process killed by the signal loses
    what was not yet in the kernel; one that closed with unread input
    would reset the connection and lose what was."""
    started = time.monotonic()
    server.proc.send_signal(signum)
    received = read_until_closed(sock, STOP_DEADLINE)
    # The server may have read a little more after ``pending`` was taken
    # (its kernel send buffer grows while the peer waits); what matters
    # is that nothing it had read is lost, and that only whole frames,
    # in order, come back.
    assert len(received) >= len(pending), "echo lost in the stop"
    assert len(received) % ECHO_CHUNK == 0, "a frame was cut short"
    assert received[: len(pending)] == pending
    status = server.wait(STOP_DEADLINE, signal.Signals(signum).name)
    assert status == 0, server.stderr
    assert time.monotonic() - started < STOP_DEADLINE
    server.assert_all_gone()
    assert "Traceback" not in server.stderr


@STOP_SIGNALS
def test_two_workers_share_the_port_and_stop_together(
    start_server, connect, signum
):
    psutil = pytest.importorskip("psutil")
    server = start_server("--workers", "2")
    parent = psutil.Process(server.proc.pid)

    def listening_workers() -> set[int]:
        return {
            worker.pid
            for worker in parent.children()
            for conn in _net_connections(worker)
            if conn.status == psutil.CONN_LISTEN
            and conn.laddr.port == server.port
        }

    wait_for(lambda: len(listening_workers()) == 2, 5.0, "two listeners")
    workers = listening_workers()

    socks = [connect(server.port) for _ in range(20)]
    for index, sock in enumerate(socks):
        sock.sendall(frame(payload_of(100, index)))
    for index, sock in enumerate(socks):
        expected = frame(payload_of(100, index))
        assert recv_exactly(sock, len(expected)) == expected

    # The kernel spread the connections over both workers (that all 20
    # land on one has odds of 1 in 2**19).
    client_ports = {sock.getsockname()[1] for sock in socks}
    serving = {
        pid
        for pid in workers
        for conn in _net_connections(psutil.Process(pid))
        if conn.raddr and conn.raddr.port in client_ports
    }
    assert serving == workers

    # The worker holding this one must drain it: the parent passed the
    # signal on, and the worker shut down rather than died.
    slow = connect(server.port, rcvbuf=SMALL_RCVBUF)
    pending = leave_echo_pending(slow, server.port)
    stop_gracefully(server, signum, slow, pending)


@pytest.mark.parametrize("workers", [1, 2])
def test_sigterm_right_after_the_announcement_stops_cleanly(
    start_server, workers
):
    # A supervisor may stop a server the moment it reports ready. The
    # signal then meets processes still starting: a parent that has not
    # yet taken over the signal, a worker not yet listening, a loop about
    # to block in epoll. Each round must still end with status 0 and no
    # process left behind.
    for _ in range(4):
        server = start_server("--workers", str(workers))
        assert server.stop(signal.SIGTERM) == 0, server.stderr
        server.assert_all_gone()


@STOP_SIGNALS
def test_a_single_worker_stops_gracefully(start_server, connect, signum):
    server = start_server()
    idle = connect(server.port)
    assert_echoes(idle, b"hello")
    slow = connect(server.port, rcvbuf=SMALL_RCVBUF)
    pending = leave_echo_pending(slow, server.port)
    stop_gracefully(server, signum, slow, pending)
    assert read_until_closed(idle, 1.0) == b""


# -- back-pressure ----------------------------------------------------------


def test_a_client_that_never_reads_cannot_grow_the_server(
    echo_server, connect
):
    """The echo server stops reading from a channel whose output is above
    the high watermark: a client that only sends is pushed back by TCP,
    and the server's memory stays put."""
    psutil = pytest.importorskip("psutil")
    server = psutil.Process(echo_server.proc.pid)
    before = server.memory_info().rss
    greedy = connect(echo_server.port, rcvbuf=SMALL_RCVBUF)
    pending = leave_echo_pending(greedy, echo_server.port)
    grown = server.memory_info().rss - before
    # Kernel buffers take the rest of the backlog; the process keeps at
    # most about a watermark plus one read batch.
    assert grown < 8 * 1024 * 1024, f"server grew by {grown} bytes"
    # And it still answers everything it took, once the client reads.
    assert recv_exactly(greedy, len(pending)) == pending
