"""The client transport on the reactor: one non-blocking connection.

``Connection`` puts a ``ClientSession`` on a reactor channel. Its
pipeline is the server's, mirrored::

    socket -> LengthFieldBasedFrameDecoder -> Connection (this handler)
    socket <- LengthFieldPrepender         <- Connection.write(...)

Nothing here blocks, so one loop can run thousands of connections (the
load generator does). Every method must be called on the loop's thread;
``blocking.Client`` shows how to drive one from other threads with
``loop.submit``. Each request method returns a reactor ``Future`` that
completes with the reply packet, or fails with a ``RequestError``
(ERROR), a ``LoginFailedError``, an ``UnexpectedReplyError`` or the
``ConnectionLost`` that ended the connection.

What the transport decides, because the sans-IO session cannot:

* **Heartbeat.** After LOGIN_OK it sends PING every
  ``heartbeat_interval`` seconds announced by the server. Any frame from
  the server proves it alive; after ``MAX_MISSED_HEARTBEATS`` beats with
  no frame at all, the connection is declared dead and closed: a peer
  that vanished without FIN would otherwise look open until TCP gives
  up, minutes later.
* **Delivery acks.** With ``auto_ack``, the cumulative acks that the
  session computes go out at most ``ack_delay`` seconds after the first
  message that made one due: a burst of pushes costs one DELIVERY_ACK
  per conversation, not one per message. After each sync page (and each
  page of backlog the server sends by itself after login) they go at
  once, the page being the batch, and once more before closing.
* **Gaps.** With ``fill_gaps``, a hole in a conversation (reported by
  the session) that is still there ``gap_grace`` seconds later starts a
  sync, which fetches the missing messages; they reach ``on_event`` as
  ``MessageReceived(synced=True)``. The grace lets pushes that merely
  overtook each other settle first.

``on_event`` receives what the application should see: messages, gaps,
KICKED, unsolicited errors, replies nobody waits for, and finally one
``Disconnected``. It runs on the loop thread and must not block.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any, Final

from im.framing import PREPENDER, frame_decoder, in_protocol_units
from im.protocol import (
    ContentType,
    Error,
    LoginFailed,
    LoginOk,
    SyncPage,
)
from reactor import (
    Bootstrap,
    Channel,
    ChannelHandlerContext,
    ChannelInboundHandler,
    EventLoop,
    Future,
    SocketChannel,
)
from reactor.loop import Scheduler
from reactor.timer import TimerHandle

from .errors import (
    ConnectionLost,
    KickedError,
    LoginFailedError,
    RequestError,
    UnexpectedReplyError,
    code_name,
)
from .events import (
    BacklogPageReceived,
    Disconnected,
    Event,
    GapDetected,
    MessageReceived,
    ProtocolViolation,
    ReplyReceived,
    ServerErrorReceived,
    SessionKicked,
    UnexpectedReply,
)
from .session import (
    DEFAULT_HISTORY_LIMIT,
    DEFAULT_SYNC_LIMIT,
    ClientSession,
    Request,
)

__all__ = [
    "DEFAULT_ACK_DELAY",
    "DEFAULT_CONNECT_TIMEOUT",
    "MAX_MISSED_HEARTBEATS",
    "Connection",
    "EventCallback",
]

_log = logging.getLogger("im.client")

EventCallback = Callable[[Event], None]

DEFAULT_CONNECT_TIMEOUT: Final = 10.0

# Acks wait this long for more messages to ride along: at most five
# DELIVERY_ACKs a second per conversation, and a message is acked well
# before any server would think of sending it again.
DEFAULT_ACK_DELAY: Final = 0.2

# Pushes of one conversation that overtook each other arrive within
# milliseconds; a hole still open after this is worth a sync.
DEFAULT_GAP_GRACE: Final = 0.5

# Heartbeats sent with no frame coming back before the connection is
# declared dead. Two: one lost PONG is not a dead server.
MAX_MISSED_HEARTBEATS: Final = 2

# Seconds a closing connection waits for the server to close its side,
# so that the last acks are read rather than reset away.
_CLOSE_LINGER: Final = 1.0

# (future, what to complete it with) for each request waiting.
_Waiter = tuple[Future, Callable[[ReplyReceived], Any]]


def _reply(event: ReplyReceived) -> Any:
    return event.reply


def _page_and_fresh(event: ReplyReceived) -> Any:
    return event.reply, event.fresh


class Connection:
    """One connection to a netim server; see the module docstring.

    Open one with ``Connection.open``. To carry on after a lost
    connection, open a new one with the old one's ``session``: it knows
    what the device holds and what it still has to send.

    Its pipeline handler is ``handler``; a test may put that in an
    ``EmbeddedChannel`` instead, to drive the connection on a clock it
    moves by hand.
    """

    __slots__ = (
        "_ack_timer",
        "_close_reason",
        "_gap_fill_pending",
        "_heartbeat_timer",
        "_lost",
        "_missed_beats",
        "_waiters",
        "ack_delay",
        "auto_ack",
        "channel",
        "closed",
        "fill_gaps",
        "gap_grace",
        "handler",
        "heartbeat",
        "on_event",
        "session",
    )

    def __init__(
        self,
        *,
        session: ClientSession | None = None,
        on_event: EventCallback | None = None,
        auto_ack: bool = True,
        ack_delay: float = DEFAULT_ACK_DELAY,
        heartbeat: bool = True,
        fill_gaps: bool = True,
        gap_grace: float = DEFAULT_GAP_GRACE,
    ) -> None:
        self.session = session if session is not None else ClientSession()
        self.on_event = on_event
        self.auto_ack = auto_ack
        self.ack_delay = ack_delay
        self.heartbeat = heartbeat
        self.fill_gaps = fill_gaps
        self.gap_grace = gap_grace
        # Set when the handler joins a pipeline (see handler_added).
        self.channel: Channel | None = None
        self.handler: ChannelInboundHandler = _Handler(self)
        #: Completes (with the ``ConnectionLost``) once the connection
        #: is gone and every waiting request has failed.
        self.closed = Future()
        self._waiters: dict[int, _Waiter] = {}
        # Why the channel is about to close, when we know before it does
        # (KICKED, LOGIN_FAILED, our own close...).
        self._close_reason: ConnectionLost | None = None
        self._lost: ConnectionLost | None = None
        self._heartbeat_timer: TimerHandle | None = None
        self._ack_timer: TimerHandle | None = None
        self._missed_beats = 0
        self._gap_fill_pending = False

    @classmethod
    def open(
        cls,
        loop: EventLoop,
        host: str,
        port: int,
        *,
        timeout: float = DEFAULT_CONNECT_TIMEOUT,
        source: str | None = None,
        **options: Any,
    ) -> Future:
        """Connect; the future's result is the ``Connection``, active.

        ``options`` go to the constructor (``session``, ``on_event``,
        ``auto_ack``...). Call on the loop's thread.
        """
        connection = cls(**options)
        result = Future()

        def connected(future: Future) -> None:
            error = future.exception()
            if error is not None:
                result.try_set_exception(error)
            else:
                result.try_set_result(connection)

        Bootstrap(loop).initializer(connection._initialize).connect(
            host, port, source=source, timeout=timeout
        ).add_listener(connected)
        return result

    def _initialize(self, channel: SocketChannel) -> None:
        channel.pipeline.add_last(frame_decoder()).add_last(
            PREPENDER
        ).add_last(self.handler)

    # -- state ----------------------------------------------------------------

    @property
    def loop(self) -> Scheduler:
        """The loop of the channel: timers and callbacks run there."""
        channel = self.channel
        if channel is None:
            raise RuntimeError("not connected: use Connection.open")
        loop: Scheduler = channel.loop
        return loop

    @property
    def is_open(self) -> bool:
        return self._lost is None and self.channel is not None

    @property
    def lost(self) -> ConnectionLost | None:
        """Why the connection ended; None while it is open."""
        return self._lost

    @property
    def login_ok(self) -> LoginOk | None:
        return self.session.login_ok

    # -- requests -------------------------------------------------------------

    def login(self, token: str, device_id: str) -> Future:
        """LOGIN; the result is the ``LoginOk``. Heartbeats start then."""
        return self._call(self.session.login(token, device_id))

    def ping(self) -> Future:
        """PING; the result is the ``Pong``."""
        return self._call(self.session.ping())

    def send_to_user(
        self,
        to_user: str,
        content: bytes | str,
        content_type: int = ContentType.TEXT,
        client_message_id: str | None = None,
    ) -> Future:
        """SEND_TO_USER; the result is the ``ServerAck``."""
        return self._call(
            self.session.send_to_user(
                to_user, content, content_type, client_message_id
            )
        )

    def send_to_group(
        self,
        group_id: str,
        content: bytes | str,
        content_type: int = ContentType.TEXT,
        client_message_id: str | None = None,
    ) -> Future:
        """SEND_TO_GROUP; the result is the ``ServerAck``."""
        return self._call(
            self.session.send_to_group(
                group_id, content, content_type, client_message_id
            )
        )

    def resend_unacked(self) -> list[Future]:
        """Send again every message still without SERVER_ACK (same
        client message ids); one future per message, as for a send."""
        return [self._call(r) for r in self.session.resend_unacked()]

    def sync_page(
        self, cursor: str = "", limit: int = DEFAULT_SYNC_LIMIT
    ) -> Future:
        """One SYNC_REQUEST; the result is ``(SyncPage, fresh)``, where
        ``fresh`` are the page's messages new to this device."""
        return self._call(
            self.session.sync_request(cursor, limit), _page_and_fresh
        )

    def sync(self, limit: int = DEFAULT_SYNC_LIMIT) -> Future:
        """Walk the backlog to its last page; the result is the list of
        messages new to this device, in the order the pages gave them."""
        result = Future()
        collected: list[Any] = []

        def on_page(future: Future) -> None:
            error = future.exception()
            if error is not None:
                result.try_set_exception(error)
                return
            page, fresh = future.result()
            collected.extend(fresh)
            if not page.has_more:
                result.try_set_result(collected)
            elif not page.next_cursor:
                # Asking again with "" would start over, forever.
                result.try_set_exception(
                    UnexpectedReplyError("SYNC_PAGE has_more without a cursor")
                )
            else:
                self.sync_page(page.next_cursor, limit).add_listener(on_page)

        self.sync_page("", limit).add_listener(on_page)
        return result

    def history(
        self,
        conversation_id: str,
        before_seq: int = 0,
        limit: int = DEFAULT_HISTORY_LIMIT,
    ) -> Future:
        """HISTORY_REQUEST; the result is the ``HistoryPage``."""
        return self._call(
            self.session.history_request(conversation_id, before_seq, limit)
        )

    def create_group(self, name: str, members: Iterable[str] = ()) -> Future:
        """CREATE_GROUP; the result is the ``GroupCreated``."""
        return self._call(self.session.create_group(name, members))

    def join_group(self, group_id: str) -> Future:
        """JOIN_GROUP; the result is the ``GroupJoined``."""
        return self._call(self.session.join_group(group_id))

    def leave_group(self, group_id: str) -> Future:
        """LEAVE_GROUP; the result is the ``GroupLeft``."""
        return self._call(self.session.leave_group(group_id))

    def members(self, group_id: str) -> Future:
        """LIST_MEMBERS; the result is the ``MemberList``."""
        return self._call(self.session.list_members(group_id))

    def ack(self, conversation_id: str, seq: int) -> None:
        """Send DELIVERY_ACK now (no reply comes)."""
        self._write(self.session.delivery_ack(conversation_id, seq))

    def flush_acks(self) -> None:
        """Send the cumulative acks that are due, now."""
        if self._ack_timer is not None:
            self.loop.cancel_timer(self._ack_timer)
            self._ack_timer = None
        if self._lost is not None:
            return
        for request in self.session.take_delivery_acks():
            self._write(request)

    def abandon(self, future: Future) -> None:
        """Stop waiting for the request behind ``future`` (its caller
        timed out); a late reply is then reported as a stray."""
        for request_id, (waiting, _) in self._waiters.items():
            if waiting is future:
                del self._waiters[request_id]
                self.session.forget(request_id)
                return

    def close(self) -> Future:
        """Send the acks that are due and close; the future completes
        once the connection is gone."""
        if self.channel is None or self._lost is not None:
            return self.closed
        if self._close_reason is None:
            self._close_reason = ConnectionLost("closed by the client")
        if self.auto_ack:
            self.flush_acks()
        if isinstance(self.channel, SocketChannel):
            self.channel.close_gracefully(_CLOSE_LINGER)
        else:
            self.channel.close()
        return self.closed

    def _call(
        self,
        request: Request,
        complete: Callable[[ReplyReceived], Any] = _reply,
    ) -> Future:
        future = Future()
        if self._lost is not None:
            self.session.forget(request.request_id)
            future.set_exception(self._lost)
            return future
        self._waiters[request.request_id] = (future, complete)
        self._write(request)
        return future

    def _write(self, request: Request) -> None:
        channel = self.channel
        if channel is None:
            raise RuntimeError("not connected: use Connection.open")
        channel.write_and_flush(request.data)

    # -- what the pipeline reports (through _Handler) -------------------------

    def _attached(self, channel: Channel) -> None:
        if self.channel is not None:
            raise RuntimeError("a Connection serves one channel only")
        self.channel = channel

    def _frame_received(self, msg: Any) -> None:
        self._missed_beats = 0  # any frame proves the server alive
        for event in self.session.receive(msg):
            self._dispatch(event)

    def _reads_done(self) -> None:
        # One batch of reads is done: the moment to think about acks.
        if (
            self.auto_ack
            and self._ack_timer is None
            and self._lost is None
            and self.session.tracker.acks_due()
        ):
            if self.ack_delay > 0:
                self._ack_timer = self.loop.call_later(
                    self.ack_delay, self.flush_acks
                )
            else:
                self.flush_acks()

    def _failed(self, exc: BaseException) -> None:
        # A framing error or a socket error; the channel closes next.
        if self._close_reason is None:
            reason = in_protocol_units(exc)
            self._close_reason = ConnectionLost(f"connection failed: {reason}")

    def _closed(self) -> None:
        error = self._close_reason or ConnectionLost(
            "the server closed the connection"
        )
        self._lost = error
        for timer in (self._heartbeat_timer, self._ack_timer):
            if timer is not None:
                self.loop.cancel_timer(timer)
        self._heartbeat_timer = self._ack_timer = None
        self.session.connection_lost()
        waiters, self._waiters = self._waiters, {}
        for future, _ in waiters.values():
            future.try_set_exception(error)
        self._emit(Disconnected(error))
        self.closed.try_set_result(error)

    # -- events from the session ----------------------------------------------

    def _dispatch(self, event: Event) -> None:
        kind = type(event)
        if kind is ReplyReceived:
            assert isinstance(event, ReplyReceived)
            self._on_reply(event)
        elif kind is MessageReceived:
            self._emit(event)
        elif kind is BacklogPageReceived:
            if self.auto_ack:
                self.flush_acks()  # the page is the batch, as for a sync
            self._emit(event)
        elif kind is UnexpectedReply:
            assert isinstance(event, UnexpectedReply)
            waiter = self._waiters.pop(event.request_id, None)
            if waiter is not None:
                waiter[0].try_set_exception(
                    UnexpectedReplyError(
                        f"{type(event.reply).__name__} cannot answer "
                        f"{type(event.request).__name__}"
                    )
                )
        elif kind is GapDetected:
            self._emit(event)
            self._gap_detected()
        elif kind is SessionKicked:
            assert isinstance(event, SessionKicked)
            self._close_reason = KickedError(event.code, event.reason)
            self._emit(event)
            self._close_now()
        elif kind is ServerErrorReceived:
            assert isinstance(event, ServerErrorReceived)
            if event.error.will_close and self._close_reason is None:
                self._close_reason = _closing_error(event.error)
            self._emit(event)
        elif kind is ProtocolViolation:
            assert isinstance(event, ProtocolViolation)
            self._emit(event)
            if event.error.close:
                self._close_reason = ConnectionLost(
                    f"the server broke the protocol: {event.error}"
                )
                self._close_now()
        else:  # StrayReply, and whatever a later session reports
            self._emit(event)

    def _on_reply(self, event: ReplyReceived) -> None:
        reply = event.reply
        kind = type(reply)
        if kind is LoginOk:
            assert isinstance(reply, LoginOk)
            self._start_heartbeat(reply.heartbeat_interval)
        elif kind is SyncPage and self.auto_ack:
            self.flush_acks()
        waiter = self._waiters.pop(event.request_id, None)
        if waiter is None:
            self._emit(event)  # built with the session directly
            return
        future, complete = waiter
        if kind is Error:
            assert isinstance(reply, Error)
            if reply.will_close and self._close_reason is None:
                self._close_reason = _closing_error(reply)
            future.try_set_exception(
                RequestError(
                    reply.code,
                    reply.text,
                    will_close=reply.will_close,
                    request_id=event.request_id,
                )
            )
        elif kind is LoginFailed:
            assert isinstance(reply, LoginFailed)
            error = LoginFailedError(reply.code, reply.reason)
            self._close_reason = ConnectionLost(str(error))
            future.try_set_exception(error)
        else:
            future.try_set_result(complete(event))

    def _emit(self, event: Event) -> None:
        callback = self.on_event
        if callback is None:
            return
        try:
            callback(event)
        except Exception:
            # The application's bug must not take the connection down.
            _log.exception("on_event callback raised for %r", event)

    def _close_now(self) -> None:
        if self.channel is not None:
            self.channel.close()

    # -- timers ---------------------------------------------------------------

    def _start_heartbeat(self, interval: int) -> None:
        if not self.heartbeat or interval <= 0:
            return
        if self._heartbeat_timer is not None:
            self.loop.cancel_timer(self._heartbeat_timer)
        self._heartbeat_timer = self.loop.call_later(
            interval, self._beat, interval
        )

    def _beat(self, interval: int) -> None:
        self._heartbeat_timer = None
        if self._lost is not None:
            return
        if self._missed_beats >= MAX_MISSED_HEARTBEATS:
            self._close_reason = ConnectionLost(
                f"no frame from the server in {self._missed_beats} "
                f"heartbeats of {interval} s: presumed dead"
            )
            self._close_now()
            return
        self._missed_beats += 1
        self._call(self.session.ping())  # nobody waits on the PONG
        self._heartbeat_timer = self.loop.call_later(
            interval, self._beat, interval
        )

    def _gap_detected(self) -> None:
        if not self.fill_gaps or self._gap_fill_pending:
            return
        self._gap_fill_pending = True
        self.loop.call_later(self.gap_grace, self._fill_gaps)

    def _fill_gaps(self) -> None:
        if self._lost is not None or not self.session.tracker.has_gaps():
            self._gap_fill_pending = False
            return
        self.sync().add_listener(self._gaps_filled)

    def _gaps_filled(self, future: Future) -> None:
        self._gap_fill_pending = False
        if future.succeeded():
            for message in future.result():
                self._emit(MessageReceived(message, synced=True))


class _Handler(ChannelInboundHandler):
    """A connection's place in its pipeline.

    A separate object because a handler's method names belong to the
    pipeline: were ``Connection`` itself the handler, its ``close()``
    would be taken for an outbound handler's ``close(ctx, promise)``,
    and every close of the channel would be routed into it.
    """

    __slots__ = ("_connection",)

    def __init__(self, connection: Connection) -> None:
        self._connection = connection

    def handler_added(self, ctx: ChannelHandlerContext) -> None:
        self._connection._attached(ctx.channel)

    def channel_read(self, ctx: ChannelHandlerContext, msg: Any) -> None:
        self._connection._frame_received(msg)

    def channel_read_complete(self, ctx: ChannelHandlerContext) -> None:
        self._connection._reads_done()

    def exception_caught(
        self, ctx: ChannelHandlerContext, exc: BaseException
    ) -> None:
        self._connection._failed(exc)  # consumed: the channel closes next

    def channel_inactive(self, ctx: ChannelHandlerContext) -> None:
        self._connection._closed()
        ctx.fire_channel_inactive()


def _closing_error(error: Error) -> ConnectionLost:
    return ConnectionLost(
        f"the server closed the connection: {code_name(error.code)} "
        f"({error.code}): {error.text}"
    )
