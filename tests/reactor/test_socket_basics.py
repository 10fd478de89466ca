"""Real sockets, well-behaved peers: echo, lifecycle, half-closure,
graceful shutdown, worker processes and cross-thread submit.

What a misbehaving peer or handler can do is in test_socket_faults.py.
"""

from __future__ import annotations

import os
import select
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import pytest

import reactor
from reactor import (
    Bootstrap,
    ChannelClosedError,
    ChannelHandlerContext,
    ChannelInboundHandler,
    ChannelOptions,
    EventLoop,
    Future,
    InputShutdownEvent,
)
from reactor.channel import CROWD

# Children import the reactor this test process imported.
SRC = Path(reactor.__file__).resolve().parents[1]


def assert_lifecycle(names: list[str]) -> None:
    """Netty's order for a connection that read something: added,
    registered, active, (read, read complete)+, inactive, unregistered,
    removed."""
    assert names[:3] == ["handler_added", "registered", "active"], names
    assert names[-3:] == ["inactive", "unregistered", "handler_removed"]
    middle = names[3:-3]
    assert middle and middle[0] == "read", names
    assert middle[-1] == "read_complete", names
    assert set(middle) == {"read", "read_complete"}, names


def free_port() -> int:
    """A port nobody listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def python_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(SRC), env.get("PYTHONPATH")) if p
    )
    return env


def read_line(stream: Any, deadline: float) -> str:
    """One line from a child's pipe, or fail at ``deadline``."""
    line = b""
    while not line.endswith(b"\n"):
        left = deadline - time.monotonic()
        ready, _, _ = select.select([stream], [], [], max(left, 0))
        if not ready:
            raise AssertionError(f"child said nothing more after {line!r}")
        byte = os.read(stream.fileno(), 1)
        if not byte:
            raise AssertionError(f"child closed its output after {line!r}")
        line += byte
    return line.decode().strip()


# -- 1. echo, lifecycle, close ------------------------------------------------


def test_echo_between_our_client_and_our_server(drive, recorder):
    server = drive.serve(lambda: recorder(echo=True))
    client_side = recorder()
    connecting = (
        Bootstrap(drive.loop)
        .initializer(lambda ch: ch.pipeline.add_last(client_side))
        .connect(*server.local_address)
    )
    drive.run_until(connecting.done, what="connect")
    client = connecting.result()
    assert client.is_active
    message = b"hello, netim " * 5000  # several reads on each side

    client.write_and_flush(message)
    drive.run_until(lambda: len(client_side.received) == len(message))
    assert client_side.received == message

    client.close()
    child = drive.channels[0]
    drive.run_until(lambda: child.close_future.done(), what="child close")
    assert client.close_future.done()
    assert_lifecycle(client_side.names())
    assert_lifecycle(drive.handler(child, recorder).names())


def test_connect_to_a_closed_port_fails_the_future(drive):
    connecting = Bootstrap(drive.loop).connect("127.0.0.1", free_port())
    drive.run_until(connecting.done, what="connect outcome")
    with pytest.raises(ConnectionRefusedError):
        connecting.result()
    assert drive.loop.handlers() == []


def test_close_is_idempotent_and_fires_closing_events_once(drive, recorder):
    channel, peer = drive.pair(recorder)
    record = drive.handler(channel, recorder)
    peer.send(b"x")
    drive.run_until(lambda: record.received == b"x")

    first = channel.close()
    second = channel.close()
    ctx_close = channel.pipeline.context(recorder).close()
    peer.close()  # and the peer's FIN races with all of them
    # Fired from a later callback, never inside close().
    assert record.count("inactive") == 0
    assert not channel.is_open and not channel.is_active
    drive.run_until(lambda: channel.close_future.done())
    drive.run_turns(5)

    for future in (first, second, ctx_close, channel.close()):
        assert future.done() and future.succeeded()
    assert record.count("inactive") == 1
    assert record.count("unregistered") == 1
    assert record.count("handler_removed") == 1
    assert not channel.is_registered


def test_writes_after_close_fail_with_channel_closed(drive, recorder):
    channel, _ = drive.pair(recorder)
    channel.close()
    closing = Future()
    channel.write_and_flush(b"too late", closing)  # still closing
    assert isinstance(closing.exception(), ChannelClosedError)

    drive.run_until(lambda: channel.close_future.done())
    closed = Future()
    channel.write_and_flush(b"far too late", closed)
    assert isinstance(closed.exception(), ChannelClosedError)
    assert channel.pending_output_bytes == 0


# -- 2. bytes that come with the FIN, half-closure ----------------------------


@pytest.mark.parametrize("ending", ["shutdown", "close"])
def test_bytes_sent_with_the_fin_all_arrive_before_inactive(
    drive, recorder, ending
):
    channel, peer = drive.pair(recorder)
    record = drive.handler(channel, recorder)
    data = os.urandom(1 << 20)  # many reads, the last with the FIN
    peer.send(data)
    drive.run_until(lambda: peer.unsent == 0, what="peer sent all")
    if ending == "shutdown":
        peer.shutdown_write()
    else:
        peer.close()

    drive.run_until(lambda: channel.close_future.done())
    assert record.received == data
    assert_lifecycle(record.names())
    assert all(event[2] for event in record.events if event[0] == "read")


class ReplyAtEndOfInput(ChannelInboundHandler):
    """Counts bytes; when the input ends, says how many it got."""

    def __init__(self) -> None:
        self.total = 0

    def channel_read(self, ctx: ChannelHandlerContext, msg: Any) -> None:
        self.total += msg.readable_bytes()
        ctx.fire_channel_read(msg)

    def user_event_triggered(
        self, ctx: ChannelHandlerContext, event: object
    ) -> None:
        if isinstance(event, InputShutdownEvent):
            ctx.write_and_flush(b"got %d" % self.total)
        ctx.fire_user_event_triggered(event)


def test_half_closure_keeps_the_channel_open_for_writing(drive, recorder):
    options = ChannelOptions(allow_half_closure=True)
    channel, peer = drive.pair(ReplyAtEndOfInput, recorder, options=options)
    record = drive.handler(channel, recorder)
    data = os.urandom(300_000)
    peer.send(data)
    drive.run_until(lambda: peer.unsent == 0)
    peer.shutdown_write()

    drive.run_until(lambda: peer.received == b"got 300000", what="reply")
    assert record.received == data
    user_events = [e[1] for e in record.events if e[0] == "user_event"]
    assert len(user_events) == 1
    assert isinstance(user_events[0], InputShutdownEvent)
    assert channel.is_open and channel.is_active
    assert record.count("inactive") == 0
    # Input ended but the channel stays: the end-of-file must not keep
    # waking a level-triggered loop.
    assert drive.idle_polls(0.2) < 20
    assert record.count("user_event") == 1

    channel.write_and_flush(b" bye")
    drive.run_until(lambda: peer.received.endswith(b" bye"))
    channel.close()
    drive.run_until(lambda: peer.eof, what="peer sees EOF")
    assert record.count("inactive") == 1


# -- 9. graceful shutdown -----------------------------------------------------


class Blast(ChannelInboundHandler):
    """Queues ``size`` bytes as soon as the channel is active."""

    size = 2 << 20

    def __init__(self) -> None:
        self.sent = Future()

    def channel_active(self, ctx: ChannelHandlerContext) -> None:
        ctx.fire_channel_active()
        ctx.write_and_flush(b"s" * self.size, self.sent)


def slow_reader(sock: socket.socket, into: bytearray) -> None:
    """Reads until EOF in small bites with pauses: slow, but reading."""
    sock.setblocking(True)
    sock.settimeout(5)
    while True:
        data = sock.recv(64 * 1024)
        if not data:
            return
        into += data
        time.sleep(0.001)


def test_graceful_shutdown_drains_to_a_slow_reader(drive, recorder):
    channel, peer = drive.pair(
        Blast, recorder, sndbuf=32 * 1024, rcvbuf=32 * 1024
    )
    peer.reading = False
    blast = drive.handler(channel, Blast)
    drive.run_until(channel.has_pending_output, what="queued output")
    address = drive.servers[0].local_address
    received = bytearray()
    reader = threading.Thread(target=slow_reader, args=(peer.sock, received))
    reader.start()
    try:
        done = drive.loop.shutdown_gracefully(drain_timeout=5.0)
        with pytest.raises(ConnectionRefusedError), socket.socket() as late:
            late.connect(address)
        drive.loop.run()  # returns only when shutdown stops the loop
    finally:
        reader.join(5)
    assert not reader.is_alive()
    assert done.succeeded()
    assert blast.sent.succeeded()
    assert len(received) == Blast.size
    assert drive.handler(channel, recorder).count("inactive") == 1
    assert drive.loop.handlers() == []


def test_graceful_shutdown_gives_up_on_a_peer_that_never_reads(
    drive, recorder
):
    channel, peer = drive.pair(
        Blast, recorder, sndbuf=32 * 1024, rcvbuf=32 * 1024
    )
    peer.reading = False
    blast = drive.handler(channel, Blast)
    drive.run_until(channel.has_pending_output)

    started = time.monotonic()
    done = drive.loop.shutdown_gracefully(drain_timeout=0.3)
    drive.loop.run()
    elapsed = time.monotonic() - started
    assert 0.29 <= elapsed < 2.0
    assert done.succeeded()
    assert isinstance(blast.sent.exception(), ChannelClosedError)
    assert not channel.is_open and channel.pending_output_bytes == 0
    assert drive.handler(channel, recorder).count("inactive") == 1


# -- 8. worker processes on one port ------------------------------------------

WORKERS_SCRIPT = textwrap.dedent(
    """
    import os, signal, sys
    from reactor import (
        ChannelInboundHandler, EventLoop, ServerBootstrap, serve_in_workers)
    from reactor.bootstrap import reserve_port

    class PidEcho(ChannelInboundHandler):
        def channel_read(self, ctx, msg):
            ctx.write_and_flush(b"%d:" % os.getpid() + msg.to_bytes())

    reserved = reserve_port("127.0.0.1")
    port = reserved.getsockname()[1]

    def serve(index):
        loop = EventLoop()
        ServerBootstrap(loop).child_initializer(
            lambda ch: ch.pipeline.add_last(PidEcho())
        ).bind("127.0.0.1", port, reuse_port=True)
        # Through the loop: a plain Python handler can miss a signal that
        # lands just before the poll blocks (see add_signal_handler).
        loop.add_signal_handler(
            signal.SIGTERM, loop.shutdown_gracefully, 1.0
        )
        os.write(1, b"ready %d\\n" % os.getpid())
        loop.run()
        loop.close()

    os.write(1, b"port %d\\n" % port)
    status = serve_in_workers(2, serve)
    reserved.close()
    sys.exit(status)
    """
)


def ask_pid(port: int) -> int:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"who")
        reply = b""
        while not reply.endswith(b":who"):
            chunk = sock.recv(100)
            assert chunk, reply
            reply += chunk
    return int(reply.split(b":")[0])


def test_two_workers_share_one_port_and_exit_on_sigterm():
    with subprocess.Popen(
        [sys.executable, "-c", WORKERS_SCRIPT],
        stdout=subprocess.PIPE,
        env=python_env(),
        start_new_session=True,  # so cleanup can kill the whole group
    ) as proc:
        try:
            deadline = time.monotonic() + 10
            lines = [read_line(proc.stdout, deadline) for _ in range(3)]
            port = int(lines[0].split()[1])
            workers = {int(line.split()[1]) for line in lines[1:]}
            assert len(workers) == 2

            pids = [ask_pid(port) for _ in range(20)]
            # The kernel hashes each connection to one listener; with 20
            # connections both are picked but with probability 2**-19.
            assert set(pids) == workers

            os.kill(proc.pid, signal.SIGTERM)
            assert proc.wait(timeout=5) == 0
            for pid in workers:
                with pytest.raises(ProcessLookupError):
                    os.kill(pid, 0)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


# -- 10. submit from other threads --------------------------------------------


@pytest.fixture
def running_loop():
    loop = EventLoop()
    thread = threading.Thread(target=loop.run, name="test-loop")
    thread.start()
    try:
        yield loop
    finally:
        loop.stop()
        thread.join(5)
        assert not thread.is_alive()
        loop.close()


def test_submit_wakes_a_blocked_poll_promptly(running_loop):
    time.sleep(0.05)  # let the loop block in a poll with no timeout
    polls = running_loop.poll_count
    assert polls <= 2  # blocked, not spinning
    for _ in range(5):
        ran = threading.Event()
        started = time.monotonic()
        running_loop.submit(ran.set)
        assert ran.wait(1.0)
        assert time.monotonic() - started < 0.05
        time.sleep(0.005)


def test_no_submit_is_lost_between_threads(running_loop):
    """Ping-pong from three threads at once: a lost wake-up would leave
    a callback queued while the loop sleeps, and its wait time out."""
    failures: list[str] = []

    def client(name: str) -> None:
        for i in range(300):
            ran = threading.Event()
            running_loop.submit(ran.set)
            if not ran.wait(2.0):
                failures.append(f"{name} lost submit {i}")
                return

    threads = [
        threading.Thread(target=client, args=(f"t{n}",)) for n in range(3)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert failures == []


def test_stop_from_another_thread_ends_run(running_loop):
    time.sleep(0.02)
    started = time.monotonic()
    running_loop.stop()
    deadline = started + 1.0
    while running_loop._running_thread is not None:
        assert time.monotonic() < deadline
        time.sleep(0.001)
    assert time.monotonic() - started < 0.05


def test_stop_from_a_signal_handler_ends_run_promptly():
    """A signal handler runs on the loop's own thread, between two
    bytecodes of whatever it interrupted: often a poll with no timeout,
    which Python retries after EINTR. stop() must still wake it."""
    loop = EventLoop()
    previous = signal.signal(signal.SIGALRM, lambda *_: loop.stop())
    try:
        loop.call_later(2.0, loop.stop)  # a bound, should stop() not wake
        signal.setitimer(signal.ITIMER_REAL, 0.05)
        started = time.monotonic()
        loop.run()
        elapsed = time.monotonic() - started
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        loop.close()
    assert elapsed < 0.5


def test_one_turn_reads_at_most_the_configured_reads_of_a_peer(
    drive, recorder
):
    # A peer with far more queued than one turn may take: each turn
    # hands the pipeline at most max_read_size * max_reads_per_event,
    # so one busy peer cannot fill a turn that others wait behind.
    options = ChannelOptions(max_read_size=1024, max_reads_per_event=2)
    channel, peer = drive.pair(recorder, options=options)
    record = drive.handler(channel, recorder)
    peer.sock.sendall(b"x" * 64 * 1024)
    drive.run_until(lambda: record.received, what="a first read")
    per_turn = []
    while len(record.received) < 64 * 1024:
        before = len(record.received)
        drive.turn()
        per_turn.append(len(record.received) - before)
    assert max(per_turn) <= 2 * 1024
    with pytest.raises(ValueError, match="max_reads_per_event"):
        ChannelOptions(max_reads_per_event=0)


QUEUED = ChannelOptions(
    max_read_size=1024, max_reads_per_event=1, queued_read_size=256
)


def crowd(drive, recorder, count: int) -> list[tuple[Any, Any]]:
    """``count`` channels with the options above: (peer, record) each."""
    pairs = []
    for _ in range(count):
        channel, peer = drive.pair(recorder, options=QUEUED)
        pairs.append((peer, drive.handler(channel, recorder)))
    return pairs


def turn_sizes(drive, records, turns: int) -> list[list[int]]:
    """Bytes each record got in each of ``turns`` loop turns."""
    sizes: list[list[int]] = [[] for _ in records]
    for _ in range(turns):
        before = [len(record.received) for record in records]
        drive.turn()
        for mine, record, was in zip(sizes, records, before, strict=True):
            mine.append(len(record.received) - was)
    return sizes


def test_a_crowd_of_queued_peers_is_read_in_smaller_pieces(drive, recorder):
    pairs = crowd(drive, recorder, CROWD + 1)
    for peer, _ in pairs:
        peer.sock.sendall(b"x" * 16 * 1024)
    records = [record for _, record in pairs]
    drive.run_until(lambda: all(r.received for r in records), what="reads")
    # Each filled its allowance in that turn: a crowd. From the next
    # turn on, each is cut, until its queue is gone.
    for sizes in turn_sizes(drive, records, 20):
        assert max(sizes) == 256, sizes
    assert all(len(r.received) < 16 * 1024 for r in records)


def test_one_peer_with_a_large_message_is_no_crowd(drive, recorder):
    # One large message (or a few busy peers) is not cut: it arrives in
    # as few turns as before.
    [(peer, record)] = crowd(drive, recorder, 1)
    peer.sock.sendall(b"x" * 16 * 1024)
    drive.run_until(lambda: record.received, what="a first read")
    [sizes] = turn_sizes(drive, [record], 15)
    assert sizes == [1024] * 15


def test_a_peer_that_caught_up_is_not_cut_any_more(drive, recorder):
    pairs = crowd(drive, recorder, CROWD + 2)
    (quick, quick_record), *others = pairs
    # The quick peer's queue ends in a short read, which shows it caught
    # up. (Had it ended on a full one, the next burst's first read would
    # be cut too, and the one after that short: see _note_queued.)
    quick.sock.sendall(b"q" * (1024 + 3 * 256 + 100))
    for peer, _ in others:
        peer.sock.sendall(b"x" * 64 * 1024)
    records = [record for _, record in pairs]
    drive.run_until(lambda: all(r.received for r in records), what="reads")
    [quick_sizes] = turn_sizes(drive, [quick_record], 8)
    assert quick_sizes[:4] == [256, 256, 256, 100]
    assert not any(quick_sizes[4:])
    # The crowd is still there, but the quick peer caught up: a new
    # burst of its own is read whole.
    quick.sock.sendall(b"r" * 1000)
    sizes = turn_sizes(drive, records, 1)
    assert sizes[0] == [1000]
    assert all(mine == [256] for mine in sizes[1:])


def test_a_peer_that_keeps_up_is_not_cut_in_a_crowd(drive, recorder):
    pairs = crowd(drive, recorder, CROWD + 1)
    (steady, steady_record), *others = pairs
    for peer, _ in others:
        peer.sock.sendall(b"x" * 64 * 1024)
    drive.run_until(lambda: all(r.received for _, r in others), what="reads")
    # Under its allowance every turn, like a client with a window of a
    # few messages: never queued, so never cut, however crowded.
    for n in range(1, 6):
        steady.sock.sendall(b"z" * 1000)
        [sizes] = turn_sizes(drive, [steady_record], 1)
        assert sizes == [1000], n


def test_a_peer_that_stops_being_read_leaves_the_queued_count(drive, recorder):
    # The count decides whether a crowd is cut; a peer whose input is no
    # longer read (stopped, lingering, closed) must not go on counting,
    # or the crowd would outlive the flood that made it.
    channels = []
    for _ in range(3):
        channel, peer = drive.pair(recorder, options=QUEUED)
        record = drive.handler(channel, recorder)
        peer.sock.sendall(b"x" * 16 * 1024)
        channels.append((channel, record))
    drive.run_until(
        lambda: all(record.received for _, record in channels),
        what="a first read of each",
    )
    assert drive.loop.queued_readers == 3
    (stopped, _), (lingering, _), (closed, _) = channels
    stopped.stop_input()
    assert drive.loop.queued_readers == 2
    lingering.close_gracefully()
    assert drive.loop.queued_readers == 1
    closed.close()
    assert drive.loop.queued_readers == 0


def test_the_cut_size_is_a_read_size_no_larger_than_the_maximum():
    with pytest.raises(ValueError, match="queued_read_size"):
        ChannelOptions(max_read_size=1024, queued_read_size=2048)
    with pytest.raises(ValueError, match="queued_read_size"):
        ChannelOptions(queued_read_size=16)


def test_a_closed_channels_handlers_are_freed_without_the_collector(drive):
    # The server runs with full garbage collections far apart (they are
    # pauses); a closed connection's handlers, and what they hold, must
    # go by reference counting alone, not wait for one.
    import gc
    import weakref

    class Holder(ChannelInboundHandler):
        pass

    gc.disable()
    try:
        channel, _peer = drive.pair(Holder, Holder, Holder)
        handlers = [weakref.ref(h) for h in drive.handlers_of[channel]]
        del drive.handlers_of[channel]
        channel.close()
        drive.run_until(lambda: channel.close_future.done())
        drive.run_turns(3)
        assert [ref() for ref in handlers] == [None, None, None]
    finally:
        gc.enable()
