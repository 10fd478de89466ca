"""The server's pipeline handlers, in the order a frame meets them.

::

    socket
      |  frame decoder / prepender      (codec: length prefix)
      |  ProtocolCodec                  bytes <-> (header, packet)
      |  IdleStateHandler               (reactor: fires READER_IDLE)
      |  Heartbeat                      PING -> PONG; closes the silent
      |  LoginGate                      only LOGIN until logged in; then
      |                                 replaces itself with the Router
      v  Router                         packets -> use cases -> replies

Handlers hold no business rules: they turn packets into use-case calls
and results into packets. Use cases hold no sockets.

Outbound, every handler writes *encoded frame bodies* (``bytes``): a
push is encoded once and the same object is written to every recipient
(``Session.send``), so there is nothing left for an encoder handler to
do but the length prefix.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Final

from codec import FrameError
from im.application import NewGroup, SendOutcome
from im.domain import (
    ConversationId,
    DeviceAddress,
    DeviceId,
    DomainError,
    GroupId,
    Pending,
    UserId,
)
from im.framing import in_protocol_units
from im.infrastructure.tokens import TokenError, verify_token
from im.protocol import (
    CreateGroup,
    DeliveryAck,
    Direction,
    Error,
    ErrorCode,
    GroupCreated,
    GroupJoined,
    GroupLeft,
    Header,
    HistoryRequest,
    JoinGroup,
    LeaveGroup,
    ListMembers,
    Login,
    LoginFailed,
    LoginOk,
    MemberList,
    Packet,
    Ping,
    Pong,
    ProtocolError,
    SendToGroup,
    SendToUser,
    Serializer,
    SyncRequest,
    decode,
    encode,
    encode_error,
    encode_trusted,
)
from reactor import ChannelHandlerContext, ChannelInboundHandler
from reactor.handlers.idle import IdleState, IdleStateEvent

from .delivery import Delivery
from .limits import RateLimiter
from .services import Services
from .sessions import (
    HOLD_UNWRITABLE,
    DuplicateLogin,
    Session,
)
from .wire import (
    encode_ack,
    encode_history_page,
    encode_sync_page,
)

__all__ = [
    "ConnectionLog",
    "Heartbeat",
    "LoginGate",
    "ProtocolCodec",
    "RateLimiter",
    "Router",
]

log = logging.getLogger("im.server")


def _close_after(ctx: ChannelHandlerContext, data: bytes) -> None:
    """Send ``data`` and close once it has left (a lingering close, so
    unread input on our side does not turn into a reset that destroys
    the reply before the peer reads it)."""
    channel = ctx.channel
    channel.write_and_flush(data)
    channel.close_gracefully()


class ConnectionLog:
    """Why each connection ended, for its one "closed" log line."""

    __slots__ = ("reason",)

    def __init__(self) -> None:
        self.reason = ""

    def note(self, reason: str) -> None:
        if not self.reason:
            self.reason = reason


# -- bytes <-> packets --------------------------------------------------------


class ProtocolCodec(ChannelInboundHandler):
    """Frames in, ``(header, packet)`` out; protocol errors answered.

    A packet error (one bad packet in a sound stream) is answered with
    ERROR and the connection stays. A fatal one (not our protocol, a
    bad length) is answered, then the connection closes, and nothing
    more it sent is read: the stream cannot be trusted past that point.
    Opening and closing of connections are logged here, once each.
    """

    __slots__ = ("_broken", "closing")

    def __init__(self, closing: ConnectionLog) -> None:
        self.closing = closing
        self._broken = False

    def channel_active(self, ctx: ChannelHandlerContext) -> None:
        log.info("%r opened", ctx.channel)
        ctx.fire_channel_active()

    def channel_inactive(self, ctx: ChannelHandlerContext) -> None:
        # The handlers after this one first: the session's (a kick, say)
        # notes its reason as the event passes through it.
        ctx.fire_channel_inactive()
        reason = self.closing.reason or "peer closed"
        log.info("%r closed: %s", ctx.channel, reason)

    def channel_read(self, ctx: ChannelHandlerContext, msg: Any) -> None:
        if self._broken:
            return
        try:
            header, packet = decode(msg, Direction.TO_SERVER)
        except ProtocolError as error:
            self._refuse(ctx, error)
            return
        ctx.fire_channel_read((header, packet))

    def exception_caught(
        self, ctx: ChannelHandlerContext, exc: BaseException
    ) -> None:
        if isinstance(exc, FrameError):
            # The length prefix was over the limit or impossible: the
            # frame decoder found it before buffering anything.
            self._broken = True
            text = str(in_protocol_units(exc))
            self.closing.note(f"framing error: {text}")
            log.warning("%r: %s", ctx.channel, text)
            reply = Error(ErrorCode.FRAME_TOO_LONG, text[:1024], True)
            _close_after(ctx, encode(reply))
            return
        if isinstance(exc, ConnectionError):
            # A reset or a broken pipe: the peer went away, as phones do.
            # The transport closes the channel; its one "closed" line
            # says why. Nothing for an operator to act on.
            self.closing.note(f"connection lost: {exc.strerror or exc}")
            return
        ctx.fire_exception_caught(exc)

    def _refuse(
        self, ctx: ChannelHandlerContext, error: ProtocolError
    ) -> None:
        log.warning(
            "%r: %s %s",
            ctx.channel,
            error.code.name,
            error,
        )
        if error.close:
            self._broken = True
            self.closing.note(f"protocol error: {error.code.name}")
            _close_after(ctx, encode_error(error))
        else:
            ctx.write_and_flush(encode_error(error))


# -- heartbeat ----------------------------------------------------------------


class Heartbeat(ChannelInboundHandler):
    """Answers PING (before login too), and closes a silent connection.

    The IdleStateHandler before it fires READER_IDLE when nothing at all
    was read for the idle timeout: any frame counts as a sign of life,
    not only PING, so a busy client need not ping.
    """

    __slots__ = ("closing",)

    def __init__(self, closing: ConnectionLog) -> None:
        self.closing = closing

    def channel_read(self, ctx: ChannelHandlerContext, msg: Any) -> None:
        header, packet = msg
        if type(packet) is Ping:
            ctx.write_and_flush(
                encode_trusted(
                    Pong(), header.request_id, Serializer(header.serializer)
                )
            )
            return
        ctx.fire_channel_read(msg)

    def user_event_triggered(
        self, ctx: ChannelHandlerContext, event: object
    ) -> None:
        if (
            isinstance(event, IdleStateEvent)
            and event.state is IdleState.READER_IDLE
        ):
            self.closing.note("idle timeout: no frame from the peer")
            ctx.close()
            return
        ctx.fire_user_event_triggered(event)


# -- login --------------------------------------------------------------------


class LoginGate(ChannelInboundHandler):
    """Lets nothing but LOGIN (and PING, answered before us) through.

    A connection that does not log in within the login timeout is
    closed. After a successful login the gate replaces itself with a
    ``Router`` for the new session: the check costs nothing per packet
    from then on (Netty's idiom of a handler that removes itself).
    """

    __slots__ = ("_deadline", "closing", "services")

    def __init__(self, services: Services, closing: ConnectionLog) -> None:
        self.services = services
        self.closing = closing
        self._deadline: Any = None

    def channel_active(self, ctx: ChannelHandlerContext) -> None:
        loop = ctx.channel.loop
        self._deadline = loop.call_later(
            self.services.settings.login_timeout, self._too_late, ctx
        )
        ctx.fire_channel_active()

    def channel_inactive(self, ctx: ChannelHandlerContext) -> None:
        self._cancel_deadline(ctx)
        ctx.fire_channel_inactive()

    def _cancel_deadline(self, ctx: ChannelHandlerContext) -> None:
        if self._deadline is not None:
            ctx.channel.loop.cancel_timer(self._deadline)
            self._deadline = None

    def _too_late(self, ctx: ChannelHandlerContext) -> None:
        self._deadline = None
        if not ctx.channel.is_open:
            return
        self.closing.note("login timeout")
        error = Error(ErrorCode.LOGIN_TIMEOUT, "no LOGIN in time", True)
        _close_after(ctx, encode(error))

    def channel_read(self, ctx: ChannelHandlerContext, msg: Any) -> None:
        header, packet = msg
        serializer = Serializer(header.serializer)
        if type(packet) is not Login:
            error = Error(ErrorCode.NOT_LOGGED_IN, "log in first", False)
            ctx.write_and_flush(encode(error, header.request_id, serializer))
            return
        self._login(ctx, header, packet, serializer)

    def _login(
        self,
        ctx: ChannelHandlerContext,
        header: Header,
        login: Login,
        serializer: Serializer,
    ) -> None:
        services = self.services
        try:
            claims = verify_token(services.secret, login.token)
            if claims.device is not None and claims.device != login.device_id:
                raise TokenError(
                    f"token is for device {claims.device!r}, "
                    f"not {login.device_id!r}"
                )
        except TokenError as error:
            self._fail(ctx, header, serializer, ErrorCode[error.code], error)
            return
        address = DeviceAddress(UserId(claims.user), DeviceId(login.device_id))
        delivery = Delivery(services.sync)
        frame_context = ctx.pipeline.context(services.framing)
        if frame_context is None:
            raise RuntimeError(
                "no length prepender in the pipeline "
                "(im.server.connection_handlers lists it)"
            )
        session = Session(
            address,
            ctx.channel,
            serializer,
            services.flusher,
            delivery,
            frame_context,
            services.settings.max_pending_output,
        )
        try:
            services.registry.register(session)
        except DuplicateLogin:
            self._fail(
                ctx,
                header,
                serializer,
                ErrorCode.REPLACED,
                "this device is logged in on another connection",
            )
            return
        self._cancel_deadline(ctx)
        settings = services.settings
        ok = LoginOk(
            user_id=address.user,
            device_id=address.device,
            session_id=session.session_id,
            heartbeat_interval=settings.heartbeat_interval,
            idle_timeout=settings.idle_timeout,
            server_time=services.clock.now_ms(),
        )
        log.info(
            "%r logged in as %s (session %s)",
            ctx.channel,
            address,
            session.session_id,
        )
        session.send_packet(ok, header.request_id)
        router = Router(services, session, self.closing)
        ctx.pipeline.replace(self, router, "router")
        # Backlog first, then live: see delivery.py.
        delivery.start_flush(session)

    def _fail(
        self,
        ctx: ChannelHandlerContext,
        header: Header,
        serializer: Serializer,
        code: ErrorCode,
        error: object,
    ) -> None:
        log.info("%r: login refused: %s", ctx.channel, error)
        self.closing.note(f"login refused: {code.name}")
        failed = LoginFailed(code, str(error)[:1024])
        _close_after(ctx, encode(failed, header.request_id, serializer))


# -- requests of a logged-in session ------------------------------------------


class Router(ChannelInboundHandler):
    """Dispatches a session's packets to the use cases, and answers.

    Each request's reply is written when its use case's ``Pending``
    completes: at once with the in-memory store, later (through the
    loop's submit) with SQLite. A DomainError becomes ERROR with its
    code; anything else is our failure: INTERNAL_ERROR, and a log line.
    """

    __slots__ = (
        "_limiter",
        "_slow_timer",
        "closing",
        "services",
        "session",
    )

    def __init__(
        self, services: Services, session: Session, closing: ConnectionLog
    ) -> None:
        self.services = services
        self.session = session
        self.closing = closing
        self._limiter = RateLimiter(services.rate_policy)
        self._slow_timer: Any = None

    # -- lifecycle ------------------------------------------------------------

    def channel_inactive(self, ctx: ChannelHandlerContext) -> None:
        session = self.session
        self.closing.note(session.close_reason)
        self.services.registry.unregister(session)
        self._cancel_slow_timer(ctx)
        # The session and its delivery point at each other; untie them so
        # that the closed connection's state goes when the last reference
        # does, not at the next full garbage collection.
        session.delivery.detach()
        ctx.fire_channel_inactive()

    def channel_writability_changed(self, ctx: ChannelHandlerContext) -> None:
        channel = ctx.channel
        if channel.is_writable:
            self._cancel_slow_timer(ctx)
            # Inbound back-pressure: a client that does not read its
            # replies is not read from either (see the else branch).
            self.session.release_input(HOLD_UNWRITABLE)
            self.session.delivery.channel_writable()
        else:
            self.session.hold_input(HOLD_UNWRITABLE)
            if self._slow_timer is None:
                self._slow_timer = channel.loop.call_later(
                    self.services.settings.slow_consumer_timeout,
                    self._too_slow,
                )
        ctx.fire_channel_writability_changed()

    def _cancel_slow_timer(self, ctx: ChannelHandlerContext) -> None:
        if self._slow_timer is not None:
            ctx.channel.loop.cancel_timer(self._slow_timer)
            self._slow_timer = None

    def _too_slow(self) -> None:
        self._slow_timer = None
        session = self.session
        if session.channel.is_open and not session.channel.is_writable:
            log.warning(
                "%r %s: output above the high watermark for %g s",
                session.channel,
                session.address,
                self.services.settings.slow_consumer_timeout,
            )
            session.kick(ErrorCode.SLOW_CONSUMER, "not reading fast enough")

    # -- dispatch -------------------------------------------------------------

    def channel_read(self, ctx: ChannelHandlerContext, msg: Any) -> None:
        header, packet = msg
        if not self._limiter.allow():
            self._error(header, ErrorCode.RATE_LIMITED, "slow down")
            return
        handle = _ROUTES.get(type(packet))
        if handle is None:  # a packet the codec let in but we do not serve
            self._error(header, ErrorCode.UNEXPECTED_PACKET, "not served")
            return
        handle(self, header, packet)

    def _reply(
        self,
        header: Header,
        result: Pending[Any],
        answer: Callable[[Any], bytes | None],
    ) -> None:
        """When ``result`` completes: send ``answer(value)`` (None: no
        reply), or the ERROR for its failure."""
        session = self.session

        def done(pending: Pending[Any]) -> None:
            if not session.channel.is_open:
                return  # the connection went; a retry gets the reply
            error = pending.exception()
            if error is not None:
                self._refuse(header, error)
                return
            try:
                data = answer(pending.result())
            except Exception as exc:  # our bug: say so, keep serving
                self._failed(header, exc)
                return
            if data is not None:
                session.send(data)

        result.add_done_callback(done)

    def _refuse(self, header: Header, error: BaseException) -> None:
        """The ERROR for a request that failed with ``error``."""
        if isinstance(error, DomainError):
            code = ErrorCode[error.error_name]
            self._error(header, code, str(error))
        else:
            self._failed(header, error)

    def _encode(self, packet: Packet, header: Header) -> bytes:
        # A reply in the serializer of the request it answers
        # (docs/protocol.md), built from values the server has checked
        # or made itself: the trusted encoder.
        return encode_trusted(
            packet, header.request_id, Serializer(header.serializer)
        )

    def _error(self, header: Header, code: ErrorCode, text: str) -> None:
        # Error texts may quote what a client sent: the checked encoder.
        error = Error(code, text[:1024], False)
        self.session.send(
            encode(error, header.request_id, Serializer(header.serializer))
        )

    def _failed(self, header: Header, error: BaseException) -> None:
        log.error(
            "%r %s: request 0x%04x failed: %r",
            self.session.channel,
            self.session.address,
            header.packet_type,
            error,
            exc_info=error,
        )
        self._error(header, ErrorCode.INTERNAL_ERROR, "server error")

    # -- messages -------------------------------------------------------------

    def _send_to_user(self, header: Header, packet: SendToUser) -> None:
        result = self.services.send.to_user(
            self.session.address,
            packet.client_message_id,
            UserId(packet.to_user),
            packet.content_type,
            packet.content,
        )
        self._stored(header, result)

    def _send_to_group(self, header: Header, packet: SendToGroup) -> None:
        result = self.services.send.to_group(
            self.session.address,
            packet.client_message_id,
            GroupId(packet.group_id),
            packet.content_type,
            packet.content,
        )
        self._stored(header, result)

    def _stored(self, header: Header, result: Pending[SendOutcome]) -> None:
        """When a send's store completes: the SERVER_ACK, if the sender
        is still connected, then the pushes, whether it is or not. The
        message is stored; its recipients online must see it now, not
        at their next login, and a resend after a reconnect is a
        duplicate that pushes nothing."""
        session = self.session
        admission = self.services.admission
        admission.started(session)

        def done(pending: Pending[SendOutcome]) -> None:
            admission.finished()
            error = pending.exception()
            if error is not None:
                if session.channel.is_open:
                    self._refuse(header, error)
                return
            outcome = pending.result()
            try:
                # The ack before any push: the sender hears "stored" no
                # later than its other devices hear the news.
                if session.channel.is_open:
                    # The header's serializer is a known one by now: its
                    # number serves as well as the enum member, and costs
                    # no enum lookup per message.
                    ack = encode_ack(
                        outcome.ack, header.request_id, header.serializer
                    )
                    session.send(ack)
                    message = outcome.message
                    session.delivery.own_acked(
                        message.conversation_id, message.seq
                    )
                if outcome.recipients:
                    self.services.fan_out(outcome.message, outcome.recipients)
            except Exception as exc:  # our bug: say so, keep serving
                if session.channel.is_open:
                    self._failed(header, exc)
                else:
                    log.exception("fan-out of a send failed: %r", exc)

        result.add_done_callback(done)

    def _delivery_ack(self, header: Header, packet: DeliveryAck) -> None:
        try:
            conversation = ConversationId.parse(packet.conversation_id)
        except DomainError as error:
            self._error(header, ErrorCode[error.error_name], str(error))
            return
        result = self.services.ack(
            self.session.address, conversation, packet.seq
        )
        self._reply(header, result, lambda _cursor: None)

    # -- sync and history -----------------------------------------------------

    def _sync(self, header: Header, packet: SyncRequest) -> None:
        try:
            received = {
                ConversationId.parse(p.conversation_id): p.seq
                for p in packet.received
            }
        except DomainError as error:
            self._error(header, ErrorCode[error.error_name], str(error))
            return
        result = self.services.sync(
            self.session.address, packet.cursor, received, packet.limit
        )
        serializer = self.session.serializer
        self._reply(
            header,
            result,
            lambda page: encode_sync_page(page, header.request_id, serializer)[
                0
            ],
        )

    def _history(self, header: Header, packet: HistoryRequest) -> None:
        try:
            conversation = ConversationId.parse(packet.conversation_id)
        except DomainError as error:
            self._error(header, ErrorCode[error.error_name], str(error))
            return
        result = self.services.history(
            self.session.address.user,
            conversation,
            packet.before_seq,
            packet.limit,
        )
        serializer = self.session.serializer
        self._reply(
            header,
            result,
            lambda page: encode_history_page(
                page, header.request_id, serializer
            ),
        )

    # -- groups ---------------------------------------------------------------

    def _create_group(self, header: Header, packet: CreateGroup) -> None:
        members = tuple(UserId(m) for m in packet.members)
        result = self.services.create_group(
            self.session.address, packet.name, members
        )
        self._reply(
            header,
            result,
            lambda new: self._encode(
                GroupCreated(
                    new.group.group_id,
                    new.group.conversation_id.value,
                    new.group.name,
                ),
                header,
            ),
        )
        # After the reply (callbacks run in the order added): the group
        # exists for the creator before its first message arrives.
        result.add_done_callback(self._announce)

    def _announce(self, created: Pending[NewGroup]) -> None:
        """Push a new group's first message once it is stored, whether
        the creator is still connected or not (as ``_stored`` does)."""
        if created.exception() is not None:
            return  # refused: the creator has the ERROR, no one else cares
        services = self.services

        def stored(pending: Pending[SendOutcome]) -> None:
            error = pending.exception()
            if error is not None:
                log.warning("a new group's first message failed: %r", error)
                return
            outcome = pending.result()
            try:
                services.fan_out(
                    outcome.message,
                    outcome.recipients,
                    sending_device_too=True,
                )
            except Exception:  # our bug: say so, keep serving
                log.exception("fan-out of a new group's event failed")

        created.result().announced.add_done_callback(stored)

    def _join_group(self, header: Header, packet: JoinGroup) -> None:
        result = self.services.groups.join(
            self.session.address.user, GroupId(packet.group_id)
        )
        self._reply(
            header,
            result,
            lambda group: self._encode(
                GroupJoined(group.group_id, group.conversation_id.value),
                header,
            ),
        )

    def _leave_group(self, header: Header, packet: LeaveGroup) -> None:
        result = self.services.groups.leave(
            self.session.address.user, GroupId(packet.group_id)
        )
        self._reply(
            header,
            result,
            lambda group: self._encode(GroupLeft(group.group_id), header),
        )

    def _list_members(self, header: Header, packet: ListMembers) -> None:
        result = self.services.groups.members(
            self.session.address.user, GroupId(packet.group_id)
        )
        self._reply(
            header,
            result,
            lambda members: self._encode(
                MemberList(packet.group_id, tuple(members)), header
            ),
        )

    def _second_login(self, header: Header, packet: Login) -> None:
        self._error(header, ErrorCode.ALREADY_LOGGED_IN, "already logged in")


# Which Router method serves which packet. One table for the class, not
# one per connection: a dict of bound methods per Router cost about a
# kilobyte of every connection's memory.
_ROUTES: Final[dict[type[Packet], Callable[[Router, Header, Any], None]]] = {
    SendToUser: Router._send_to_user,
    SendToGroup: Router._send_to_group,
    DeliveryAck: Router._delivery_ack,
    SyncRequest: Router._sync,
    HistoryRequest: Router._history,
    CreateGroup: Router._create_group,
    JoinGroup: Router._join_group,
    LeaveGroup: Router._leave_group,
    ListMembers: Router._list_members,
    Login: Router._second_login,
}
