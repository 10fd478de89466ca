"""IdleStateHandler on real sockets: what only a real transport shows.

The embedded tests (test_idle.py) move a fake clock; here the clock is
real and so is the kernel, which takes a large write a little at a time
as a slow peer reads. Times are short (W = 0.3 s, on a wheel that ticks
every 0.1 s), so margins are a tick or two.
"""

from __future__ import annotations

import time
from typing import Any

from reactor import ChannelHandlerContext, ChannelInboundHandler, Future
from reactor.handlers import IdleState, IdleStateEvent, IdleStateHandler

W = 0.3
# One wheel tick plus scheduling slack: how late an idle event may come.
LATE = 0.25

SLOW_CHUNK = 16 * 1024
SLOW_PERIOD = 0.02
PAYLOAD = 4 * 1024 * 1024  # far more than the slow phase can drain
SMALL_BUFFER = 16 * 1024  # socket buffers, so the kernel holds little


def idle_events(record: Any, state: IdleState) -> list[IdleStateEvent]:
    return [
        event
        for name, *rest in record.events
        if name == "user_event"
        for event in rest
        if isinstance(event, IdleStateEvent) and event.state is state
    ]


class CloseOnReaderIdle(ChannelInboundHandler):
    """A heartbeat timeout: a silent peer is gone, close the channel."""

    def user_event_triggered(
        self, ctx: ChannelHandlerContext, event: object
    ) -> None:
        if (
            isinstance(event, IdleStateEvent)
            and event.state is IdleState.READER_IDLE
        ):
            ctx.close()
        else:
            ctx.fire_user_event_triggered(event)


def test_a_slow_but_steady_reader_keeps_a_long_write_from_idling(
    drive, recorder
):
    channel, peer = drive.pair(
        lambda: IdleStateHandler(writer=W),
        recorder,
        sndbuf=SMALL_BUFFER,
        rcvbuf=SMALL_BUFFER,
    )
    record = drive.handler(channel, recorder)
    peer.reading = False  # the test reads, at its own pace
    written = Future()
    channel.write_and_flush(b"\x5a" * PAYLOAD, written)

    # Slow phase: 16 KiB every 20 ms for four idle periods. The write
    # stays incomplete throughout; only its progress is fresh.
    received = 0
    progress: list[tuple[float, int]] = []
    started = time.monotonic()
    next_read = started
    while time.monotonic() - started < 4 * W:
        drive.turn()
        if time.monotonic() >= next_read:
            try:
                received += len(peer.sock.recv(SLOW_CHUNK))
            except BlockingIOError:
                pass
            progress.append((time.monotonic(), received))
            next_read += SLOW_PERIOD
    assert not written.done(), "the write finished: the test proves nothing"
    # The premise: bytes kept moving in every idle period.
    for period in range(4):
        low = started + period * W
        moved = [n for t, n in progress if low <= t < low + W]
        assert moved and moved[-1] > moved[0], f"stalled in period {period}"
    assert idle_events(record, IdleState.WRITER_IDLE) == []

    # The peer stops reading: once the kernel buffers are full, nothing
    # moves, and the writer goes idle about W later.
    stopped = time.monotonic()
    drive.run_until(
        lambda: idle_events(record, IdleState.WRITER_IDLE),
        timeout=W + 1.0,
        what="WRITER_IDLE after the peer stopped reading",
    )
    fired_after = time.monotonic() - stopped
    assert W - 0.05 <= fired_after <= W + LATE + 0.2
    assert idle_events(record, IdleState.WRITER_IDLE)[0].first
    assert not written.done() and channel.is_open


def test_a_silent_connection_is_closed_by_a_heartbeat_timeout(drive, recorder):
    started = time.monotonic()
    channel, peer = drive.pair(
        lambda: IdleStateHandler(reader=W), recorder, CloseOnReaderIdle
    )
    record = drive.handler(channel, recorder)
    drive.run_until(
        lambda: channel.close_future.done(),
        timeout=W + 1.0,
        what="the heartbeat timeout to close the channel",
    )
    assert W - 0.05 <= time.monotonic() - started <= W + LATE + 0.2
    [event] = idle_events(record, IdleState.READER_IDLE)
    assert event.first
    # The close reached the wire: the peer sees the end of the stream.
    drive.run_until(lambda: peer.eof or peer.error, what="the peer's EOF")
    assert peer.received == b""


def test_a_peer_sending_every_third_of_the_timeout_stays_open(drive, recorder):
    channel, peer = drive.pair(
        lambda: IdleStateHandler(reader=W), recorder, CloseOnReaderIdle
    )
    record = drive.handler(channel, recorder)
    started = time.monotonic()
    next_send = started
    sent = 0
    while time.monotonic() - started < 4 * W:
        if time.monotonic() >= next_send:
            peer.send(b".")
            sent += 1
            next_send += W / 3
        drive.turn()
    drive.run_until(lambda: len(record.received) == sent, what="the bytes")
    assert channel.is_open and not (peer.eof or peer.error)
    assert idle_events(record, IdleState.READER_IDLE) == []

    # And the same connection, once silent, is closed: the silence, not
    # the configuration, made the difference.
    drive.run_until(
        lambda: channel.close_future.done(),
        timeout=W + 1.0,
        what="the heartbeat timeout once the peer fell silent",
    )
