"""Idle detection: tell the pipeline when a channel has been quiet too long.

``IdleStateHandler`` fires an ``IdleStateEvent`` user event when no byte
was read (reader idle), none was written (writer idle), or neither (all
idle) for the configured time. A heartbeat handler further down turns the
event into a ping or a close.

Cheap at scale, by construction:

* The transport already stamps ``channel.last_read_time`` on every read
  and ``channel.last_write_time`` whenever the socket accepted bytes. The
  handler therefore does nothing per read or per write; it only looks at
  those two numbers when its deadline comes. Because the write stamp moves
  whenever a flush makes progress, a slow peer that is still draining a
  large write does not look writer-idle.
* Deadlines live on the loop's timing wheel, with the handler itself as
  the wheel entry. When the deadline comes and the channel turns out to
  have been active meanwhile, the handler moves itself to the new deadline:
  no timer object is created per heartbeat, so 100,000 connections cost
  100,000 handler objects and nothing more.
"""

from __future__ import annotations

from enum import Enum
from typing import Final

from ..pipeline import ChannelHandlerContext, ChannelInboundHandler
from ..timer import NOT_ON_WHEEL

__all__ = ["IdleState", "IdleStateEvent", "IdleStateHandler"]


class IdleState(Enum):
    READER_IDLE = "reader idle"
    WRITER_IDLE = "writer idle"
    ALL_IDLE = "all idle"


class IdleStateEvent:
    """User event: ``state`` went idle; ``first`` for the first such event
    since the last activity."""

    __slots__ = ("first", "state")

    def __init__(self, state: IdleState, first: bool) -> None:
        self.state = state
        self.first = first

    def __repr__(self) -> str:
        tag = "first " if self.first else ""
        return f"IdleStateEvent({tag}{self.state.value})"


# Six possible events; shared instances, so firing allocates nothing.
_EVENTS: Final = {
    (state, first): IdleStateEvent(state, first)
    for state in IdleState
    for first in (True, False)
}


class IdleStateHandler(ChannelInboundHandler):
    """Fires ``IdleStateEvent`` after ``reader``/``writer``/``all`` seconds
    of silence; 0 disables a kind."""

    __slots__ = (
        "_ctx",
        "_fired",
        "_wheel_slot",
        "_wheel_tick",
        "all_idle",
        "reader_idle",
        "writer_idle",
    )

    def __init__(
        self, reader: float = 0.0, writer: float = 0.0, all: float = 0.0
    ) -> None:
        if min(reader, writer, all) < 0:
            raise ValueError("idle times must be >= 0")
        self.reader_idle = reader
        self.writer_idle = writer
        self.all_idle = all
        self._ctx: ChannelHandlerContext | None = None
        # The kinds that already fired since their last activity: the
        # next event of such a kind is not the "first" one.
        self._fired: set[IdleState] | None = None
        self._wheel_slot = NOT_ON_WHEEL
        self._wheel_tick = 0

    # -- lifecycle ------------------------------------------------------------

    def handler_added(self, ctx: ChannelHandlerContext) -> None:
        if ctx.channel.is_active:
            self._start(ctx)

    def channel_active(self, ctx: ChannelHandlerContext) -> None:
        self._start(ctx)
        ctx.fire_channel_active()

    def channel_inactive(self, ctx: ChannelHandlerContext) -> None:
        self._stop()
        ctx.fire_channel_inactive()

    def handler_removed(self, ctx: ChannelHandlerContext) -> None:
        self._stop()

    def _start(self, ctx: ChannelHandlerContext) -> None:
        if self._ctx is not None:
            return
        self._ctx = ctx
        shortest = min(
            (
                t
                for t in (self.reader_idle, self.writer_idle, self.all_idle)
                if t > 0
            ),
            default=0.0,
        )
        if shortest:
            loop = ctx.channel.loop
            loop.schedule_on_wheel(self, loop.time() + shortest)

    def _stop(self) -> None:
        ctx, self._ctx = self._ctx, None
        if ctx is not None:
            ctx.channel.loop.wheel.cancel(self)

    # -- the deadline ---------------------------------------------------------

    def on_wheel_timeout(self, now: float) -> None:
        ctx = self._ctx
        if ctx is None or not ctx.channel.is_open:
            return
        channel = ctx.channel
        read_at = channel.last_read_time
        write_at = channel.last_write_time
        next_deadline = float("inf")
        for state, timeout, last in (
            (IdleState.READER_IDLE, self.reader_idle, read_at),
            (IdleState.WRITER_IDLE, self.writer_idle, write_at),
            (IdleState.ALL_IDLE, self.all_idle, max(read_at, write_at)),
        ):
            if not timeout:
                continue
            deadline = last + timeout
            if now < deadline:
                self._activity_seen(state)
            else:
                self._fire(ctx, state)
                if not channel.is_open:
                    return  # the event closed the channel: nothing more
                # Next event one full period after this one.
                deadline = now + timeout
            next_deadline = min(next_deadline, deadline)
        channel.loop.schedule_on_wheel(self, next_deadline)

    def _activity_seen(self, state: IdleState) -> None:
        if self._fired is not None:
            self._fired.discard(state)

    def _fire(self, ctx: ChannelHandlerContext, state: IdleState) -> None:
        fired = self._fired
        if fired is None:
            fired = self._fired = set()
        first = state not in fired
        fired.add(state)
        ctx.fire_user_event_triggered(_EVENTS[state, first])
