"""The ports: what the IM core needs from the world, as abstract types.

Stores return ``Pending`` (see ``pending``) so that an adapter may do
the work on another thread and complete the result on the loop later;
the in-memory adapter completes at once. A store method must:

- complete its Pending on the loop thread (never from its own worker),
  exactly once, with the value or with the exception;
- apply each call atomically and in the order the calls were made, per
  conversation (one writer per conversation is the simple way), so that
  seq assignment and cursors never interleave half-done.

``Clock`` and ``IdGenerator`` answer at once: they live in memory on
the loop. Who is online is not the domain's business: a use case names
the users a message is for, and the interface layer finds their
devices.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from im.records import fast_init

from .group import Group
from .ids import ConversationId, DeviceAddress, GroupId, UserId
from .message import Message, MessageDraft
from .pending import Pending


@fast_init
@dataclass(frozen=True, slots=True)
class Appended:
    """The outcome of ``MessageStore.append``.

    ``duplicate`` is true when the (sender, client message id) was seen
    before: ``message`` is then the original, and nothing was stored.
    """

    message: Message
    duplicate: bool


@fast_init
@dataclass(frozen=True, slots=True)
class MessagePage:
    """Messages of one conversation in ascending seq, and whether the
    read stopped at ``limit`` with more to come (in the read's
    direction)."""

    messages: Sequence[Message]
    has_more: bool


@fast_init
@dataclass(frozen=True, slots=True)
class BacklogStart:
    """Where a backlog read begins in one conversation: after the larger
    of the device's acked seq and ``after_seq``."""

    conversation_id: ConversationId
    after_seq: int = 0


class MessageStore(abc.ABC):
    """Conversations' logs, and each device's delivery cursors."""

    @abc.abstractmethod
    def append(self, draft: MessageDraft) -> Pending[Appended]:
        """Store ``draft`` as its conversation's next seq, atomically.

        Idempotent by ``draft.dedup_key``: a key seen before stores
        nothing and returns the original message with ``duplicate``.
        A durable store completes only once the message is durable: the
        sender is acked from this result.
        """

    @abc.abstractmethod
    def last_seq(self, conversation: ConversationId) -> Pending[int]:
        """The conversation's highest seq; 0 if it has no message."""

    @abc.abstractmethod
    def read_after(
        self, conversation: ConversationId, after_seq: int, limit: int
    ) -> Pending[MessagePage]:
        """Up to ``limit`` messages with seq > ``after_seq``, ascending."""

    @abc.abstractmethod
    def read_before(
        self,
        conversation: ConversationId,
        before_seq: int,
        limit: int,
        floor: int = 0,
    ) -> Pending[MessagePage]:
        """The newest ``limit`` messages with floor < seq < ``before_seq``,
        ascending; ``before_seq`` 0 means from the newest. ``has_more``
        says older ones (above ``floor``) remain."""

    @abc.abstractmethod
    def direct_conversations(
        self, user: UserId
    ) -> Pending[Sequence[ConversationId]]:
        """The direct conversations that ``user`` takes part in (those
        with at least one message)."""

    @abc.abstractmethod
    def takes_part(
        self, user: UserId, conversation: ConversationId
    ) -> Pending[bool]:
        """Whether ``user`` takes part in the direct conversation
        ``conversation``: its sender or addressee (the same user, for
        notes to self). False for a conversation with no message yet,
        and for a group's.

        Asked by every delivery ack and every history read of a direct
        conversation, so it must not cost more for a user with a
        thousand conversations than for one with a single one."""

    @abc.abstractmethod
    def record_ack(
        self,
        device: DeviceAddress,
        conversation: ConversationId,
        seq: int,
    ) -> Pending[int]:
        """Move the device's cursor to ``seq`` if that is further.

        Cumulative: the device holds every message up to ``seq``. A seq
        past the conversation's end is clamped to the end (acking what
        does not exist yet must not skip it later). Returns the cursor.
        """

    @abc.abstractmethod
    def acked_seq(
        self, device: DeviceAddress, conversation: ConversationId
    ) -> Pending[int]:
        """The device's cursor in the conversation; 0 if it never acked."""

    @abc.abstractmethod
    def read_backlog(
        self,
        device: DeviceAddress,
        starts: Sequence[BacklogStart],
        limit: int,
    ) -> Pending[MessagePage]:
        """What the device has not acked, conversation by conversation.

        Walks ``starts`` in the given order; in each conversation reads
        ascending from after max(device's cursor, ``after_seq``), until
        ``limit`` messages in all. ``has_more``: some were left unread.
        One call, so a threaded store pays one round trip per page.
        """


class GroupStore(abc.ABC):
    """Groups and their members. Each change is one atomic step."""

    @abc.abstractmethod
    def create(self, group: Group) -> Pending[Group]:
        """Store a new group (its id must be fresh)."""

    @abc.abstractmethod
    def get(self, group_id: GroupId) -> Pending[Group | None]:
        """The group, or None if there is none with that id."""

    @abc.abstractmethod
    def add_member(
        self, group_id: GroupId, user: UserId, floor: int
    ) -> Pending[Group]:
        """Apply ``Group.joined`` atomically; fails with NoSuchGroup."""

    @abc.abstractmethod
    def remove_member(self, group_id: GroupId, user: UserId) -> Pending[Group]:
        """Apply ``Group.left`` atomically; NoSuchGroup, NotAMember."""

    @abc.abstractmethod
    def groups_of(self, user: UserId) -> Pending[Sequence[Group]]:
        """The groups that ``user`` is a member of."""


class Clock(Protocol):
    def now_ms(self) -> int:
        """Wall-clock time in ms since the Unix epoch (message stamps)."""
        ...


class IdGenerator(Protocol):
    def next_message_id(self) -> int:
        """A fresh message id, unique across the server, fits a u64."""
        ...

    def next_group_id(self) -> GroupId:
        """A fresh group id of at most 62 characters (62 + "g:" = 64)."""
        ...
