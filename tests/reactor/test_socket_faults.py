"""Real sockets, hostile conditions: hang-ups, resets, peers that never
read, descriptor exhaustion, and handlers that raise.

Each test names the failure it guards against. Most of them fail loudly
(a spinning loop, a lost byte, a hung future) if the behaviour regresses.
"""

from __future__ import annotations

import json
import logging
import os
import select
import socket
import subprocess
import sys
import textwrap
from itertools import combinations, pairwise
from pathlib import Path
from typing import Any

import pytest

import reactor
from reactor import (
    ChannelClosedError,
    ChannelHandlerContext,
    ChannelInboundHandler,
    ChannelOptions,
    Future,
    ServerBootstrap,
    WriteBufferWaterMark,
)
from reactor.outbound import ENTRY_OVERHEAD

# Children import the reactor this test process imported.
SRC = Path(reactor.__file__).resolve().parents[1]

IN, OUT = select.EPOLLIN, select.EPOLLOUT
RDHUP, HUP, ERR = select.EPOLLRDHUP, select.EPOLLHUP, select.EPOLLERR

# Every mix of the five flags that contains a hang-up or an error.
FLAGS = (IN, OUT, RDHUP, HUP, ERR)
FAULT_MASKS = sorted(
    {
        sum(combo)
        for n in range(1, len(FLAGS) + 1)
        for combo in combinations(FLAGS, n)
        if sum(combo) & (HUP | ERR)
    }
)

# A loop that waits properly polls a handful of times in 0.2 s; one that
# spins on a level-triggered event polls thousands of times.
QUIET_POLLS = 20


def mask_name(mask: int) -> str:
    names = ("IN", "OUT", "RDHUP", "HUP", "ERR")
    return "|".join(n for n, f in zip(names, FLAGS, strict=True) if mask & f)


def wait_readable(sock: socket.socket) -> None:
    """Until the peer's FIN or RST has reached ``sock`` (no loop turn)."""
    ready, _, _ = select.select([sock], [], [], 2.0)
    assert ready, "the peer's hang-up never arrived"


def hang_up(peer: Any, how: str) -> None:
    """End the connection from the peer's side with a FIN or a RST."""
    if how == "reset":
        peer.reset()
    else:
        peer.close()


def loop_errors(caplog: Any) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "reactor.loop"]


# -- 3. EPOLLHUP / EPOLLERR in any combination --------------------------------


@pytest.mark.parametrize("peer_end", ["close", "reset"])
@pytest.mark.parametrize("mask", FAULT_MASKS, ids=mask_name)
def test_hangup_or_error_closes_a_reading_channel_once(
    drive, recorder, caplog, mask, peer_end
):
    channel, peer = drive.pair(recorder)
    record = drive.handler(channel, recorder)
    peer.send(b"last words")
    hang_up(peer, peer_end)
    wait_readable(channel.sock)

    channel._handle_events(mask)  # must not raise
    channel._handle_events(mask)  # a stale repeat must not either
    assert not channel.is_open
    drive.run_until(lambda: channel.close_future.done())
    drive.run_turns(3)

    assert record.count("inactive") == 1
    assert record.count("unregistered") == 1
    if peer_end == "close":
        assert record.received == b"last words"
    assert loop_errors(caplog) == []


@pytest.mark.parametrize("peer_end", ["close", "reset"])
@pytest.mark.parametrize("mask", FAULT_MASKS, ids=mask_name)
def test_hangup_or_error_with_auto_read_off(
    drive, recorder, caplog, mask, peer_end
):
    """Not reading: an error closes at once; a bare hang-up parks the
    channel off epoll (no spinning) until reading resumes, and then the
    bytes still in the socket are delivered before it closes."""
    options = ChannelOptions(auto_read=False)
    channel, peer = drive.pair(recorder, options=options)
    record = drive.handler(channel, recorder)
    peer.send(b"last words")
    hang_up(peer, peer_end)
    wait_readable(channel.sock)

    channel._handle_events(mask)
    channel._handle_events(mask)
    if mask & ERR:
        assert not channel.is_open
    elif peer_end == "close":
        assert channel.is_open  # parked
    # (With OUT and a reset peer the send attempt itself may close it.)
    if channel.is_open:
        # Shorter than elsewhere (48 cases); a spinning loop would still
        # poll thousands of times.
        assert drive.idle_polls(0.05) < QUIET_POLLS
        channel.auto_read = True
    drive.run_until(lambda: channel.close_future.done())
    drive.run_turns(3)

    assert record.count("inactive") == 1
    assert record.count("unregistered") == 1
    if peer_end == "close" and not mask & ERR:
        assert record.received == b"last words"
    assert loop_errors(caplog) == []


def test_auto_read_off_and_peer_gone_does_not_spin(drive, recorder):
    """The peer sends and closes while we are not reading: nothing may
    wake the loop until reading resumes; then every byte arrives."""
    options = ChannelOptions(auto_read=False)
    channel, peer = drive.pair(recorder, options=options)
    record = drive.handler(channel, recorder)
    data = os.urandom(200_000)
    peer.send(data)
    drive.run_until(lambda: peer.unsent == 0)
    peer.close()
    wait_readable(channel.sock)

    assert drive.idle_polls(0.2) < QUIET_POLLS
    assert channel.is_open and record.received == b""

    channel.auto_read = True
    drive.run_until(lambda: channel.close_future.done())
    assert record.received == data
    assert record.count("inactive") == 1


def test_real_epollhup_while_not_reading_parks_the_channel(drive, recorder):
    """EPOLLHUP is reported even when not asked for. Here it is real:
    the peer sent its FIN and we shut our side down, both directions are
    finished. A channel that is not reading must leave epoll, or the
    level-triggered hang-up wakes the loop on every poll."""
    options = ChannelOptions(auto_read=False)
    channel, peer = drive.pair(recorder, options=options)
    record = drive.handler(channel, recorder)
    peer.send(b"before the end")
    peer.shutdown_write()
    channel.sock.shutdown(socket.SHUT_WR)
    wait_readable(channel.sock)

    assert drive.idle_polls(0.2) < QUIET_POLLS
    assert channel.is_open

    channel.auto_read = True
    drive.run_until(lambda: channel.close_future.done())
    assert record.received == b"before the end"
    assert record.count("inactive") == 1


def test_graceful_shutdown_closes_a_parked_channel(drive, recorder):
    """A parked channel is off epoll, but it is still the loop's: the
    shutdown that closes every channel must close it too."""
    options = ChannelOptions(auto_read=False)
    channel, peer = drive.pair(recorder, options=options)
    peer.shutdown_write()
    channel.sock.shutdown(socket.SHUT_WR)
    wait_readable(channel.sock)
    drive.run_turns(3)  # the real EPOLLHUP parks it
    assert channel.is_open

    done = drive.loop.shutdown_gracefully(drain_timeout=0.1)
    drive.loop.run()
    assert done.succeeded()
    assert not channel.is_open
    assert drive.handler(channel, recorder).count("inactive") == 1
    assert channel.sock.fileno() == -1


def test_reset_while_not_reading_closes_without_spinning(drive, recorder):
    options = ChannelOptions(auto_read=False)
    channel, peer = drive.pair(recorder, options=options)
    record = drive.handler(channel, recorder)
    peer.reset()
    drive.run_until(lambda: channel.close_future.done())
    assert record.count("inactive") == 1


# -- 4. reset or broken pipe in the middle of a write -------------------------


class Flood(ChannelInboundHandler):
    """Queues ``total`` bytes in chunks, each write with its own future."""

    total = 2 << 20
    chunk = 64 * 1024

    def __init__(self) -> None:
        self.futures: list[Future] = []

    def channel_active(self, ctx: ChannelHandlerContext) -> None:
        ctx.fire_channel_active()
        for _ in range(self.total // self.chunk):
            future = Future()
            self.futures.append(future)
            ctx.write(b"f" * self.chunk, future)
        ctx.flush()


@pytest.mark.parametrize("how", ["read-side", "not-reading", "epollout"])
def test_reset_mid_write_fails_pending_writes_and_frees_output(
    drive, recorder, how
):
    options = ChannelOptions(auto_read=how != "not-reading")
    channel, peer = drive.pair(
        Flood, recorder, options=options, sndbuf=32 * 1024, rcvbuf=32 * 1024
    )
    peer.reading = False
    flood = drive.handler(channel, Flood)
    record = drive.handler(channel, recorder)
    drive.run_turns(5)
    assert channel.has_pending_output()
    assert channel.pending_output_bytes > 1 << 20
    assert not channel.is_writable

    peer.reset()
    wait_readable(channel.sock)
    if how == "epollout":
        # As if only EPOLLOUT had been reported: the send must fail.
        channel._handle_events(OUT)
        assert not channel.is_open
    drive.run_until(lambda: channel.close_future.done())

    assert channel.pending_output_bytes == 0
    assert not channel.has_pending_output()
    unsent = [f for f in flood.futures if not f.succeeded()]
    assert unsent, "everything was sent: the test did not test"
    for future in unsent:
        assert future.done()
        assert isinstance(future.exception(), ConnectionError)
    assert record.count("inactive") == 1
    late = Future()
    channel.write_and_flush(b"x", late)
    assert isinstance(late.exception(), ChannelClosedError)


def test_write_to_a_reset_peer_fails_the_write(drive, recorder):
    """Nothing queued; the next write's sendmsg meets the RST itself."""
    channel, peer = drive.pair(recorder)
    peer.reset()
    wait_readable(channel.sock)
    future = Future()
    channel.write_and_flush(b"anyone there?", future)  # before any poll
    assert isinstance(future.exception(), ConnectionError)
    assert not channel.is_open
    drive.run_until(lambda: channel.close_future.done())
    assert drive.handler(channel, recorder).count("inactive") == 1


# -- 5. a peer that never reads: watermarks -----------------------------------

WATER_MARK = WriteBufferWaterMark(low=32 * 1024, high=64 * 1024)


class Producer(ChannelInboundHandler):
    """Writes while the channel is writable, and only then."""

    chunk = 8 * 1024
    # Should the channel never turn unwritable, fail instead of queueing
    # without end.
    limit = 64 << 20

    def __init__(self) -> None:
        self.producing = True
        self.written = 0
        self.max_pending = 0
        self.writability: list[bool] = []

    def channel_active(self, ctx: ChannelHandlerContext) -> None:
        ctx.fire_channel_active()
        self.fill(ctx)

    def channel_writability_changed(self, ctx: ChannelHandlerContext) -> None:
        self.writability.append(ctx.channel.is_writable)
        self.fill(ctx)

    def fill(self, ctx: ChannelHandlerContext) -> None:
        channel = ctx.channel
        while self.producing and channel.is_writable:
            assert self.written < self.limit, "never turned unwritable"
            ctx.write_and_flush(b"p" * self.chunk)
            self.written += self.chunk
            self.max_pending = max(
                self.max_pending, channel.pending_output_bytes
            )


def test_peer_that_never_reads_makes_the_channel_unwritable(drive):
    options = ChannelOptions(water_mark=WATER_MARK)
    channel, peer = drive.pair(
        Producer, options=options, sndbuf=32 * 1024, rcvbuf=32 * 1024
    )
    peer.reading = False
    producer = drive.handler(channel, Producer)

    drive.run_until(lambda: not channel.is_writable, what="unwritable")
    assert producer.writability == [False]
    written = producer.written
    # Stuck: the armed EPOLLOUT must not wake the loop while the kernel
    # buffers are full. (The kernel may still find a little room as it
    # compacts the peer's receive queue; then writability flips and the
    # producer tops the buffer up again, which is fine.)
    assert drive.idle_polls(0.2) < QUIET_POLLS
    assert producer.written < written + 1024 * 1024
    bound = WATER_MARK.high + Producer.chunk + ENTRY_OVERHEAD
    assert producer.max_pending <= bound

    drive.run_until(lambda: not channel.is_writable)
    before = len(producer.writability)
    peer.reading = True
    drive.run_until(
        lambda: True in producer.writability[before:], what="writable"
    )
    drive.run_until(lambda: len(peer.received) > 4 * written)
    producer.producing = False
    drive.run_until(lambda: len(peer.received) == producer.written)
    assert producer.max_pending <= bound
    assert channel.is_writable and channel.pending_output_bytes == 0
    changes = producer.writability
    assert changes[0] is False
    assert all(a != b for a, b in pairwise(changes))


# -- write-completion listeners that write again ------------------------------


class Chain(ChannelInboundHandler):
    """Streams ``count`` chunks, each one written when the last is done,
    the way a file is streamed without holding it in memory."""

    count = 2000

    def __init__(self) -> None:
        self.left = self.count

    def channel_active(self, ctx: ChannelHandlerContext) -> None:
        ctx.fire_channel_active()
        self.next(ctx)

    def next(self, ctx: ChannelHandlerContext) -> None:
        if self.left:
            self.left -= 1
            done = Future().add_listener(lambda _: self.next(ctx))
            ctx.write_and_flush(b"c" * 1000, done)


def test_writes_chained_on_completion_do_not_recurse(drive, caplog):
    """A completion listener that writes and flushes runs inside the
    flush that completed it. If that flush re-entered the write loop,
    every chunk would cost a few stack frames and a long stream would end
    in RecursionError."""
    channel, peer = drive.pair(Chain)
    drive.run_until(lambda: len(peer.received) == Chain.count * 1000)
    assert drive.handler(channel, Chain).left == 0
    assert caplog.records == []


# -- closing from inside a read -----------------------------------------------


class CloseOnFirstRead(ChannelInboundHandler):
    def channel_read(self, ctx: ChannelHandlerContext, msg: Any) -> None:
        ctx.close()
        ctx.fire_channel_read(msg)


def test_closing_inside_channel_read_stops_the_read_loop(drive, recorder):
    """The read loop may take several reads per wake-up; once a handler
    has closed the channel, no further bytes may be read and delivered
    (the descriptor may be about to belong to someone else)."""
    channel, peer = drive.pair(CloseOnFirstRead, recorder)
    record = drive.handler(channel, recorder)
    peer.send(b"x" * 200_000)  # far more than the first read takes
    drive.run_until(lambda: channel.close_future.done())
    reads = [event for event in record.events if event[0] == "read"]
    assert len(reads) == 1
    assert reads[0][2] is False  # delivered after close, by our handler


def test_descriptor_of_a_channel_closed_mid_batch_is_not_reused(drive):
    """While a poll batch is dispatched, a closed channel's fd stays
    taken, so a connection accepted later in the same batch cannot get
    its number, and the closed channel's own stale event in that batch
    reaches nobody."""
    loop = drive.loop
    accepted: list[tuple[Any, int]] = []  # (channel, poll number)
    seen: dict[str, Any] = {}

    class Killer(ChannelInboundHandler):
        def channel_read(self, ctx: ChannelHandlerContext, msg: Any) -> None:
            victim = accepted[0][0]
            seen["fd"] = victim.sock.fileno()
            seen["poll"] = loop.poll_count
            victim.close()
            seen["fd kept"] = victim.sock.fileno() == seen["fd"]

    def init(channel: Any) -> None:
        if len(accepted) == 1:
            channel.pipeline.add_last(Killer())
        accepted.append((channel, loop.poll_count))
        drive.channels.append(channel)

    server = ServerBootstrap(loop).child_initializer(init)
    listener = server.bind("127.0.0.1", 0)
    drive.servers.append(listener)
    address = listener.local_address
    victim_peer = drive.peer(address)
    drive.run_until(lambda: len(accepted) == 1)
    killer_peer = drive.peer(address)
    drive.run_until(lambda: len(accepted) == 2)

    # Readiness order = batch order: the killer's read, then the
    # listener, then the victim's own (now stale) read.
    killer_peer.send(b"kill")
    drive.peer(address)
    victim_peer.send(b"stale")
    drive.turn(0.1)

    assert seen["fd kept"]
    victim = accepted[0][0]
    assert victim.sock.fileno() == -1  # closed once the batch was done
    newcomer, polled_at = accepted[2]
    assert polled_at == seen["poll"], "not accepted in the same batch"
    assert newcomer.sock.fileno() != seen["fd"]


# -- 6. EMFILE while accepting ------------------------------------------------

EMFILE_SCRIPT = textwrap.dedent(
    """
    import json, os, resource, sys
    from reactor import EventLoop, ServerBootstrap

    loop = EventLoop()
    children = []
    server = ServerBootstrap(loop).child_initializer(
        children.append).bind("127.0.0.1", 0)

    def run_until(condition, timeout):
        deadline = loop.time() + timeout
        while not condition() and loop.time() < deadline:
            timer = loop.call_later(0.005, lambda: None)
            loop._run_once()
            loop.cancel_timer(timer)
        return condition()

    open_fds = []
    for name in os.listdir("/proc/self/fd"):
        try:
            os.fstat(int(name))
            open_fds.append(int(name))
        except OSError:
            pass  # the directory listing's own descriptor, now closed
    limit = max(open_fds) + 1 + 4
    free = limit - len(open_fds)
    resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))
    print(json.dumps({"port": server.local_address[1], "free": free}),
          flush=True)
    clients = int(sys.stdin.readline())  # all connected, in the backlog

    result = {"filled": run_until(
        lambda: server.accept_pauses >= 1, 5.0)}
    result["accepted_before"] = server.accepted
    polls = loop.poll_count
    loop.call_later(0.3, loop.stop)
    loop.run()
    result["idle_polls"] = loop.poll_count - polls
    result["pauses"] = server.accept_pauses
    result["listening"] = server.sock.fileno() >= 0
    for child in children[:3]:
        child.close()
    result["drained"] = run_until(lambda: server.accepted == clients, 3.0)
    result["accepted_after"] = server.accepted
    print(json.dumps(result), flush=True)
    """
)


def test_emfile_pauses_accepting_without_spinning():
    env = dict(os.environ, PYTHONPATH=str(SRC))
    clients: list[socket.socket] = []
    with subprocess.Popen(
        [sys.executable, "-c", EMFILE_SCRIPT],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        text=True,
    ) as proc:
        try:
            setup = json.loads(proc.stdout.readline())
            count = setup["free"] + 3
            for _ in range(count):
                clients.append(
                    socket.create_connection(
                        ("127.0.0.1", setup["port"]), timeout=5
                    )
                )
            proc.stdin.write(f"{count}\n")
            proc.stdin.flush()
            out, err = proc.communicate(timeout=10)
        finally:
            for client in clients:
                client.close()
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    assert proc.returncode == 0, err
    result = json.loads(out)
    assert result["filled"], result
    assert result["accepted_before"] == setup["free"]
    assert result["listening"]
    assert result["pauses"] >= 1
    assert result["idle_polls"] < QUIET_POLLS, result
    assert result["drained"], result
    assert result["accepted_after"] == count
    assert "pausing accepts" in err


# -- 7. one bad connection does not stop the others ---------------------------


class EchoUnlessBoom(ChannelInboundHandler):
    def channel_read(self, ctx: ChannelHandlerContext, msg: Any) -> None:
        data = msg.to_bytes()
        if data.startswith(b"boom"):
            raise ValueError("handler bug, provoked by the test")
        ctx.write_and_flush(data)


def test_a_raising_handler_is_logged_once_and_others_carry_on(drive, caplog):
    caplog.set_level(logging.WARNING)
    server = drive.serve(EchoUnlessBoom)
    bad = drive.peer(server.local_address)
    bad_channel = drive.accept(server)
    good = drive.peer(server.local_address)
    drive.accept(server)

    bad.send(b"boom")
    good.send(b"ping")
    drive.run_until(lambda: good.received == b"ping")
    drive.run_turns(5)
    label = f"0x{bad_channel.id:08x}"
    about_bad = [r for r in caplog.records if label in r.getMessage()]
    assert len(about_bad) == 1
    assert isinstance(about_bad[0].exc_info[1], ValueError)
    assert len(caplog.records) == 1
    # Through the pipeline (exception_caught, then the tail), not the
    # loop's catch-all for bugs in the reactor itself.
    assert loop_errors(caplog) == []

    # The bad connection is still served, and so is the good one.
    assert bad_channel.is_open
    bad.send(b"boom again")
    good.send(b" pong")
    drive.run_until(lambda: good.received == b"ping pong")
    drive.run_turns(3)
    assert len(caplog.records) == 2


def test_failing_initializer_drops_only_that_connection(drive, caplog):
    calls = []

    def init(channel: Any) -> None:
        calls.append(channel)
        if len(calls) == 1:
            raise RuntimeError("initializer bug")
        drive.channels.append(channel)

    server = ServerBootstrap(drive.loop).child_initializer(init)
    listener = server.bind("127.0.0.1", 0)
    drive.servers.append(listener)
    dropped = drive.peer(listener.local_address)
    drive.run_until(lambda: dropped.eof or dropped.error)
    kept = drive.peer(listener.local_address)
    drive.run_until(lambda: len(drive.channels) == 1)
    assert drive.channels[0].is_active
    assert not kept.eof
    assert "initializing a connection" in caplog.text


def test_raising_callbacks_and_listeners_do_not_stop_the_loop(drive, caplog):
    ran = []

    def bad() -> None:
        raise RuntimeError("callback bug")

    drive.loop.call_soon(bad)
    drive.loop.call_later(0, bad)
    future = Future().add_listener(lambda _: bad())
    drive.loop.call_soon(future.set_result)
    drive.loop.call_soon(ran.append, "still running")
    drive.run_until(lambda: ran)
    assert len(caplog.records) == 3


def test_a_flushed_empty_write_completes_and_does_not_spin(drive):
    """An empty write offers the kernel nothing: it must still be retired
    (its future completes) instead of being retried every loop turn."""
    server, _peer = drive.pair()
    done = Future()
    server.write_and_flush(b"", done)
    assert drive.idle_polls(0.1) < 20
    assert done.succeeded()
    assert not server.has_pending_output()
