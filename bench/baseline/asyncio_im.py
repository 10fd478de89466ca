"""The IM server a Python user would write on asyncio's Protocol API.

This is the peer baseline that netim's IM server is measured against:
the same wire protocol (docs/protocol.md), spoken through the same codec
(``im.protocol``) so that both servers pay the same encoding cost (what
the server makes itself, acks and pushes, with ``encode_trusted``, as
netim's server does; what it reads, fully checked), but
on ``loop.create_server`` with one ``asyncio.Protocol`` per connection
and plain dicts for state, as a competent developer would write it
without netim. It runs on the stock asyncio loop or on uvloop::

    python bench/baseline/asyncio_im.py --port 7700 --secret HEX \\
        --loop uvloop

It prints "listening on HOST:PORT" on stdout once bound, so a runner can
wait for it (the store warning goes to the log on stderr first).

What it serves
--------------
LOGIN with the HMAC tokens of ``netim serve --secret`` (LOGIN_OK, then
one empty SYNC_PAGE with request id 0: the end of a backlog it never
has); PING; SEND_TO_USER and SEND_TO_GROUP, with a per-conversation seq
and resends deduplicated by client message id; DELIVERY_ACK (recorded,
no reply); CREATE_GROUP, JOIN_GROUP, LEAVE_GROUP, LIST_MEMBERS. A second
login of a device kicks the older connection (KICKED REPLACED); a
connection silent for the idle timeout is closed. Anything else gets
ERROR UNEXPECTED_PACKET, and a packet the codec refuses gets the codec's
ERROR (closing only when the error says so).

Conversation ids are netim's (src/im/domain/ids.py): "d:" and a BLAKE2b
digest of the two user ids for a direct conversation, "g:<group id>" for
a group; group ids count up from "1", as netim's in-memory store does.

Writing
-------
The ack goes out before the pushes of its message. Each PUSH is encoded
once per message (once per serializer in use) and the same bytes are
given to ``transport.write`` for every device, as they are produced:
there is no batching beyond what the transport does. Back-pressure is
the transport's: a slow reader's output waits in its write buffer while
we keep reading from it. ``pause_writing`` only raises a flag, so that
a connection whose buffer then grows past MAX_PENDING_OUTPUT is aborted,
its output dropped, instead of growing our memory for ever (netim sends
KICKED SLOW_CONSUMER first; here it would only wait behind the rest).

What it leaves out, on purpose
------------------------------
* Durability. Everything is in memory, NOT DURABLE: acknowledged
  messages are gone when the process ends.
* Sync and history. Messages are kept but never read back: no backlog
  after login, no SYNC_REQUEST, no HISTORY_REQUEST (both get ERROR
  UNEXPECTED_PACKET). A device offline when a message is sent never
  gets it. Delivery acks are recorded and never used.
* Rate limiting, the login deadline and the graceful shutdown of
  ``netim serve``. An idle connection is closed after the idle timeout
  whether it logged in or not, which also bounds one that never does.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import itertools
import logging
import secrets
import sys
import time
from collections.abc import Callable, Coroutine, Iterable
from typing import Any, Final, cast

from im.infrastructure.tokens import TokenError, verify_token
from im.protocol import (
    MAX_LIST_ITEMS,
    MAX_TEXT_LENGTH,
    ChatType,
    CreateGroup,
    DeliveryAck,
    Direction,
    Error,
    ErrorCode,
    FrameReader,
    FrameTooLongError,
    GroupCreated,
    GroupJoined,
    GroupLeft,
    Header,
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
    add_length_prefix,
    decode,
    encode_error,
    encode_frame,
    encode_trusted,
)

log = logging.getLogger("asyncio_im")

# The defaults of ``netim serve``: clients ping every 30 s, and three
# missed pings (90 s of silence) close the connection.
DEFAULT_HEARTBEAT_INTERVAL = 30
DEFAULT_IDLE_TIMEOUT = 90

# Output a connection may have waiting in its transport once it is
# paused; netim's max_pending_output. Past it the reader is too slow to
# be worth the memory, and its connection is aborted.
MAX_PENDING_OUTPUT: Final = 8 * 1024 * 1024

# netim's group size cap: the protocol's list limit, so that a member
# list always fits one MEMBER_LIST.
MAX_GROUP_MEMBERS: Final = MAX_LIST_ITEMS

GROUP_PREFIX: Final = "g:"
DIRECT_PREFIX: Final = "d:"

STORE_DESCRIPTION: Final = (
    "in memory, NOT DURABLE: acknowledged messages are lost when the "
    "server stops"
)

# What the device gets after LOGIN_OK: the last (and only) page of a
# backlog this server never keeps.
EMPTY_BACKLOG: Final = SyncPage((), False, "")


def direct_conversation_id(a: str, b: str) -> str:
    """netim's id for the conversation of ``a`` and ``b``, either way
    round: the two ids sorted, each behind its 4-byte length (so that
    ("ab", "c") and ("a", "bc") differ), hashed to 20 bytes."""
    digest = hashlib.blake2b(digest_size=20)
    for user in sorted((a, b)):
        raw = user.encode("utf-8", "surrogatepass")
        digest.update(len(raw).to_bytes(4, "big"))
        digest.update(raw)
    return DIRECT_PREFIX + digest.hexdigest()


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class Refused(Exception):
    """A request the IM rules refuse; the client gets ERROR ``code``."""

    def __init__(self, code: ErrorCode, text: str) -> None:
        super().__init__(text)
        self.code = code


class Group:
    __slots__ = ("conversation_id", "group_id", "members", "name")

    def __init__(self, group_id: str, name: str, members: Iterable[str]):
        self.group_id = group_id
        self.conversation_id = GROUP_PREFIX + group_id
        self.name = name
        # An ordered set: MEMBER_LIST lists members in joining order.
        self.members: dict[str, None] = dict.fromkeys(members)


class Hub:
    """Everything the connections share: who is online, the messages,
    the groups. All of it in dicts, NOT DURABLE; one loop thread, so
    nothing locks."""

    def __init__(
        self, secret: bytes, heartbeat_interval: int, idle_timeout: int
    ) -> None:
        self.secret = secret
        self.heartbeat_interval = heartbeat_interval
        self.idle_timeout = idle_timeout
        # user -> device -> its connection
        self.online: dict[str, dict[str, ImProtocol]] = {}
        # conversation id -> its messages; a message's seq is its place
        self.conversations: dict[str, list[Message]] = {}
        # user -> the direct conversations it takes part in
        self.direct_of: dict[str, set[str]] = {}
        # (sender, client message id) -> the ack of the message stored
        self.sent: dict[tuple[str, str], ServerAck] = {}
        # (user, device, conversation id) -> cumulative delivery ack
        self.delivered: dict[tuple[str, str, str], int] = {}
        self.groups: dict[str, Group] = {}
        self._message_ids = itertools.count(1)
        self._group_ids = itertools.count(1)

    # -- sessions -------------------------------------------------------------

    def register(self, connection: ImProtocol) -> None:
        """``connection`` is now its device's session; an older one is
        unregistered first (so nothing more is pushed to it), then
        kicked."""
        devices = self.online.setdefault(connection.user, {})
        older = devices.pop(connection.device, None)
        if older is not None:
            older.kick(ErrorCode.REPLACED, "logged in again elsewhere")
        devices[connection.device] = connection

    def unregister(self, connection: ImProtocol) -> None:
        devices = self.online.get(connection.user)
        if devices and devices.get(connection.device) is connection:
            del devices[connection.device]
            if not devices:
                del self.online[connection.user]

    # -- messages -------------------------------------------------------------

    def store(
        self,
        sender: ImProtocol,
        client_message_id: str,
        conversation_id: str,
        chat_type: ChatType,
        to: str,
        content_type: int,
        content: bytes,
    ) -> tuple[ServerAck, Message | None]:
        """The ack for a message, and the message if it is new (None for
        a resend: the first send pushed it already)."""
        key = (sender.user, client_message_id)
        ack = self.sent.get(key)
        if ack is not None:
            return ack, None
        timeline = self.conversations.get(conversation_id)
        if timeline is None:
            timeline = self.conversations[conversation_id] = []
            if chat_type is ChatType.DIRECT:
                for user in (sender.user, to):
                    self.direct_of.setdefault(user, set()).add(conversation_id)
        message = Message(
            message_id=next(self._message_ids),
            conversation_id=conversation_id,
            seq=len(timeline) + 1,
            chat_type=chat_type,
            from_user=sender.user,
            from_device=sender.device,
            to=to,
            timestamp=now_ms(),
            content_type=content_type,
            content=content,
        )
        timeline.append(message)
        ack = ServerAck(
            client_message_id,
            message.message_id,
            conversation_id,
            message.seq,
            message.timestamp,
        )
        self.sent[key] = ack
        return ack, message

    def push(
        self, message: Message, sender: ImProtocol, users: Iterable[str]
    ) -> None:
        """PUSH ``message`` to the sender's other devices and to every
        online device of ``users``: encoded once, the same bytes for
        everyone (once per serializer, if some speak JSON)."""
        packet = Push(message)
        frames: dict[Serializer, bytes] = {}
        online = self.online
        targets = [
            c for c in online.get(sender.user, {}).values() if c is not sender
        ]
        for user in users:
            devices = online.get(user)
            if devices:
                targets.extend(devices.values())
        for connection in targets:
            data = frames.get(connection.serializer)
            if data is None:
                data = add_length_prefix(
                    encode_trusted(packet, 0, connection.serializer)
                )
                frames[connection.serializer] = data
            connection.send(data)

    def record_delivery(
        self, user: str, device: str, conversation_id: str, seq: int
    ) -> None:
        """The device holds ``conversation_id`` up to ``seq``; kept
        cumulative and no higher than the last message."""
        if conversation_id.startswith(GROUP_PREFIX):
            group = self.groups.get(conversation_id[len(GROUP_PREFIX) :])
            if group is None:
                raise Refused(
                    ErrorCode.NO_SUCH_CONVERSATION,
                    f"no conversation {conversation_id}",
                )
            self.require_member(group, user)
        elif conversation_id not in self.direct_of.get(user, ()):
            raise Refused(
                ErrorCode.NO_SUCH_CONVERSATION,
                f"no conversation {conversation_id}",
            )
        last = len(self.conversations.get(conversation_id, ()))
        key = (user, device, conversation_id)
        self.delivered[key] = max(self.delivered.get(key, 0), min(seq, last))

    # -- groups ---------------------------------------------------------------

    def create_group(
        self, creator: str, name: str, members: Iterable[str]
    ) -> Group:
        everyone = (creator, *members)
        if len(set(everyone)) > MAX_GROUP_MEMBERS:
            raise Refused(
                ErrorCode.INVALID_ARGUMENT,
                f"more than {MAX_GROUP_MEMBERS} members",
            )
        group = Group(str(next(self._group_ids)), name, everyone)
        self.groups[group.group_id] = group
        return group

    def group(self, group_id: str) -> Group:
        group = self.groups.get(group_id)
        if group is None:
            raise Refused(ErrorCode.NO_SUCH_GROUP, f"no group {group_id}")
        return group

    def require_member(self, group: Group, user: str) -> None:
        if user not in group.members:
            raise Refused(
                ErrorCode.NOT_A_MEMBER,
                f"{user} is not a member of group {group.group_id}",
            )


class ImProtocol(asyncio.Protocol):
    """One connection: frames in, packets dispatched, replies written.

    Before LOGIN only LOGIN and PING are served. Every reply is written
    in the serializer of its request; PUSH and KICKED in the LOGIN's.
    """

    transport: asyncio.Transport
    loop: asyncio.AbstractEventLoop

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.reader = FrameReader()
        self.user = ""  # "" until logged in
        self.device = ""
        self.serializer = Serializer.MSGPACK
        self.peer = "?"
        self.closing = False
        self.close_reason = ""
        self.paused = False
        self.last_read = 0.0
        self.idle_timer: asyncio.TimerHandle | None = None
        self.handlers: dict[type[Packet], Callable[[Header, Any], None]] = {
            Login: self.on_login,
            Ping: self.on_ping,
            SendToUser: self.on_send_to_user,
            SendToGroup: self.on_send_to_group,
            DeliveryAck: self.on_delivery_ack,
            CreateGroup: self.on_create_group,
            JoinGroup: self.on_join_group,
            LeaveGroup: self.on_leave_group,
            ListMembers: self.on_list_members,
        }

    # -- the connection -------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport, so this
        # is a cast for the type checker, not a check.
        self.transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        if peer:
            self.peer = f"{peer[0]}:{peer[1]}"
        self.loop = asyncio.get_running_loop()
        self.last_read = self.loop.time()
        self.idle_timer = self.loop.call_later(
            self.hub.idle_timeout, self.check_idle
        )

    def connection_lost(self, exc: Exception | None) -> None:
        if self.idle_timer is not None:
            self.idle_timer.cancel()
        self.closing = True
        if self.user:
            self.hub.unregister(self)
        reason = self.close_reason or (str(exc) if exc else "peer closed")
        log.info("%s closed: %s", self, reason)

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False

    def check_idle(self) -> None:
        """Close the connection if nothing came for the idle timeout;
        otherwise look again when it would run out. (One timer armed
        once per timeout, not one per read.)"""
        if self.closing:
            return
        silent = self.loop.time() - self.last_read
        timeout = self.hub.idle_timeout
        if silent >= timeout:
            self.idle_timer = None
            self.close("idle timeout: no frame from the peer")
        else:
            self.idle_timer = self.loop.call_later(
                timeout - silent, self.check_idle
            )

    def close(self, reason: str, abort: bool = False) -> None:
        """Close once what is written has left (``abort``: at once,
        dropping it); nothing more is read either way."""
        if self.closing:
            return
        self.closing = True
        self.close_reason = reason
        if self.user:
            self.hub.unregister(self)
        if abort:
            self.transport.abort()
        else:
            self.transport.close()

    def kick(self, code: ErrorCode, reason: str) -> None:
        self.send(encode_frame(Kicked(code, reason), 0, self.serializer))
        self.close(f"kicked: {code.name.lower()}")

    def send(self, data: bytes) -> None:
        """Write one frame (prefix included)."""
        if self.closing:
            return
        self.transport.write(data)
        if (
            self.paused
            and self.transport.get_write_buffer_size() > MAX_PENDING_OUTPUT
        ):
            # A graceful close would wait for the peer to read all of
            # it, which it does not: drop the output and the connection.
            log.warning("%s: too much unread output", self)
            self.close("kicked: slow_consumer", abort=True)

    def reply(self, packet: Packet, header: Header) -> None:
        serializer = Serializer(header.serializer)
        if type(packet) is Error:  # its text may quote the client
            self.send(encode_frame(packet, header.request_id, serializer))
            return
        body = encode_trusted(packet, header.request_id, serializer)
        self.send(add_length_prefix(body))

    def __str__(self) -> str:
        who = f" {self.user}/{self.device}" if self.user else ""
        return f"[{self.peer}{who}]"

    # -- frames in ------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        self.last_read = self.loop.time()
        try:
            frames = self.reader.feed(data)
        except FrameTooLongError as error:
            self.refuse(error)
            return
        for frame in frames:
            if self.closing:
                return  # nothing after a close is read
            self.frame_received(frame)

    def frame_received(self, frame: bytes) -> None:
        try:
            header, packet = decode(frame, Direction.TO_SERVER)
        except ProtocolError as error:
            self.refuse(error)
            return
        handler = self.handlers.get(type(packet))
        try:
            if not self.user and type(packet) not in (Login, Ping):
                raise Refused(ErrorCode.NOT_LOGGED_IN, "log in first")
            if handler is None:
                raise Refused(
                    ErrorCode.UNEXPECTED_PACKET,
                    f"{packet.TYPE.name} is not served by this baseline",
                )
            handler(header, packet)
        except Refused as refusal:
            text = str(refusal)[:MAX_TEXT_LENGTH]
            self.reply(Error(refusal.code, text, False), header)
        except Exception:  # our bug: say so, keep serving
            log.exception("%s: %s failed", self, packet.TYPE.name)
            failed = Error(ErrorCode.INTERNAL_ERROR, "server error", False)
            self.reply(failed, header)

    def refuse(self, error: ProtocolError) -> None:
        """Answer a frame the codec refused; close if it says so."""
        log.warning("%s: %s %s", self, error.code.name, error)
        self.send(add_length_prefix(encode_error(error)))
        if error.close:
            self.close(f"protocol error: {error.code.name}")

    # -- session --------------------------------------------------------------

    def on_login(self, header: Header, packet: Login) -> None:
        if self.user:
            raise Refused(ErrorCode.ALREADY_LOGGED_IN, "already logged in")
        hub = self.hub
        try:
            claims = verify_token(hub.secret, packet.token)
            if claims.device is not None and claims.device != packet.device_id:
                raise TokenError(f"token is for device {claims.device!r}")
        except TokenError as error:
            reason = str(error)[:MAX_TEXT_LENGTH]
            self.reply(LoginFailed(ErrorCode[error.code], reason), header)
            self.close(f"login refused: {error.code}")
            return
        self.user = claims.user
        self.device = packet.device_id
        self.serializer = Serializer(header.serializer)
        hub.register(self)
        session_id = secrets.token_hex(8)
        log.info("%s logged in (session %s)", self, session_id)
        ok = LoginOk(
            user_id=self.user,
            device_id=self.device,
            session_id=session_id,
            heartbeat_interval=hub.heartbeat_interval,
            idle_timeout=hub.idle_timeout,
            server_time=now_ms(),
        )
        self.reply(ok, header)
        # The client library waits for the backlog's last page.
        self.send(encode_frame(EMPTY_BACKLOG, 0, self.serializer))

    def on_ping(self, header: Header, packet: Ping) -> None:
        self.reply(Pong(), header)

    # -- messages -------------------------------------------------------------

    def on_send_to_user(self, header: Header, packet: SendToUser) -> None:
        to = packet.to_user
        conversation_id = direct_conversation_id(self.user, to)
        users = (to,) if to != self.user else ()
        self.deliver(
            header, packet, conversation_id, ChatType.DIRECT, to, users
        )

    def on_send_to_group(self, header: Header, packet: SendToGroup) -> None:
        hub = self.hub
        group = hub.group(packet.group_id)
        hub.require_member(group, self.user)
        others = [u for u in group.members if u != self.user]
        self.deliver(
            header,
            packet,
            group.conversation_id,
            ChatType.GROUP,
            group.group_id,
            others,
        )

    def deliver(
        self,
        header: Header,
        packet: SendToUser | SendToGroup,
        conversation_id: str,
        chat_type: ChatType,
        to: str,
        users: Iterable[str],
    ) -> None:
        """Store, ack, push: the ack leaves before any push of it."""
        hub = self.hub
        ack, message = hub.store(
            self,
            packet.client_message_id,
            conversation_id,
            chat_type,
            to,
            packet.content_type,
            packet.content,
        )
        self.reply(ack, header)
        if message is not None:
            hub.push(message, self, users)

    def on_delivery_ack(self, header: Header, packet: DeliveryAck) -> None:
        self.hub.record_delivery(
            self.user, self.device, packet.conversation_id, packet.seq
        )

    # -- groups ---------------------------------------------------------------

    def on_create_group(self, header: Header, packet: CreateGroup) -> None:
        group = self.hub.create_group(self.user, packet.name, packet.members)
        created = GroupCreated(
            group.group_id, group.conversation_id, group.name
        )
        self.reply(created, header)

    def on_join_group(self, header: Header, packet: JoinGroup) -> None:
        group = self.hub.group(packet.group_id)
        if self.user not in group.members:
            if len(group.members) >= MAX_GROUP_MEMBERS:
                raise Refused(
                    ErrorCode.INVALID_ARGUMENT,
                    f"group {group.group_id} is full",
                )
            group.members[self.user] = None
        self.reply(GroupJoined(group.group_id, group.conversation_id), header)

    def on_leave_group(self, header: Header, packet: LeaveGroup) -> None:
        group = self.hub.group(packet.group_id)
        self.hub.require_member(group, self.user)
        del group.members[self.user]
        self.reply(GroupLeft(group.group_id), header)

    def on_list_members(self, header: Header, packet: ListMembers) -> None:
        group = self.hub.group(packet.group_id)
        self.hub.require_member(group, self.user)
        members = MemberList(group.group_id, tuple(group.members))
        self.reply(members, header)


# -- running ------------------------------------------------------------------


async def serve(args: argparse.Namespace, secret: bytes) -> None:
    loop = asyncio.get_running_loop()
    hub = Hub(secret, args.heartbeat_interval, args.idle_timeout)
    server = await loop.create_server(
        lambda: ImProtocol(hub), args.host, args.port
    )
    host, port = server.sockets[0].getsockname()[:2]
    log.info(
        "asyncio_im serving on %s:%d (%s loop); store: %s",
        host,
        port,
        args.loop,
        STORE_DESCRIPTION,
    )
    # Scripts and tests wait for this exact line on stdout.
    print(f"listening on {host}:{port}", flush=True)
    async with server:
        await server.serve_forever()


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=7700)
    parser.add_argument(
        "--loop", choices=("asyncio", "uvloop"), default="asyncio"
    )
    parser.add_argument(
        "--secret",
        required=True,
        help="token secret as hex (as for netim serve --secret)",
    )
    parser.add_argument(
        "--heartbeat-interval",
        type=int,
        default=DEFAULT_HEARTBEAT_INTERVAL,
        help="seconds between client pings",
    )
    parser.add_argument(
        "--idle-timeout",
        type=int,
        default=DEFAULT_IDLE_TIMEOUT,
        help="seconds of silence before a close",
    )
    parser.add_argument(
        "--log-level",
        default="INFO",
        choices=("DEBUG", "INFO", "WARNING", "ERROR"),
    )
    args = parser.parse_args(argv)
    if args.idle_timeout < 1 or args.heartbeat_interval < 1:
        parser.error("--idle-timeout and --heartbeat-interval must be >= 1")
    return args


def run(loop: str, main: Coroutine[Any, Any, None]) -> None:
    if loop == "uvloop":
        import uvloop  # only needed, and only imported, when asked for

        uvloop.run(main)
    else:
        asyncio.run(main)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        secret = bytes.fromhex(args.secret)
    except ValueError:
        sys.exit("asyncio_im: --secret must be hex")
    logging.basicConfig(
        level=args.log_level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        run(args.loop, serve(args, secret))
    except KeyboardInterrupt:
        pass  # Ctrl-C, or the runner's SIGINT: a normal way to stop


if __name__ == "__main__":
    main()
