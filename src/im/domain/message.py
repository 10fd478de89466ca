"""Messages, and the rules that make a conversation's log trustworthy.

Two rules carry the delivery guarantee, and every store must keep both:

**Seq is contiguous per conversation.** The n-th message stored in a
conversation has seq n: 1, 2, 3, with no gap and no reuse. A device that
has everything up to seq k knows exactly what it lacks, so one number per
conversation (its cumulative ack) is a complete delivery cursor, and a
hole can only mean "not yet fetched", never "lost". ``Timeline`` checks
the rule in memory; a durable store keeps it with one writer per
conversation and ``UNIQUE(conversation, seq)``.

**A resent client message id maps to the original.** A client that saw
no SERVER_ACK resends with the same ``client_message_id``; the store
answers with the message it already holds, whatever the resend's body,
and stores nothing. The key is (sender *user*, client message id), not
the device: ids are the client's UUIDs, and a user id is what the
server can trust (it comes from the token).
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass

from im.records import fast_init

from .errors import InvalidArgument
from .ids import ChatType, ConversationId, DeviceAddress, UserId


class ContentType(enum.IntEnum):
    """The content types of protocol v1. Others pass through unchecked,
    except those from ``FIRST_SERVER_CONTENT_TYPE`` up: only the server
    writes those, so a client cannot pass its own words off as the
    server's."""

    TEXT = 1
    BINARY = 2
    #: A change to a group, told in its conversation (JSON, see
    #: ``im.application.messaging.group_created_event``).
    GROUP_EVENT = 0xFF01


FIRST_SERVER_CONTENT_TYPE = 0xFF00


@fast_init
@dataclass(frozen=True, slots=True)
class MessageDraft:
    """A message that the server accepted but has not stored yet.

    Everything but the seq, which only the store may assign.
    """

    message_id: int
    client_message_id: str
    conversation_id: ConversationId
    sender: DeviceAddress
    # The user (DIRECT) or group (GROUP) that the sender addressed.
    to: str
    content_type: int
    body: bytes
    timestamp_ms: int

    def __post_init__(self) -> None:
        if not self.client_message_id:
            raise InvalidArgument("client_message_id is empty")

    @property
    def dedup_key(self) -> tuple[UserId, str]:
        return (self.sender.user, self.client_message_id)

    def stored_as(self, seq: int) -> Message:
        return Message(
            message_id=self.message_id,
            client_message_id=self.client_message_id,
            conversation_id=self.conversation_id,
            seq=seq,
            sender=self.sender,
            to=self.to,
            content_type=self.content_type,
            body=self.body,
            timestamp_ms=self.timestamp_ms,
        )


@fast_init
@dataclass(frozen=True, slots=True)
class Message:
    """A stored message: immutable, with its place in its conversation."""

    message_id: int
    client_message_id: str
    conversation_id: ConversationId
    seq: int
    sender: DeviceAddress
    to: str
    content_type: int
    body: bytes
    # Server time when the message was accepted, ms since the epoch.
    timestamp_ms: int

    @property
    def chat_type(self) -> ChatType:
        return self.conversation_id.chat_type


@fast_init
@dataclass(frozen=True, slots=True)
class ServerAck:
    """What the sender is told once its message is stored (SERVER_ACK)."""

    client_message_id: str
    message_id: int
    conversation_id: ConversationId
    seq: int
    timestamp_ms: int

    @classmethod
    def of(cls, message: Message) -> ServerAck:
        return cls(
            message.client_message_id,
            message.message_id,
            message.conversation_id,
            message.seq,
            message.timestamp_ms,
        )


class Timeline:
    """One conversation's log in memory, holding the contiguity rule.

    ``messages[i]`` has seq ``i + 1``, so reads by seq are slices.
    """

    __slots__ = ("conversation_id", "messages")

    def __init__(self, conversation_id: ConversationId) -> None:
        self.conversation_id = conversation_id
        self.messages: list[Message] = []

    @property
    def last_seq(self) -> int:
        return len(self.messages)

    def append(self, draft: MessageDraft) -> Message:
        """Store ``draft`` as the next seq and return the message."""
        if draft.conversation_id != self.conversation_id:
            raise ValueError("draft belongs to another conversation")
        message = draft.stored_as(self.last_seq + 1)
        self.messages.append(message)
        return message

    def after(self, seq: int, limit: int) -> Sequence[Message]:
        """Up to ``limit`` messages with seq > ``seq``, ascending."""
        start = max(seq, 0)
        return self.messages[start : start + limit]

    def before(self, seq: int, limit: int, floor: int = 0) -> list[Message]:
        """Up to ``limit`` messages with floor < seq' < ``seq``, ascending.

        The newest such messages, so that paging walks back in time.
        """
        end = min(seq - 1, self.last_seq)
        start = max(floor, end - limit, 0)
        return self.messages[start:end] if end > start else []
