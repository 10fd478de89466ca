"""A client's side of the protocol, sans I/O: requests out, events in.

``ClientSession`` holds everything a client must remember between
frames, and nothing about how frames travel:

* **Request ids.** Each request gets a fresh u32, counting up from 1
  and wrapping back to 1, skipping ids still waiting for a reply, so a
  reply always finds the one request it answers (docs/protocol.md,
  "Request ids").
* **Replies.** ``receive`` matches a reply to its request by id and
  checks that the reply's type can answer it: a server bug shows up as
  ``UnexpectedReply`` instead of, say, a PONG completing a send.
* **Delivery.** Pushed and synced messages go through a
  ``DeliveryTracker``: copies are dropped (a push that a later sync
  hands over again), holes are reported, and the cumulative
  DELIVERY_ACKs it is safe to send are computed on request.
* **Unacked sends.** Every SEND_TO_USER / SEND_TO_GROUP stays in an
  outbox, keyed by its client message id, until its SERVER_ACK. After a
  lost connection, ``resend_unacked`` builds the same messages again
  with the same ids, and the server stores each once whatever happened
  to the first attempt.

It has no socket, no thread and no clock. A transport (``connection``
on the reactor; a test with a list of bytes) writes ``Request.data``
(or ``Request.frame()`` on a plain socket), feeds every frame body it
reads to ``receive`` and acts on the events. When to send acks, when to
ping, how long to wait: all the transport's choices. That keeps one
tested core under the blocking client, the chat and the load generator.

A session outlives a connection on purpose: what the device holds and
what it still has to send are facts about the device. Tell the session
with ``connection_lost`` and keep using it on the next connection.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Final

from im.protocol import (
    MAX_LIST_ITEMS,
    ContentType,
    ConversationSeq,
    CreateGroup,
    DeliveryAck,
    Direction,
    Error,
    ErrorCode,
    GroupCreated,
    GroupJoined,
    GroupLeft,
    HistoryPage,
    HistoryRequest,
    JoinGroup,
    Kicked,
    LeaveGroup,
    ListMembers,
    Login,
    LoginFailed,
    LoginOk,
    MemberList,
    Message,
    Packet,
    Ping,
    Pong,
    ProtocolError,
    Push,
    SendToGroup,
    SendToUser,
    Serializer,
    ServerAck,
    SyncPage,
    SyncRequest,
    add_length_prefix,
    decode,
    encode,
)

from .events import (
    BacklogPageReceived,
    Event,
    GapDetected,
    MessageReceived,
    ProtocolViolation,
    ReplyReceived,
    ServerErrorReceived,
    SessionKicked,
    StrayReply,
    UnexpectedReply,
)
from .tracker import DeliveryTracker

__all__ = [
    "CLIENT_VERSION",
    "DEFAULT_HISTORY_LIMIT",
    "DEFAULT_SYNC_LIMIT",
    "ClientSession",
    "Request",
    "SendPacket",
]

#: What LOGIN tells the server about us (``client_version``).
CLIENT_VERSION: Final = "netim-client/0.1"

# Messages asked for per SYNC_PAGE: a page of small messages is a few
# tens of KiB, few round trips drain a day's backlog, and the server
# caps the page by bytes anyway.
DEFAULT_SYNC_LIMIT: Final = 200

#: Messages asked for per HISTORY_PAGE: a screenful and then some.
DEFAULT_HISTORY_LIMIT: Final = 50

_MAX_REQUEST_ID: Final = 0xFFFF_FFFF

SendPacket = SendToUser | SendToGroup

# The replies that may answer each request; ERROR may answer any.
_REPLIES: Final[dict[type[Packet], tuple[type[Packet], ...]]] = {
    Login: (LoginOk, LoginFailed),
    Ping: (Pong,),
    SendToUser: (ServerAck,),
    SendToGroup: (ServerAck,),
    SyncRequest: (SyncPage,),
    HistoryRequest: (HistoryPage,),
    CreateGroup: (GroupCreated,),
    JoinGroup: (GroupJoined,),
    LeaveGroup: (GroupLeft,),
    ListMembers: (MemberList,),
}

# A send refused with one of these stays in the outbox, to be sent
# again with the same id: the server may take it next time. Any other
# refusal (NO_SUCH_USER, NOT_A_MEMBER...) would only be refused again.
_RETRYABLE: Final = frozenset(
    {ErrorCode.RATE_LIMITED, ErrorCode.INTERNAL_ERROR}
)


def _new_message_id() -> str:
    # 32 hex digits: unique without coordination, and well inside the
    # protocol's 64-character ids.
    return uuid.uuid4().hex


def _content_bytes(content: bytes | bytearray | memoryview | str) -> bytes:
    if isinstance(content, str):
        return content.encode("utf-8")
    return bytes(content)


@dataclass(frozen=True, slots=True)
class Request:
    """A request ready to go: its id, its packet and its frame body."""

    request_id: int
    packet: Packet
    #: The frame body (header and packet, no length prefix): what a
    #: reactor pipeline with a LengthFieldPrepender writes.
    data: bytes

    def frame(self) -> bytes:
        """``data`` with its length prefix, for a plain socket."""
        return add_length_prefix(self.data)


class ClientSession:
    """One device's protocol state; see the module docstring.

    ``positions`` are conversations the device already holds up to some
    seq (saved from an earlier run); ``new_message_id`` makes client
    message ids (tests pass a predictable one).
    """

    def __init__(
        self,
        *,
        serializer: Serializer = Serializer.MSGPACK,
        client_version: str = CLIENT_VERSION,
        positions: Mapping[str, int] | None = None,
        new_message_id: Callable[[], str] = _new_message_id,
    ) -> None:
        self.serializer = serializer
        self.client_version = client_version
        self.tracker = DeliveryTracker(positions)
        #: The LOGIN_OK of the current connection; None before it.
        self.login_ok: LoginOk | None = None
        #: True once a sync (one asked for, or the backlog the server
        #: sends by itself after login) has run to its last page on this
        #: connection: from then on, pushes of new conversations are
        #: anchored.
        self.synced = False
        #: Copies of messages already held, dropped (a statistic).
        self.duplicates = 0
        self._next_id = 1
        self._waiting: dict[int, Packet] = {}
        self._outbox: dict[str, SendPacket] = {}
        self._new_message_id = new_message_id

    # -- requests -------------------------------------------------------------

    def request(self, packet: Packet) -> Request:
        """A request for any client-to-server ``packet``; a packet that
        expects a reply waits for it (see ``receive``). Raises
        ``EncodeError`` if the packet does not fit the protocol."""
        request_id = self._allocate_id()
        data = encode(packet, request_id, self.serializer)
        if type(packet) in _REPLIES:
            self._waiting[request_id] = packet
        return Request(request_id, packet, data)

    def login(self, token: str, device_id: str) -> Request:
        return self.request(Login(token, device_id, self.client_version))

    def ping(self) -> Request:
        return self.request(Ping())

    def send_to_user(
        self,
        to_user: str,
        content: bytes | bytearray | memoryview | str,
        content_type: int = ContentType.TEXT,
        client_message_id: str | None = None,
    ) -> Request:
        """A direct message; ``str`` content is sent as UTF-8. Without
        ``client_message_id`` a fresh one is made."""
        packet = SendToUser(
            client_message_id or self._new_message_id(),
            to_user,
            content_type,
            _content_bytes(content),
        )
        return self._send(packet)

    def send_to_group(
        self,
        group_id: str,
        content: bytes | bytearray | memoryview | str,
        content_type: int = ContentType.TEXT,
        client_message_id: str | None = None,
    ) -> Request:
        """A group message; otherwise as ``send_to_user``."""
        packet = SendToGroup(
            client_message_id or self._new_message_id(),
            group_id,
            content_type,
            _content_bytes(content),
        )
        return self._send(packet)

    def _send(self, packet: SendPacket) -> Request:
        request = self.request(packet)  # encoded first: a refused
        self._outbox[packet.client_message_id] = packet  # one is not kept
        return request

    def sync_request(
        self, cursor: str = "", limit: int = DEFAULT_SYNC_LIMIT
    ) -> Request:
        """A SYNC_REQUEST; ``received`` says what this device holds, so
        the server skips it. (Past ``MAX_LIST_ITEMS`` conversations the
        rest go unnamed; what they bring again is dropped as copies.)"""
        received = tuple(
            ConversationSeq(conversation_id, seq)
            for conversation_id, seq in itertools.islice(
                self.tracker.positions(), MAX_LIST_ITEMS
            )
        )
        return self.request(SyncRequest(cursor, received, limit))

    def history_request(
        self,
        conversation_id: str,
        before_seq: int = 0,
        limit: int = DEFAULT_HISTORY_LIMIT,
    ) -> Request:
        return self.request(HistoryRequest(conversation_id, before_seq, limit))

    def create_group(self, name: str, members: Iterable[str] = ()) -> Request:
        return self.request(CreateGroup(name, tuple(members)))

    def join_group(self, group_id: str) -> Request:
        return self.request(JoinGroup(group_id))

    def leave_group(self, group_id: str) -> Request:
        return self.request(LeaveGroup(group_id))

    def list_members(self, group_id: str) -> Request:
        return self.request(ListMembers(group_id))

    def delivery_ack(self, conversation_id: str, seq: int) -> Request:
        """An explicit DELIVERY_ACK: the application says the device
        holds ``conversation_id`` up to ``seq``, and from now on the
        session believes it too."""
        request = self.request(DeliveryAck(conversation_id, seq))
        self.tracker.assume(conversation_id, seq)
        self.tracker.note_acked(conversation_id, seq)
        return request

    def take_delivery_acks(self) -> list[Request]:
        """The cumulative DELIVERY_ACKs due now, one per conversation
        that advanced since its last ack; they count as sent."""
        return [
            self.request(DeliveryAck(conversation_id, seq))
            for conversation_id, seq in self.tracker.take_acks()
        ]

    def resend_unacked(self) -> list[Request]:
        """Every send still without SERVER_ACK and not in flight, again,
        with its first client message id (new request ids)."""
        in_flight = {
            packet.client_message_id
            for packet in self._waiting.values()
            if isinstance(packet, (SendToUser, SendToGroup))
        }
        return [
            self.request(packet)
            for client_message_id, packet in self._outbox.items()
            if client_message_id not in in_flight
        ]

    @property
    def unacked_sends(self) -> tuple[SendPacket, ...]:
        """Sends without a SERVER_ACK yet, oldest first."""
        return tuple(self._outbox.values())

    def discard_send(self, client_message_id: str) -> None:
        """Stop trying to deliver a send (the application gave up)."""
        self._outbox.pop(client_message_id, None)

    def is_waiting(self, request_id: int) -> bool:
        return request_id in self._waiting

    @property
    def waiting(self) -> int:
        """Requests sent and not answered yet."""
        return len(self._waiting)

    def forget(self, request_id: int) -> Packet | None:
        """Stop waiting for ``request_id`` (its caller gave up). A late
        reply then arrives as ``StrayReply``; the id may be reused."""
        return self._waiting.pop(request_id, None)

    def connection_lost(self) -> list[int]:
        """The connection is gone: no reply will come for the requests
        waiting (returned, so the transport can fail them). What the
        device holds and the unacked sends stay."""
        lost = list(self._waiting)
        self._waiting.clear()
        self.login_ok = None
        self.synced = False
        return lost

    def _allocate_id(self) -> int:
        # Among len(waiting) + 1 consecutive ids at least one is free,
        # so the loop always ends (and almost always at once).
        waiting = self._waiting
        for _ in range(len(waiting) + 1):
            request_id = self._next_id
            self._next_id = (
                1 if request_id == _MAX_REQUEST_ID else request_id + 1
            )
            if request_id not in waiting:
                return request_id
        raise AssertionError("unreachable: a free request id always exists")

    # -- receiving ------------------------------------------------------------

    def receive(self, body: bytes | bytearray | memoryview) -> list[Event]:
        """The events in one frame body from the server (often one;
        none for a copy of a message already held)."""
        try:
            header, packet = decode(body, Direction.TO_CLIENT)
        except ProtocolError as error:
            return [ProtocolViolation(error)]
        if type(packet) is Push:
            return self._on_message(packet.message)
        if type(packet) is Kicked:
            return [SessionKicked(packet.code, packet.reason)]
        request_id = header.request_id
        if request_id == 0 and type(packet) is SyncPage:
            return self._on_backlog_page(packet)
        request = self._waiting.pop(request_id, None) if request_id else None
        if request is None:
            if type(packet) is Error:
                return [ServerErrorReceived(request_id, packet)]
            return [StrayReply(request_id, packet)]
        return self._on_reply(request_id, request, packet)

    def _on_message(self, message: Message) -> list[Event]:
        receipt = self.tracker.receive(
            message.conversation_id, message.seq, anchor=self.synced
        )
        if not receipt.new:
            self.duplicates += 1
            return []
        if receipt.gap is None:
            return [MessageReceived(message)]
        first, last = receipt.gap
        gap = GapDetected(message.conversation_id, first, last)
        return [gap, MessageReceived(message)]

    def _on_backlog_page(self, page: SyncPage) -> list[Event]:
        # The server's own flush of the backlog after login: the same
        # bookkeeping as a page this session asked for, but nobody waits
        # for it, so each new message is reported on its own.
        events: list[Event] = []
        fresh = self._on_sync_page(page, events)
        events.extend(MessageReceived(m, synced=True) for m in fresh)
        events.append(BacklogPageReceived(len(fresh), not page.has_more))
        return events

    def _on_reply(
        self, request_id: int, request: Packet, reply: Packet
    ) -> list[Event]:
        if type(reply) is not Error and type(reply) not in _REPLIES.get(
            type(request), ()
        ):
            return [UnexpectedReply(request_id, request, reply)]
        events: list[Event] = []
        fresh: tuple[Message, ...] = ()
        if isinstance(request, (SendToUser, SendToGroup)):
            if not self._on_send_answered(request, reply, events):
                return [UnexpectedReply(request_id, request, reply)]
        elif type(reply) is LoginOk:
            self.login_ok = reply
        elif type(reply) is SyncPage:
            fresh = self._on_sync_page(reply, events)
        events.append(ReplyReceived(request_id, request, reply, fresh))
        return events

    def _on_send_answered(
        self, request: SendPacket, reply: Packet, events: list[Event]
    ) -> bool:
        """Settle the outbox; False if ``reply`` acks another message."""
        client_message_id = request.client_message_id
        if type(reply) is Error:
            if reply.code not in _RETRYABLE:
                self._outbox.pop(client_message_id, None)
            return True
        assert type(reply) is ServerAck
        if reply.client_message_id != client_message_id:
            return False
        self._outbox.pop(client_message_id, None)
        # The device holds its own message, so it counts towards the
        # conversation's cumulative ack like any other.
        receipt = self.tracker.receive(
            reply.conversation_id, reply.seq, anchor=self.synced, own=True
        )
        if receipt.gap is not None:
            first, last = receipt.gap
            events.append(GapDetected(reply.conversation_id, first, last))
        return True

    def _on_sync_page(
        self, page: SyncPage, events: list[Event]
    ) -> tuple[Message, ...]:
        fresh = []
        receive = self.tracker.receive
        for message in page.messages:
            receipt = receive(
                message.conversation_id, message.seq, anchor=True
            )
            if not receipt.new:
                self.duplicates += 1
                continue
            fresh.append(message)
            if receipt.gap is not None:
                first, last = receipt.gap
                events.append(
                    GapDetected(message.conversation_id, first, last)
                )
        if not page.has_more:
            # The server has handed over everything it held for us:
            # conversations seen only in pushes so far can be anchored.
            self.synced = True
            self.tracker.anchor_pending()
        return tuple(fresh)
