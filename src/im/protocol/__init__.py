"""netim's wire protocol, sans I/O: bytes in, packets out, and back.

The server, the client library and the load generator all speak through
this package, and it touches no socket, clock or logger, so it is tested
alone. docs/protocol.md is the specification; this is its code.

A frame on a TCP stream::

    +----------------+--------------------------------+-----------------+
    | length (4, BE) | header (10)                    | body            |
    +----------------+--------------------------------+-----------------+
                     |<------------- frame body ---------------------->|

The length prefix belongs to framing (the reactor's codec on the
server, ``FrameReader`` and ``add_length_prefix`` elsewhere). Everything
after it is the frame body, which ``encode`` writes and ``decode`` reads:
a header (magic, version, serializer, packet type, request id; see
``header``) and the packet's fields, serialized with msgpack or JSON.

Using it::

    data = encode(Login(token, "phone", "netim/0.1"), request_id=1)
    header, packet = decode(data, Direction.TO_SERVER)

Errors say whose fault they are: a ``ProtocolError`` is the peer's and
carries the reply to send (``encode_error``) and whether to close; an
``EncodeError`` is ours.
"""

from .codec import (
    decode,
    encode,
    encode_error,
    encode_frame,
    encode_trusted,
    pack_msgpack,
)
from .constants import (
    HEADER_SIZE,
    JSON,
    LENGTH_PREFIX_SIZE,
    MAGIC,
    MAX_BODY_SIZE,
    MAX_CONTENT_SIZE,
    MAX_FRAME_SIZE,
    MAX_ID_LENGTH,
    MAX_LIST_ITEMS,
    MAX_TEXT_LENGTH,
    MAX_TOKEN_LENGTH,
    MSGPACK,
    VERSION,
    Serializer,
)
from .errors import (
    BadHeaderError,
    BadMagicError,
    BodyTooLargeError,
    ContentTooLargeError,
    EncodeError,
    ErrorCode,
    FatalProtocolError,
    FrameTooLongError,
    InvalidTextError,
    MalformedPacketError,
    PacketError,
    ProtocolError,
    UnexpectedPacketError,
    UnknownPacketTypeError,
    UnsupportedSerializerError,
    UnsupportedVersionError,
)
from .framing import FrameReader, add_length_prefix, frame_too_long
from .header import Header, decode_header
from .packets import (
    PACKETS,
    ChatType,
    ContentType,
    ConversationSeq,
    CreateGroup,
    DeliveryAck,
    Direction,
    Error,
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
    PacketType,
    Ping,
    Pong,
    Push,
    SendToGroup,
    SendToUser,
    ServerAck,
    SyncPage,
    SyncRequest,
)

__all__ = [
    "HEADER_SIZE",
    "JSON",
    "LENGTH_PREFIX_SIZE",
    "MAGIC",
    "MAX_BODY_SIZE",
    "MAX_CONTENT_SIZE",
    "MAX_FRAME_SIZE",
    "MAX_ID_LENGTH",
    "MAX_LIST_ITEMS",
    "MAX_TEXT_LENGTH",
    "MAX_TOKEN_LENGTH",
    "MSGPACK",
    "PACKETS",
    "VERSION",
    "BadHeaderError",
    "BadMagicError",
    "BodyTooLargeError",
    "ChatType",
    "ContentTooLargeError",
    "ContentType",
    "ConversationSeq",
    "CreateGroup",
    "DeliveryAck",
    "Direction",
    "EncodeError",
    "Error",
    "ErrorCode",
    "FatalProtocolError",
    "FrameReader",
    "FrameTooLongError",
    "GroupCreated",
    "GroupJoined",
    "GroupLeft",
    "Header",
    "HistoryPage",
    "HistoryRequest",
    "InvalidTextError",
    "JoinGroup",
    "Kicked",
    "LeaveGroup",
    "ListMembers",
    "Login",
    "LoginFailed",
    "LoginOk",
    "MalformedPacketError",
    "MemberList",
    "Message",
    "Packet",
    "PacketError",
    "PacketType",
    "Ping",
    "Pong",
    "ProtocolError",
    "Push",
    "SendToGroup",
    "SendToUser",
    "Serializer",
    "ServerAck",
    "SyncPage",
    "SyncRequest",
    "UnexpectedPacketError",
    "UnknownPacketTypeError",
    "UnsupportedSerializerError",
    "UnsupportedVersionError",
    "add_length_prefix",
    "decode",
    "decode_header",
    "encode",
    "encode_error",
    "encode_frame",
    "encode_trusted",
    "frame_too_long",
    "pack_msgpack",
]
