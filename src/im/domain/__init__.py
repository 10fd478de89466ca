"""The IM domain: identities, messages, groups, their rules, and ports.

Standard library only: no sockets, threads, clocks or storage here.
What the core needs from outside (stores, the clock, ids, who is online)
is declared in ``ports``, and adapters in ``im.infrastructure`` (or the
tests) provide it. Store results are ``Pending`` values so that a store
may answer later from another thread; see ``pending``.
"""

from .errors import (
    DomainError,
    GroupFull,
    InvalidArgument,
    NoSuchConversation,
    NoSuchGroup,
    NotAMember,
)
from .group import MAX_GROUP_MEMBERS, Group
from .ids import (
    ChatType,
    ConversationId,
    DeviceAddress,
    DeviceId,
    GroupId,
    UserId,
)
from .message import (
    FIRST_SERVER_CONTENT_TYPE,
    ContentType,
    Message,
    MessageDraft,
    ServerAck,
    Timeline,
)
from .pending import Pending, PendingStateError
from .ports import (
    Appended,
    BacklogStart,
    Clock,
    GroupStore,
    IdGenerator,
    MessagePage,
    MessageStore,
)

__all__ = [
    "FIRST_SERVER_CONTENT_TYPE",
    "MAX_GROUP_MEMBERS",
    "Appended",
    "BacklogStart",
    "ChatType",
    "Clock",
    "ContentType",
    "ConversationId",
    "DeviceAddress",
    "DeviceId",
    "DomainError",
    "Group",
    "GroupFull",
    "GroupId",
    "GroupStore",
    "IdGenerator",
    "InvalidArgument",
    "Message",
    "MessageDraft",
    "MessagePage",
    "MessageStore",
    "NoSuchConversation",
    "NoSuchGroup",
    "NotAMember",
    "Pending",
    "PendingStateError",
    "ServerAck",
    "Timeline",
    "UserId",
]
