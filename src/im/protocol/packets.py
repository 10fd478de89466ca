"""The packets: one frozen dataclass per packet type, and the table that
maps type codes to classes.

Each field's annotation says both its Python type and how it travels
(``Id`` is a ``str`` of at most 64 characters, ``U64`` an ``int`` that
fits 8 bytes, and so on; see ``_schema``). Fields are written in the
order they are declared here, so that order is part of the protocol:
never reorder them within a version.

Ids of users, devices, groups and conversations are opaque strings that
the server chooses (user ids come from login tokens). Message ids, seqs
and times are integers; times are milliseconds since the Unix epoch on
the server's clock.

Message content is ``bytes``, always, so that it round-trips byte for
byte whatever it holds. ``content_type`` says what the bytes are: TEXT
content must be UTF-8 (checked on both sides: INVALID_TEXT otherwise);
other types are carried as they are, including types this version does
not know, so that clients can add kinds of content without a server
upgrade.
"""

from __future__ import annotations

import enum
import types
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, ClassVar, Final

from im.records import fast_init

from ._schema import (
    Binary,
    Boolean,
    FieldError,
    ListOf,
    OneOf,
    RecordOf,
    String,
    Unsigned,
)
from .constants import (
    MAX_CONTENT_SIZE,
    MAX_ID_LENGTH,
    MAX_LIST_ITEMS,
    MAX_TEXT_LENGTH,
    MAX_TOKEN_LENGTH,
)
from .errors import ErrorCode

__all__ = [
    "PACKETS",
    "ChatType",
    "ContentType",
    "ConversationSeq",
    "CreateGroup",
    "DeliveryAck",
    "Direction",
    "Error",
    "GroupCreated",
    "GroupJoined",
    "GroupLeft",
    "HistoryPage",
    "HistoryRequest",
    "JoinGroup",
    "Kicked",
    "LeaveGroup",
    "ListMembers",
    "Login",
    "LoginFailed",
    "LoginOk",
    "MemberList",
    "Message",
    "Packet",
    "PacketType",
    "Ping",
    "Pong",
    "Push",
    "SendToGroup",
    "SendToUser",
    "ServerAck",
    "SyncPage",
    "SyncRequest",
]


class PacketType(enum.IntEnum):
    """The packet type code in the header. The high byte is the family:
    0x00 session, 0x01 messages, 0x02 sync and history, 0x03 groups
    (0x04 is kept for customer service)."""

    LOGIN = 0x0001
    LOGIN_OK = 0x0002
    LOGIN_FAILED = 0x0003
    PING = 0x0004
    PONG = 0x0005
    KICKED = 0x0006
    ERROR = 0x0007

    SEND_TO_USER = 0x0101
    SEND_TO_GROUP = 0x0102
    SERVER_ACK = 0x0103
    PUSH = 0x0104
    DELIVERY_ACK = 0x0105

    SYNC_REQUEST = 0x0201
    SYNC_PAGE = 0x0202
    HISTORY_REQUEST = 0x0203
    HISTORY_PAGE = 0x0204

    CREATE_GROUP = 0x0301
    GROUP_CREATED = 0x0302
    JOIN_GROUP = 0x0303
    GROUP_JOINED = 0x0304
    LEAVE_GROUP = 0x0305
    GROUP_LEFT = 0x0306
    LIST_MEMBERS = 0x0307
    MEMBER_LIST = 0x0308


class Direction(enum.Enum):
    """Which way a packet travels. Every packet goes one way only."""

    TO_SERVER = "client to server"
    TO_CLIENT = "server to client"


class ContentType(enum.IntEnum):
    """What a message's content bytes are. Numbers not listed here are
    carried as opaque bytes."""

    #: UTF-8 text, checked on both sides.
    TEXT = 1
    #: Opaque bytes for the application (a file reference, a card...).
    BINARY = 2
    #: Written by the server only, into a group's conversation: the
    #: group was created (JSON: ``{"event": "created", "name": ...,
    #: "members": [...]}``, sent in the creator's name).
    GROUP_EVENT = 0xFF01


class ChatType(enum.IntEnum):
    """Whom a message was sent to: ``to`` is a user id or a group id."""

    DIRECT = 1
    GROUP = 2


# -- how fields travel (see _schema) ------------------------------------------

U16 = Annotated[int, Unsigned(16)]
U32 = Annotated[int, Unsigned(32)]
U64 = Annotated[int, Unsigned(64)]
Flag = Annotated[bool, Boolean()]
Id = Annotated[str, String(MAX_ID_LENGTH)]
Ids = Annotated[tuple[str, ...], ListOf(String(MAX_ID_LENGTH), MAX_LIST_ITEMS)]
Token = Annotated[str, String(MAX_TOKEN_LENGTH)]
Text = Annotated[str, String(MAX_TEXT_LENGTH)]
Content = Annotated[bytes, Binary(MAX_CONTENT_SIZE)]
Chat = Annotated[ChatType, OneOf(ChatType)]


def _check_text(content_type: int, content: bytes) -> None:
    """TEXT content must be UTF-8; other content types are opaque."""
    if content_type != ContentType.TEXT or content.isascii():
        return  # opaque, or ASCII: UTF-8 without decoding a str from it
    try:
        content.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise FieldError(
            ErrorCode.INVALID_TEXT,
            f"TEXT content is not UTF-8 ({exc.reason} at byte {exc.start})",
            ("content",),
        ) from None


# -- records inside packets ---------------------------------------------------


@fast_init
@dataclass(frozen=True, slots=True)
class Message:
    """A stored message, as pushed, synced and paged.

    ``seq`` is its place in its conversation: 1, 2, 3... with no gaps.
    ``to`` is the recipient user (DIRECT) or the group (GROUP).
    """

    message_id: U64
    conversation_id: Id
    seq: U64
    chat_type: Chat
    from_user: Id
    from_device: Id
    to: Id
    timestamp: U64
    content_type: U16
    content: Content

    def _validate(self) -> None:
        _check_text(self.content_type, self.content)


@fast_init
@dataclass(frozen=True, slots=True)
class ConversationSeq:
    """A position in a conversation: everything up to ``seq``."""

    conversation_id: Id
    seq: U64


Messages = Annotated[
    tuple[Message, ...], ListOf(RecordOf(Message), MAX_LIST_ITEMS)
]
Positions = Annotated[
    tuple[ConversationSeq, ...],
    ListOf(RecordOf(ConversationSeq), MAX_LIST_ITEMS),
]


class Packet:
    """What every packet has: its type code and its direction."""

    __slots__ = ()

    TYPE: ClassVar[PacketType]
    DIRECTION: ClassVar[Direction]


_TO_SERVER: Final = Direction.TO_SERVER
_TO_CLIENT: Final = Direction.TO_CLIENT


# -- session ------------------------------------------------------------------


@fast_init
@dataclass(frozen=True, slots=True)
class Login(Packet):
    """Open a session. Replies: LOGIN_OK, or LOGIN_FAILED then close."""

    TYPE: ClassVar = PacketType.LOGIN
    DIRECTION: ClassVar = _TO_SERVER

    token: Token
    device_id: Id
    client_version: Id


@fast_init
@dataclass(frozen=True, slots=True)
class LoginOk(Packet):
    """The session is open. The client pings every
    ``heartbeat_interval`` seconds; the server closes a connection silent
    for ``idle_timeout`` seconds. ``server_time`` lets the client
    estimate its clock's offset."""

    TYPE: ClassVar = PacketType.LOGIN_OK
    DIRECTION: ClassVar = _TO_CLIENT

    user_id: Id
    device_id: Id
    session_id: Id
    heartbeat_interval: U32
    idle_timeout: U32
    server_time: U64


@fast_init
@dataclass(frozen=True, slots=True)
class LoginFailed(Packet):
    """The login was refused (BAD_TOKEN, TOKEN_EXPIRED...)."""

    TYPE: ClassVar = PacketType.LOGIN_FAILED
    DIRECTION: ClassVar = _TO_CLIENT

    code: U16
    reason: Text


@fast_init
@dataclass(frozen=True, slots=True)
class Ping(Packet):
    """The client's heartbeat. Reply: PONG."""

    TYPE: ClassVar = PacketType.PING
    DIRECTION: ClassVar = _TO_SERVER


@fast_init
@dataclass(frozen=True, slots=True)
class Pong(Packet):
    """The answer to PING, echoing its request id (so a client may time
    the round trip)."""

    TYPE: ClassVar = PacketType.PONG
    DIRECTION: ClassVar = _TO_CLIENT


@fast_init
@dataclass(frozen=True, slots=True)
class Kicked(Packet):
    """The server ends this session (REPLACED by a newer login of the
    same device, SLOW_CONSUMER, SERVER_SHUTDOWN...) and closes."""

    TYPE: ClassVar = PacketType.KICKED
    DIRECTION: ClassVar = _TO_CLIENT

    code: U16
    reason: Text


@fast_init
@dataclass(frozen=True, slots=True)
class Error(Packet):
    """Something the client sent was refused. ``code`` is an
    ``ErrorCode``; ``will_close`` says the server closes the connection
    after this packet."""

    TYPE: ClassVar = PacketType.ERROR
    DIRECTION: ClassVar = _TO_CLIENT

    code: U16
    text: Text
    will_close: Flag


# -- messages -----------------------------------------------------------------


@fast_init
@dataclass(frozen=True, slots=True)
class SendToUser(Packet):
    """Send a direct message. ``client_message_id`` is the client's own
    id for it: sending it again gets the first SERVER_ACK back, and the
    message is stored once. Reply: SERVER_ACK or ERROR."""

    TYPE: ClassVar = PacketType.SEND_TO_USER
    DIRECTION: ClassVar = _TO_SERVER

    client_message_id: Id
    to_user: Id
    content_type: U16
    content: Content

    def _validate(self) -> None:
        _check_text(self.content_type, self.content)


@fast_init
@dataclass(frozen=True, slots=True)
class SendToGroup(Packet):
    """Send a message to a group the sender is a member of. As
    SEND_TO_USER otherwise."""

    TYPE: ClassVar = PacketType.SEND_TO_GROUP
    DIRECTION: ClassVar = _TO_SERVER

    client_message_id: Id
    group_id: Id
    content_type: U16
    content: Content

    def _validate(self) -> None:
        _check_text(self.content_type, self.content)


@fast_init
@dataclass(frozen=True, slots=True)
class ServerAck(Packet):
    """The message is stored: here are its id and place."""

    TYPE: ClassVar = PacketType.SERVER_ACK
    DIRECTION: ClassVar = _TO_CLIENT

    client_message_id: Id
    message_id: U64
    conversation_id: Id
    seq: U64
    timestamp: U64


@fast_init
@dataclass(frozen=True, slots=True)
class Push(Packet):
    """A message for this device, live. The device answers with
    DELIVERY_ACK when it has it. Encode it once, send the same bytes to
    every recipient: nothing in it is per recipient."""

    TYPE: ClassVar = PacketType.PUSH
    DIRECTION: ClassVar = _TO_CLIENT

    message: Annotated[Message, RecordOf(Message)]


@fast_init
@dataclass(frozen=True, slots=True)
class DeliveryAck(Packet):
    """This device has every message of the conversation up to ``seq``
    (cumulative). No reply."""

    TYPE: ClassVar = PacketType.DELIVERY_ACK
    DIRECTION: ClassVar = _TO_SERVER

    conversation_id: Id
    seq: U64


# -- sync and history ---------------------------------------------------------


@fast_init
@dataclass(frozen=True, slots=True)
class SyncRequest(Packet):
    """Ask for what this device missed, a page at a time.

    ``cursor`` is "" for the first page and the previous page's
    ``next_cursor`` after that. ``received`` may name conversations the
    device already holds up to some seq (more than it acked, say); the
    server starts those after that seq. ``limit`` is the most messages
    wanted in the page. Reply: SYNC_PAGE.
    """

    TYPE: ClassVar = PacketType.SYNC_REQUEST
    DIRECTION: ClassVar = _TO_SERVER

    cursor: Text
    received: Positions
    limit: U16


@fast_init
@dataclass(frozen=True, slots=True)
class SyncPage(Packet):
    """Missed messages, in seq order within each conversation.
    ``has_more`` says another SYNC_REQUEST with ``next_cursor`` is
    worth sending."""

    TYPE: ClassVar = PacketType.SYNC_PAGE
    DIRECTION: ClassVar = _TO_CLIENT

    messages: Messages
    has_more: Flag
    next_cursor: Text


@fast_init
@dataclass(frozen=True, slots=True)
class HistoryRequest(Packet):
    """Ask for up to ``limit`` messages of a conversation older than
    ``before_seq`` (0: the newest). Reply: HISTORY_PAGE."""

    TYPE: ClassVar = PacketType.HISTORY_REQUEST
    DIRECTION: ClassVar = _TO_SERVER

    conversation_id: Id
    before_seq: U64
    limit: U16


@fast_init
@dataclass(frozen=True, slots=True)
class HistoryPage(Packet):
    """Older messages in ascending seq order; ``has_more`` says there are
    older ones still (ask again with the first one's seq)."""

    TYPE: ClassVar = PacketType.HISTORY_PAGE
    DIRECTION: ClassVar = _TO_CLIENT

    conversation_id: Id
    messages: Messages
    has_more: Flag


# -- groups -------------------------------------------------------------------


@fast_init
@dataclass(frozen=True, slots=True)
class CreateGroup(Packet):
    """Create a group with the sender and ``members`` in it.
    Reply: GROUP_CREATED."""

    TYPE: ClassVar = PacketType.CREATE_GROUP
    DIRECTION: ClassVar = _TO_SERVER

    name: Text
    members: Ids


@fast_init
@dataclass(frozen=True, slots=True)
class GroupCreated(Packet):
    """The new group, and the conversation its messages go to."""

    TYPE: ClassVar = PacketType.GROUP_CREATED
    DIRECTION: ClassVar = _TO_CLIENT

    group_id: Id
    conversation_id: Id
    name: Text


@fast_init
@dataclass(frozen=True, slots=True)
class JoinGroup(Packet):
    """Become a member. Reply: GROUP_JOINED."""

    TYPE: ClassVar = PacketType.JOIN_GROUP
    DIRECTION: ClassVar = _TO_SERVER

    group_id: Id


@fast_init
@dataclass(frozen=True, slots=True)
class GroupJoined(Packet):
    """The sender is a member of the group."""

    TYPE: ClassVar = PacketType.GROUP_JOINED
    DIRECTION: ClassVar = _TO_CLIENT

    group_id: Id
    conversation_id: Id


@fast_init
@dataclass(frozen=True, slots=True)
class LeaveGroup(Packet):
    """Stop being a member. Reply: GROUP_LEFT."""

    TYPE: ClassVar = PacketType.LEAVE_GROUP
    DIRECTION: ClassVar = _TO_SERVER

    group_id: Id


@fast_init
@dataclass(frozen=True, slots=True)
class GroupLeft(Packet):
    """The sender is no longer a member of the group."""

    TYPE: ClassVar = PacketType.GROUP_LEFT
    DIRECTION: ClassVar = _TO_CLIENT

    group_id: Id


@fast_init
@dataclass(frozen=True, slots=True)
class ListMembers(Packet):
    """Ask who is in a group. Reply: MEMBER_LIST."""

    TYPE: ClassVar = PacketType.LIST_MEMBERS
    DIRECTION: ClassVar = _TO_SERVER

    group_id: Id


@fast_init
@dataclass(frozen=True, slots=True)
class MemberList(Packet):
    """The members of a group (user ids)."""

    TYPE: ClassVar = PacketType.MEMBER_LIST
    DIRECTION: ClassVar = _TO_CLIENT

    group_id: Id
    members: Ids


# -- the table ----------------------------------------------------------------


def _table(*classes: type[Packet]) -> Mapping[int, type[Packet]]:
    table = {int(cls.TYPE): cls for cls in classes}
    # Our bug, caught at import: a type without a class, or two classes
    # claiming one type.
    if set(table) != set(PacketType) or len(table) != len(classes):
        raise AssertionError("PacketType and the packet classes disagree")
    return types.MappingProxyType(table)


#: Packet type code -> packet class, for every type of this version.
PACKETS: Final = _table(
    Login,
    LoginOk,
    LoginFailed,
    Ping,
    Pong,
    Kicked,
    Error,
    SendToUser,
    SendToGroup,
    ServerAck,
    Push,
    DeliveryAck,
    SyncRequest,
    SyncPage,
    HistoryRequest,
    HistoryPage,
    CreateGroup,
    GroupCreated,
    JoinGroup,
    GroupJoined,
    LeaveGroup,
    GroupLeft,
    ListMembers,
    MemberList,
)
