"""A scripted netim server for the client tests.

A real loopback socket and plain threads (one accepting, one reading
per connection), speaking the protocol through ``im.protocol`` only, so
the client is tested against the wire format and not against our own
server's code (the end-to-end tests do that).

Behind it, a tiny in-memory IM: users, direct and group conversations
with contiguous seqs, per-device cumulative acks, paged sync (and, like
the real server, the backlog sent unasked right after LOGIN_OK),
history, and groups; enough for tests to read like conversations. A test can
replace the answer to any packet type (``on``), act on its own
(``peer.send``, ``peer.close``) and wait for what the client sent
(``wait_packet``). Every wait has a deadline; none is a sleep.
"""

from __future__ import annotations

import itertools
import json
import select
import socket
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from im.protocol import (
    MSGPACK,
    ChatType,
    ContentType,
    CreateGroup,
    DeliveryAck,
    Direction,
    Error,
    ErrorCode,
    FrameReader,
    GroupCreated,
    GroupJoined,
    GroupLeft,
    Header,
    HistoryPage,
    HistoryRequest,
    JoinGroup,
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
    decode,
    encode_frame,
)

DEADLINE = 5.0

Handler = Callable[["Peer", Header, Any], None]


def token_for(user: str) -> str:
    """The fake server's idea of a token: ``token:<user>``."""
    return f"token:{user}"


def direct_conversation(a: str, b: str) -> str:
    return "d:" + ":".join(sorted({a, b}))


class Peer:
    """One accepted connection, read by its own thread."""

    def __init__(self, server: FakeServer, sock: socket.socket) -> None:
        self.server = server
        self.sock = sock
        self.user: str | None = None
        self.device: str | None = None
        # Pushes go out in the serializer of the session's LOGIN.
        self.serializer = MSGPACK
        self._send_lock = threading.Lock()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def send(
        self,
        packet: Packet,
        request_id: int = 0,
        serializer: Serializer | None = None,
    ) -> None:
        frame = encode_frame(packet, request_id, serializer or self.serializer)
        self.send_raw(frame)

    def send_raw(self, data: bytes) -> None:
        with self._send_lock:
            try:
                self.sock.sendall(data)
            except OSError:
                pass  # the client is gone; the reader thread notices

    def close(self) -> None:
        """Hang up; the reader thread sees the end and closes the socket."""
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _run(self) -> None:
        reader = FrameReader()
        try:
            while data := self.sock.recv(65536):
                for body in reader.feed(data):
                    try:
                        header, packet = decode(body, Direction.TO_SERVER)
                    except ProtocolError as error:
                        self.server.note_violation(self, error)
                        continue
                    self.server.handle(self, header, packet)
        except OSError:
            pass
        finally:
            self.sock.close()
            self.server.note_gone(self)


class FakeServer:
    """See the module docstring. Use as a context manager."""

    def __init__(
        self,
        users: Iterable[str] = ("alice", "bob", "carol"),
        *,
        heartbeat_interval: int = 30,
        idle_timeout: int = 90,
        backlog_on_login: bool = True,
        backlog_page_size: int = 100,
    ) -> None:
        self.users = set(users)
        self.backlog_on_login = backlog_on_login
        self.backlog_page_size = backlog_page_size
        self.heartbeat_interval = heartbeat_interval
        self.idle_timeout = idle_timeout
        self.lock = threading.RLock()
        self.changed = threading.Condition(self.lock)
        self.received: list[tuple[Peer, Header, Packet]] = []
        self.violations: list[ProtocolError] = []
        self.peers: list[Peer] = []
        self.gone: list[Peer] = []
        self.conversations: dict[str, list[Message]] = {}
        self.members: dict[str, set[str]] = {}
        self.group_names: dict[str, str] = {}
        self.acks: dict[tuple[str, str, str], int] = {}
        self.overrides: dict[type, Handler] = {}
        self._acked_sends: dict[tuple[str, str], ServerAck] = {}
        self._ids = itertools.count(1)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.host, self.port = self.listener.getsockname()[:2]
        self._wake_reader, self._wake_writer = socket.socketpair()
        self._accepter = threading.Thread(target=self._accept, daemon=True)
        self._accepter.start()

    def __enter__(self) -> FakeServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop listening and hang up on everyone; safe to call twice."""
        if self.listener.fileno() == -1:
            return
        self._wake_writer.send(b"x")
        self._accepter.join(DEADLINE)
        with self.lock:
            peers = list(self.peers)
        for peer in peers:
            peer.close()
            peer.thread.join(DEADLINE)
        self.listener.close()
        self._wake_reader.close()
        self._wake_writer.close()

    def _accept(self) -> None:
        while True:
            ready, _, _ = select.select(
                [self.listener, self._wake_reader], [], []
            )
            if self._wake_reader in ready:
                return
            sock, _ = self.listener.accept()
            peer = Peer(self, sock)
            with self.lock:
                self.peers.append(peer)
            peer.thread.start()

    # -- scripting ------------------------------------------------------------

    def on(self, kind: type, handler: Handler) -> None:
        """Answer packets of ``kind`` with ``handler`` from now on."""
        with self.lock:
            self.overrides[kind] = handler

    def default(self, kind: type) -> None:
        """Back to the built-in answer for ``kind``."""
        with self.lock:
            self.overrides.pop(kind, None)

    def wait_for(self, predicate: Callable[[], Any], what: str) -> Any:
        with self.changed:
            result = self.changed.wait_for(predicate, DEADLINE)
        assert result, f"gave up waiting for {what}"
        return result

    def wait_packet(
        self,
        kind: type,
        where: Callable[[Any], bool] = lambda packet: True,
    ) -> tuple[Peer, Header, Any]:
        """The first packet of ``kind`` received that satisfies
        ``where``, waiting for it if need be."""

        def find() -> tuple[Peer, Header, Any] | None:
            for entry in self.received:
                if type(entry[2]) is kind and where(entry[2]):
                    return entry
            return None

        found: tuple[Peer, Header, Any] = self.wait_for(find, kind.__name__)
        return found

    def packets(self, kind: type) -> list[Any]:
        with self.lock:
            return [p for _, _, p in self.received if type(p) is kind]

    def peer_of(self, user: str) -> Peer:
        """The (latest) connection logged in as ``user``."""

        def find() -> Peer | None:
            for peer in reversed(self.peers):
                if peer.user == user and peer not in self.gone:
                    return peer
            return None

        found: Peer = self.wait_for(find, f"a connection of {user}")
        return found

    def wait_gone(self, peer: Peer) -> None:
        self.wait_for(lambda: peer in self.gone, "the connection to close")

    def post(
        self, from_user: str, to_user: str, text: str, device: str = "web"
    ) -> Message:
        """Store a direct message as if ``from_user`` had sent it from
        ``device``, pushing it to ``to_user``'s connections."""
        with self.lock:
            conversation = direct_conversation(from_user, to_user)
            self.members.setdefault(conversation, {from_user, to_user})
            message = self._store(
                conversation, ChatType.DIRECT, from_user, device, to_user,
                1, text.encode(),
            )  # fmt: skip
            self._push(message, to_user, exclude=None)
            return message

    # -- the protocol ---------------------------------------------------------

    def note_violation(self, peer: Peer, error: ProtocolError) -> None:
        with self.changed:
            self.violations.append(error)
            self.changed.notify_all()

    def note_gone(self, peer: Peer) -> None:
        with self.changed:
            self.gone.append(peer)
            self.changed.notify_all()

    def handle(self, peer: Peer, header: Header, packet: Packet) -> None:
        with self.changed:
            self.received.append((peer, header, packet))
            self.changed.notify_all()
            override = self.overrides.get(type(packet))
            if override is not None:
                override(peer, header, packet)
                return
            if peer.user is None and type(packet) not in (Login, Ping):
                error = Error(ErrorCode.NOT_LOGGED_IN, "log in first", False)
                self.reply(peer, header, error)
                return
            answer = getattr(self, "_on_" + type(packet).__name__)
            answer(peer, header, packet)

    def reply(self, peer: Peer, header: Header, packet: Packet) -> None:
        """Answer a request: its id, its serializer."""
        peer.send(packet, header.request_id, Serializer(header.serializer))

    def error(
        self, peer: Peer, header: Header, code: ErrorCode, text: str
    ) -> None:
        self.reply(peer, header, Error(code, text, False))

    def _on_Login(self, peer: Peer, header: Header, packet: Login) -> None:
        user = packet.token.removeprefix("token:")
        if not packet.token.startswith("token:") or user not in self.users:
            code = ErrorCode.BAD_TOKEN
            if packet.token == "expired":
                code = ErrorCode.TOKEN_EXPIRED
            self.reply(peer, header, LoginFailed(code, "not a token of ours"))
            peer.close()
            return
        peer.user, peer.device = user, packet.device_id
        peer.serializer = Serializer(header.serializer)
        ok = LoginOk(
            user,
            packet.device_id,
            f"session-{next(self._ids)}",
            self.heartbeat_interval,
            self.idle_timeout,
            int(time.time() * 1000),
        )
        self.reply(peer, header, ok)
        if self.backlog_on_login:
            # As the real server does: the backlog unasked, page after
            # page with request id 0, before any live PUSH.
            cursor = ""
            while True:
                page = self.backlog_page(
                    peer, cursor, {}, self.backlog_page_size
                )
                peer.send(page, 0, peer.serializer)
                if not page.has_more:
                    break
                cursor = page.next_cursor

    def _on_Ping(self, peer: Peer, header: Header, packet: Ping) -> None:
        self.reply(peer, header, Pong())

    def _on_SendToUser(
        self, peer: Peer, header: Header, packet: SendToUser
    ) -> None:
        if packet.to_user not in self.users:
            self.error(peer, header, ErrorCode.NO_SUCH_USER, "no such user")
            return
        self.reply(peer, header, self.store_send(peer, packet))

    def _on_SendToGroup(
        self, peer: Peer, header: Header, packet: SendToGroup
    ) -> None:
        conversation = "g:" + packet.group_id
        members = self.members.get(conversation)
        if packet.group_id not in self.group_names or members is None:
            self.error(peer, header, ErrorCode.NO_SUCH_GROUP, "no such group")
            return
        if peer.user not in members:
            self.error(peer, header, ErrorCode.NOT_A_MEMBER, "not a member")
            return
        self.reply(peer, header, self.store_send(peer, packet))

    def store_send(
        self, peer: Peer, packet: SendToUser | SendToGroup
    ) -> ServerAck:
        """Store and push a (checked) send; its SERVER_ACK, the first
        one again for a resend. Tests call it to store without replying."""
        assert peer.user is not None and peer.device is not None
        if isinstance(packet, SendToUser):
            chat_type, to = ChatType.DIRECT, packet.to_user
            conversation = direct_conversation(peer.user, to)
            self.members.setdefault(conversation, {peer.user, to})
        else:
            chat_type, to = ChatType.GROUP, packet.group_id
            conversation = "g:" + to
        recipients = sorted(self.members[conversation] - {peer.user})
        key = (peer.user, packet.client_message_id)
        ack = self._acked_sends.get(key)
        if ack is None:  # a resend gets the first ack, stores nothing
            message = self._store(
                conversation, chat_type, peer.user, peer.device, to,
                packet.content_type, packet.content,
            )  # fmt: skip
            ack = ServerAck(
                packet.client_message_id,
                message.message_id,
                conversation,
                message.seq,
                message.timestamp,
            )
            self._acked_sends[key] = ack
            for user in recipients:
                self._push(message, user, exclude=None)
            self._push(message, peer.user, exclude=peer)
        return ack

    def _store(
        self,
        conversation: str,
        chat_type: ChatType,
        from_user: str,
        from_device: str,
        to: str,
        content_type: int,
        content: bytes,
    ) -> Message:
        log = self.conversations.setdefault(conversation, [])
        message = Message(
            next(self._ids), conversation, len(log) + 1, chat_type,
            from_user, from_device, to, int(time.time() * 1000),
            content_type, content,
        )  # fmt: skip
        log.append(message)
        return message

    def _push(self, message: Message, user: str, exclude: Peer | None) -> None:
        for peer in self.peers:
            if peer.user == user and peer not in (exclude, *self.gone):
                peer.send(Push(message))

    def _on_DeliveryAck(
        self, peer: Peer, header: Header, packet: DeliveryAck
    ) -> None:
        assert peer.user is not None and peer.device is not None
        key = (peer.user, peer.device, packet.conversation_id)
        self.acks[key] = max(self.acks.get(key, 0), packet.seq)

    def _on_SyncRequest(
        self, peer: Peer, header: Header, packet: SyncRequest
    ) -> None:
        held = {r.conversation_id: r.seq for r in packet.received}
        page = self.backlog_page(peer, packet.cursor, held, packet.limit)
        self.reply(peer, header, page)

    def backlog_page(
        self, peer: Peer, cursor: str, held: dict[str, int], limit: int
    ) -> SyncPage:
        """The page of ``peer``'s backlog that starts at ``cursor``."""
        assert peer.user is not None and peer.device is not None
        # The cursor says where the last page stopped ("<seq> <conv>"),
        # so pages move on whatever the device acked in between.
        seq_text, _, resume = cursor.partition(" ")
        backlog = []
        for conversation in sorted(self.conversations):
            if peer.user not in self.members.get(conversation, ()):
                continue
            if resume and conversation < resume:
                continue
            after = max(
                self.acks.get((peer.user, peer.device, conversation), 0),
                held.get(conversation, 0),
                int(seq_text) if conversation == resume else 0,
            )
            backlog += [
                m for m in self.conversations[conversation] if m.seq > after
            ]
        page = backlog[:limit]
        has_more = len(backlog) > len(page)
        last = page[-1] if page else None
        next_cursor = (
            f"{last.seq} {last.conversation_id}" if has_more and last else ""
        )
        return SyncPage(tuple(page), has_more, next_cursor)

    def _on_HistoryRequest(
        self, peer: Peer, header: Header, packet: HistoryRequest
    ) -> None:
        conversation = packet.conversation_id
        if peer.user not in self.members.get(conversation, ()):
            self.error(
                peer, header, ErrorCode.NO_SUCH_CONVERSATION, conversation
            )
            return
        log = self.conversations.get(conversation, [])
        older = [
            m
            for m in log
            if packet.before_seq == 0 or m.seq < packet.before_seq
        ]
        page = older[-packet.limit :]
        has_more = len(older) > len(page)
        self.reply(
            peer, header, HistoryPage(conversation, tuple(page), has_more)
        )

    def _on_CreateGroup(
        self, peer: Peer, header: Header, packet: CreateGroup
    ) -> None:
        assert peer.user is not None
        unknown = [u for u in packet.members if u not in self.users]
        if unknown:
            self.error(peer, header, ErrorCode.NO_SUCH_USER, unknown[0])
            return
        group_id = f"grp{next(self._ids)}"
        self.group_names[group_id] = packet.name
        members = [peer.user, *(m for m in packet.members if m != peer.user)]
        self.members["g:" + group_id] = set(members)
        created = GroupCreated(group_id, "g:" + group_id, packet.name)
        self.reply(peer, header, created)
        # As the real server: the group's first message tells everyone.
        assert peer.device is not None
        event = {"event": "created", "name": packet.name, "members": members}
        told = self._store(
            "g:" + group_id, ChatType.GROUP, peer.user, peer.device,
            group_id, ContentType.GROUP_EVENT, json.dumps(event).encode(),
        )  # fmt: skip
        for member in members:
            self._push(told, member, None)

    def _group(self, peer: Peer, header: Header, group_id: str) -> set[str]:
        members = self.members.get("g:" + group_id)
        if members is None:
            self.error(peer, header, ErrorCode.NO_SUCH_GROUP, group_id)
            raise LookupError(group_id)
        return members

    def _on_JoinGroup(
        self, peer: Peer, header: Header, packet: JoinGroup
    ) -> None:
        try:
            members = self._group(peer, header, packet.group_id)
        except LookupError:
            return
        assert peer.user is not None
        members.add(peer.user)
        joined = GroupJoined(packet.group_id, "g:" + packet.group_id)
        self.reply(peer, header, joined)

    def _on_LeaveGroup(
        self, peer: Peer, header: Header, packet: LeaveGroup
    ) -> None:
        try:
            members = self._group(peer, header, packet.group_id)
        except LookupError:
            return
        members.discard(peer.user or "")
        self.reply(peer, header, GroupLeft(packet.group_id))

    def _on_ListMembers(
        self, peer: Peer, header: Header, packet: ListMembers
    ) -> None:
        try:
            members = self._group(peer, header, packet.group_id)
        except LookupError:
            return
        listed = MemberList(packet.group_id, tuple(sorted(members)))
        self.reply(peer, header, listed)
