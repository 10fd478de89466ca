"""One load connection: a logged-in device that sends and receives.

``LoadDevice`` is a pipeline handler on the reactor, behind a frame
decoder, with no protocol objects on its hot path (see ``wire``). What it
does per packet from the server:

* **PUSH**: note the seq in the conversation's ``ConversationView``
  (order and exactly-once), the send time written into the content
  gives the send -> push latency, and a cumulative DELIVERY_ACK becomes
  due. Acks go out ``ACK_DELAY`` after the first message that made one
  due, as the client library's do.
* **SERVER_ACK**: the request it answers gives the send -> ack latency;
  the seq is the device's own message, held in its view too; the
  scenario hears of it (a closed loop sends the next message then).
* Anything else (LOGIN_OK, the backlog's last SYNC_PAGE, ERROR,
  KICKED, group replies) is rare and goes through ``im.protocol``.

Statistics go to the worker's ``Recorder``, shared by every device of a
load process; the device keeps only what is its own (requests in
flight, its views, the acks it owes).
"""

from __future__ import annotations

import struct
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

from im.protocol import (
    ContentType,
    Direction,
    Error,
    ErrorCode,
    GroupCreated,
    GroupJoined,
    Kicked,
    Login,
    LoginFailed,
    LoginOk,
    Packet,
    PacketType,
    ProtocolError,
    SyncPage,
    decode,
    encode,
)
from reactor import ChannelHandlerContext, ChannelInboundHandler

from . import wire
from .integrity import ConversationView

if TYPE_CHECKING:
    from reactor import Channel

    from .recorder import Recorder

__all__ = ["ACK_DELAY", "LoadDevice"]

# Delivery acks wait this long for more messages to ride along (the
# client library's default): one ack per conversation per batch.
ACK_DELAY: Final = 0.2
CLIENT_VERSION: Final = "netim-bench/1"

_PUSH: Final = int(PacketType.PUSH)
_GROUP_EVENT: Final = int(ContentType.GROUP_EVENT)
_SERVER_ACK: Final = int(PacketType.SERVER_ACK)
_PONG: Final = int(PacketType.PONG)
_LENGTH: Final = struct.Struct(">I")
_now_ns = time.monotonic_ns


def framed(body: bytes) -> bytes:
    """A frame body with its length prefix: ready for the socket."""
    return _LENGTH.pack(len(body)) + body


class LoadDevice(ChannelInboundHandler):
    """See the module docstring. ``on_ready`` runs once the login and
    its backlog are through; ``on_acked(device, ok)`` after each reply
    to a send; ``on_closed(device)`` when the connection ends."""

    __slots__ = (
        "_ack_timer",
        "_acks_due",
        "_next_id",
        "_replies",
        "channel",
        "closed",
        "heartbeat",
        "in_flight",
        "leaving",
        "logged_in",
        "on_acked",
        "on_closed",
        "on_ready",
        "on_refused",
        "ready",
        "recorder",
        "token",
        "user",
        "views",
    )

    def __init__(
        self,
        recorder: Recorder,
        user: str,
        token: str,
        *,
        heartbeat: bool = True,
    ) -> None:
        self.recorder = recorder
        self.user = user
        self.token = token
        self.heartbeat = heartbeat
        self.channel: Channel | None = None
        # request id -> send time (ns), for the sends still unanswered
        self.in_flight: dict[int, int] = {}
        self.views: dict[str, ConversationView] = {}
        self.logged_in = False
        self.ready = False
        self.closed = False
        # Set before the load closes the connection itself: that close
        # is not a disconnect to report.
        self.leaving = False
        self.on_ready: Callable[[LoadDevice], None] | None = None
        self.on_acked: Callable[[LoadDevice, bool], None] | None = None
        self.on_closed: Callable[[LoadDevice], None] | None = None
        # The login was refused (a wrong secret, say): what the server
        # said. Unset, the refusal is only counted as an error.
        self.on_refused: Callable[[LoadDevice, Packet], None] | None = None
        self._next_id = 1
        self._replies: dict[int, Callable[[Packet], None]] = {}
        self._acks_due: dict[str, int] = {}
        self._ack_timer: Any = None

    # -- requests -------------------------------------------------------------

    def _request_id(self) -> int:
        request_id = self._next_id
        self._next_id = request_id + 1 if request_id < 0xFFFF_FFFF else 1
        return request_id

    def send_to_user(self, to_user: str, size: int) -> None:
        """Send one timestamped message; flush is the caller's."""
        self._send(wire.send_to_user, to_user, size)

    def send_to_group(self, group_id: str, size: int) -> None:
        self._send(wire.send_to_group, group_id, size)

    def _send(self, build: Callable[..., bytes], to: str, size: int) -> None:
        channel = self.channel
        if channel is None or self.closed:
            return
        request_id = self._request_id()
        now = _now_ns()
        body = build(
            request_id,
            f"{self.user}-{request_id}",
            to,
            wire.content_with_time(now, size),
        )
        self.in_flight[request_id] = now
        channel.write(framed(body))
        self.recorder.sent += 1

    def request(
        self, packet: Packet, on_reply: Callable[[Packet], None]
    ) -> None:
        """A rare request (groups); ``on_reply`` gets its answer."""
        assert self.channel is not None
        request_id = self._request_id()
        self._replies[request_id] = on_reply
        self.channel.write_and_flush(framed(encode(packet, request_id)))

    def join(self, conversation_id: str) -> None:
        """This device belongs to ``conversation_id``: its view counts
        even if nothing ever arrives in it."""
        if conversation_id not in self.views:
            self.views[conversation_id] = ConversationView()

    # -- the pipeline ---------------------------------------------------------

    def channel_active(self, ctx: ChannelHandlerContext) -> None:
        self.channel = ctx.channel
        request_id = self._request_id()
        self._replies[request_id] = self._login_answered
        login = Login(self.token, "load", CLIENT_VERSION)
        ctx.channel.write_and_flush(framed(encode(login, request_id)))

    def channel_read(self, ctx: ChannelHandlerContext, msg: Any) -> None:
        kind = wire.packet_type(msg)
        if kind == _PUSH:
            self._pushed(wire.read_fields(msg)[0])
        elif kind == _SERVER_ACK:
            self._server_ack(wire.request_id(msg), wire.read_fields(msg))
        elif kind != _PONG:
            self._rare(msg)

    def channel_read_complete(self, ctx: ChannelHandlerContext) -> None:
        # Whatever the packets just read made the scenario send (the next
        # message of a closed loop) goes out in one write.
        ctx.channel.flush()

    def channel_inactive(self, ctx: ChannelHandlerContext) -> None:
        self.closed = True
        loop = ctx.channel.loop
        if self._ack_timer is not None:
            loop.cancel_timer(self._ack_timer)
            self._ack_timer = None
        if not self.leaving:
            self.recorder.disconnects += 1
        self.recorder.in_flight_lost += len(self.in_flight)
        self.in_flight.clear()
        if self.on_closed is not None:
            self.on_closed(self)

    def exception_caught(
        self, ctx: ChannelHandlerContext, exc: BaseException
    ) -> None:
        self.recorder.error(f"exception: {type(exc).__name__}: {exc}")
        ctx.channel.close()

    # -- hot packets ----------------------------------------------------------

    def _pushed(self, message: list[Any]) -> None:
        # [message_id, conversation_id, seq, chat_type, from_user,
        #  from_device, to, timestamp, content_type, content]
        conversation = message[1]
        view = self.views.get(conversation)
        if view is None:
            view = self.views[conversation] = ConversationView()
        view.pushed(message[2])
        # A new group's GROUP_EVENT is part of the log (acked with it),
        # but it is the server's message, not one of the load.
        if message[8] != _GROUP_EVENT:
            recorder = self.recorder
            recorder.delivered += 1
            if recorder.delivered % recorder.sample == 0:
                recorder.pushed(wire.sent_at(message[9]))
        self._ack_due(conversation, view.frontier)

    def _server_ack(self, request_id: int, ack: list[Any]) -> None:
        # [client_message_id, message_id, conversation_id, seq, timestamp]
        sent = self.in_flight.pop(request_id, None)
        recorder = self.recorder
        if sent is None:
            recorder.error("SERVER_ACK for no request")
            return
        conversation, seq = ack[2], ack[3]
        view = self.views.get(conversation)
        if view is None:
            view = self.views[conversation] = ConversationView()
        view.held(seq)
        recorder.acked(conversation, seq, sent)
        self._ack_due(conversation, view.frontier)
        if self.on_acked is not None:
            self.on_acked(self, True)

    def _ack_due(self, conversation: str, frontier: int) -> None:
        self._acks_due[conversation] = frontier
        if self._ack_timer is None and self.channel is not None:
            self._ack_timer = self.channel.loop.call_later(
                ACK_DELAY, self._send_acks
            )

    def _send_acks(self) -> None:
        self._ack_timer = None
        channel = self.channel
        if channel is None or self.closed:
            return
        due, self._acks_due = self._acks_due, {}
        for conversation, seq in due.items():
            if seq:
                channel.write(framed(wire.delivery_ack(conversation, seq)))
        channel.flush()

    # -- rare packets ---------------------------------------------------------

    def _rare(self, frame: Any) -> None:
        try:
            header, packet = decode(frame, Direction.TO_CLIENT)
        except ProtocolError as error:
            self.recorder.error(f"undecodable frame: {error}")
            return
        kind = type(packet)
        reply = self._replies.pop(header.request_id, None)
        if kind is Error:
            assert isinstance(packet, Error)
            self._error(header.request_id, packet, reply)
        elif reply is not None:
            reply(packet)
        elif kind is SyncPage:
            assert isinstance(packet, SyncPage)
            self._backlog_page(packet)
        elif kind is Kicked:
            assert isinstance(packet, Kicked)
            self.recorder.error(
                f"KICKED {_code_name(packet.code)}: {packet.reason}"
            )
        else:
            self.recorder.error(f"unexpected {kind.__name__}")

    def _error(
        self,
        request_id: int,
        error: Error,
        reply: Callable[[Packet], None] | None,
    ) -> None:
        self.recorder.error(error_key(error.code))
        if reply is not None:
            reply(error)
        elif (
            self.in_flight.pop(request_id, None) is not None
            and self.on_acked is not None
        ):
            self.on_acked(self, False)

    def _login_answered(self, reply: Packet) -> None:
        if type(reply) is not LoginOk:
            assert isinstance(reply, (LoginFailed, Error))
            self.recorder.error(f"login refused: {reply}")
            if self.on_refused is not None:
                self.on_refused(self, reply)
            return
        assert isinstance(reply, LoginOk)
        self.logged_in = True
        if self.heartbeat and self.channel is not None:
            interval = float(reply.heartbeat_interval)
            self.channel.loop.call_later(interval, self._beat, interval)

    def _backlog_page(self, page: SyncPage) -> None:
        # A fresh user has no backlog: one empty last page. Anything in
        # it is still the device's to hold.
        for message in page.messages:
            view = self.views.get(message.conversation_id)
            if view is None:
                view = self.views[message.conversation_id] = ConversationView()
            view.paged(message.seq)
        if not page.has_more and not self.ready:
            self.ready = True
            if self.on_ready is not None:
                self.on_ready(self)

    def _beat(self, interval: float) -> None:
        channel = self.channel
        if channel is None or self.closed:
            return
        channel.write_and_flush(framed(wire.ping(0)))
        channel.loop.call_later(interval, self._beat, interval)

    # -- group replies --------------------------------------------------------

    @staticmethod
    def group_id_of(reply: Packet) -> tuple[str, str] | None:
        """(group id, conversation id) from GROUP_CREATED/JOINED."""
        if isinstance(reply, (GroupCreated, GroupJoined)):
            return reply.group_id, reply.conversation_id
        return None


def error_key(code: int) -> str:
    """How the report counts an ERROR reply: ``ERROR RATE_LIMITED``."""
    return f"ERROR {_code_name(code)}"


def _code_name(code: int) -> str:
    """RATE_LIMITED rather than 3001 in the report; a code this client
    does not know stays a number."""
    try:
        return ErrorCode(code).name
    except ValueError:
        return str(code)
