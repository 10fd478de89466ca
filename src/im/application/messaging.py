"""Use cases of messages: send, acknowledge, sync a backlog, history."""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from im.domain import (
    FIRST_SERVER_CONTENT_TYPE,
    Appended,
    BacklogStart,
    Clock,
    ContentType,
    ConversationId,
    DeviceAddress,
    Group,
    GroupId,
    GroupStore,
    IdGenerator,
    InvalidArgument,
    Message,
    MessageDraft,
    MessagePage,
    MessageStore,
    NoSuchGroup,
    Pending,
    ServerAck,
    UserId,
)
from im.records import fast_init

from ._access import conversation_floor

# The most messages one sync or history page holds, whatever the client
# asks: 200 keeps a page of typical messages far under the protocol's
# body cap, and one store read short. The interface layer may cut a page
# further to fit MAX_BODY_SIZE.
MAX_PAGE_SIZE = 200


@fast_init
@dataclass(frozen=True, slots=True)
class SendOutcome:
    """What the interface layer does after a send.

    Reply ``ack`` to the sender, and push ``message`` (encoded once) to
    every online device of the users in ``recipients`` but the one that
    sent it: the other party (or the group's members) and the sender
    itself, whose other devices get a copy. Which devices are online is
    the interface layer's to know; the use case says whose. A resend
    (``duplicate``) gets the original ack and pushes to no one: the first
    send pushed already, and a device that missed that push gets the
    message at its next sync.
    """

    ack: ServerAck
    message: Message
    recipients: tuple[UserId, ...]
    duplicate: bool


class SendMessage:
    """Accept a message: check who may send, store it, say who to push to.

    The message is stored before anyone hears of it; the ack and the
    pushes come from the store's result, so nothing is acked or pushed
    that a restart could lose.
    """

    def __init__(
        self,
        messages: MessageStore,
        groups: GroupStore,
        clock: Clock,
        ids: IdGenerator,
    ) -> None:
        self._messages = messages
        self._groups = groups
        self._clock = clock
        self._ids = ids

    def to_user(
        self,
        sender: DeviceAddress,
        client_message_id: str,
        to_user: UserId,
        content_type: int,
        body: bytes,
    ) -> Pending[SendOutcome]:
        conversation = ConversationId.direct(sender.user, to_user)
        try:
            _check_client_content_type(content_type)
            draft = self._draft(
                sender, client_message_id, conversation, to_user,
                content_type, body,
            )  # fmt: skip
        except InvalidArgument as error:
            return Pending.failure(error)
        # The other party, and the sender for its other devices (once,
        # for a note to self).
        users: tuple[UserId, ...] = (to_user,)
        if to_user != sender.user:
            users = (to_user, sender.user)
        return self._messages.append(draft).then(
            lambda appended: _outcome(appended, users)
        )

    def to_group(
        self,
        sender: DeviceAddress,
        client_message_id: str,
        group_id: GroupId,
        content_type: int,
        body: bytes,
    ) -> Pending[SendOutcome]:
        try:
            _check_client_content_type(content_type)
        except InvalidArgument as error:
            return Pending.failure(error)

        def store(group: Group | None) -> Pending[SendOutcome]:
            if group is None:
                raise NoSuchGroup(f"no group {group_id}")
            group.require_member(sender.user)
            draft = self._draft(
                sender, client_message_id, group.conversation_id, group_id,
                content_type, body,
            )  # fmt: skip
            # Members as of the check: one who joins while the message is
            # being stored gets it at sync (its floor is below its seq).
            members = tuple(group.members)
            return self._messages.append(draft).then(
                lambda appended: _outcome(appended, members)
            )

        return self._groups.get(group_id).chain(store)

    def group_created(
        self, creator: DeviceAddress, group: Group
    ) -> Pending[SendOutcome]:
        """Tell the members of a new group, in its conversation.

        The first message of the group, in the creator's name: members
        who are online get it pushed, the others at their next login, as
        any message. Every device of every member gets it, the creator's
        own included, so that its seq 1 is not a hole in anyone's log.
        """
        draft = self._draft(
            creator,
            # Not a client's id: random, so that no client can take it.
            f"group-event-{uuid.uuid4().hex}",
            group.conversation_id,
            group.group_id,
            ContentType.GROUP_EVENT,
            group_created_event(group),
        )
        members = tuple(group.members)
        return self._messages.append(draft).then(
            lambda appended: _outcome(appended, members)
        )

    def _draft(
        self,
        sender: DeviceAddress,
        client_message_id: str,
        conversation: ConversationId,
        to: str,
        content_type: int,
        body: bytes,
    ) -> MessageDraft:
        return MessageDraft(
            message_id=self._ids.next_message_id(),
            client_message_id=client_message_id,
            conversation_id=conversation,
            sender=sender,
            to=to,
            content_type=content_type,
            body=body,
            timestamp_ms=self._clock.now_ms(),
        )


def _check_client_content_type(content_type: int) -> None:
    """Refuse what only the server may write (InvalidArgument)."""
    if content_type >= FIRST_SERVER_CONTENT_TYPE:
        raise InvalidArgument(
            f"content type {content_type:#x} is written by the server "
            f"only (from {FIRST_SERVER_CONTENT_TYPE:#x} up)"
        )


# Members named in a "created" event; the rest are counted. All 2,000
# a group may have, at 64 characters each, would not fit in a message.
EVENT_MEMBERS_NAMED = 100


def group_created_event(group: Group) -> bytes:
    """The content of a group's GROUP_EVENT "created": its name and its
    members, the creator first, so that a member who was added learns
    both from the message alone."""
    members = list(group.members)
    event: dict[str, object] = {
        "event": "created",
        "name": group.name,
        "members": members[:EVENT_MEMBERS_NAMED],
    }
    if len(members) > EVENT_MEMBERS_NAMED:
        event["more"] = len(members) - EVENT_MEMBERS_NAMED
    return json.dumps(event, ensure_ascii=False).encode()


def _outcome(appended: Appended, users: tuple[UserId, ...]) -> SendOutcome:
    message = appended.message
    recipients = () if appended.duplicate else users
    return SendOutcome(
        ServerAck.of(message), message, recipients, appended.duplicate
    )


class AcknowledgeDelivery:
    """A device holds everything of a conversation up to a seq."""

    def __init__(self, messages: MessageStore, groups: GroupStore) -> None:
        self._messages = messages
        self._groups = groups

    def __call__(
        self, device: DeviceAddress, conversation: ConversationId, seq: int
    ) -> Pending[int]:
        """Record the cumulative ack; the result is the device's cursor."""
        if seq < 0:
            return Pending.failure(InvalidArgument(f"seq {seq} < 0"))
        check = conversation_floor(
            self._messages, self._groups, device.user, conversation
        )
        return check.chain(
            lambda _floor: self._messages.record_ack(device, conversation, seq)
        )


@fast_init
@dataclass(frozen=True, slots=True)
class SyncPage:
    """One page of a device's backlog (SYNC_PAGE).

    ``messages`` go conversation by conversation, ascending seq in each.
    ``next_cursor`` is "" when ``has_more`` is false.
    """

    messages: Sequence[Message]
    has_more: bool
    next_cursor: str

    def first(self, count: int) -> SyncPage:
        """The page cut to its first ``count`` messages (to fit a body
        size): more follow, from after the last one kept."""
        if not 0 < count <= len(self.messages):
            raise ValueError(f"cannot keep {count} of {len(self.messages)}")
        if count == len(self.messages):
            return self
        return _sync_page(MessagePage(self.messages[:count], True))


class SyncBacklog:
    """Hand a device what it has not acked, in pages.

    Conversations are walked in the order of their ids; in each, from
    after the device's cursor (or the member's floor, or what the client
    says it holds, whichever is furthest). The cursor text says where the
    last page stopped ("<seq> <conversation id>"), so pages move on even
    if the device acks nothing in between. A conversation that starts
    while a device pages (and sorts before the cursor) is not lost: its
    messages are pushed live and stay in the backlog until acked.
    """

    def __init__(self, messages: MessageStore, groups: GroupStore) -> None:
        self._messages = messages
        self._groups = groups

    def __call__(
        self,
        device: DeviceAddress,
        cursor: str = "",
        received: Mapping[ConversationId, int] | None = None,
        limit: int = MAX_PAGE_SIZE,
    ) -> Pending[SyncPage]:
        try:
            resume = _parse_cursor(cursor)
            limit = _page_limit(limit)
        except InvalidArgument as error:
            return Pending.failure(error)
        held = received or {}
        user = device.user
        direct = self._messages.direct_conversations(user)
        groups = self._groups.groups_of(user)

        def read(
            mine: Sequence[ConversationId], joined: Sequence[Group]
        ) -> Pending[MessagePage]:
            floors = dict.fromkeys(mine, 0)
            for group in joined:
                floors[group.conversation_id] = group.members[user]
            starts = _starts(floors, held, resume)
            return self._messages.read_backlog(device, starts, limit)

        # Both reads are in flight already; wait for one, then the other.
        return direct.chain(
            lambda mine: groups.chain(lambda joined: read(mine, joined))
        ).then(_sync_page)


def _starts(
    floors: Mapping[ConversationId, int],
    held: Mapping[ConversationId, int],
    resume: tuple[int, ConversationId] | None,
) -> list[BacklogStart]:
    starts = []
    for conversation in sorted(floors):
        after = max(floors[conversation], held.get(conversation, 0))
        if resume is not None:
            resume_seq, resume_conversation = resume
            if conversation < resume_conversation:
                continue  # finished on an earlier page
            if conversation == resume_conversation:
                after = max(after, resume_seq)
        starts.append(BacklogStart(conversation, after))
    return starts


def _sync_page(page: MessagePage) -> SyncPage:
    if not page.has_more:
        return SyncPage(page.messages, False, "")
    last = page.messages[-1]
    return SyncPage(page.messages, True, f"{last.seq} {last.conversation_id}")


def _parse_cursor(cursor: str) -> tuple[int, ConversationId] | None:
    if not cursor:
        return None
    seq_text, _, conversation = cursor.partition(" ")
    if not seq_text.isdigit():
        raise InvalidArgument(f"bad sync cursor {cursor!r}")
    return int(seq_text), ConversationId.parse(conversation)


def _page_limit(limit: int) -> int:
    if limit < 1:
        raise InvalidArgument(f"page limit {limit} < 1")
    return min(limit, MAX_PAGE_SIZE)


@fast_init
@dataclass(frozen=True, slots=True)
class HistoryPage:
    """Messages before a seq, ascending (HISTORY_PAGE). ``has_more``:
    older ones exist; ask again with the first message's seq."""

    conversation_id: ConversationId
    messages: Sequence[Message]
    has_more: bool

    def newest(self, count: int) -> HistoryPage:
        """The page cut to its newest ``count`` messages (to fit a body
        size); the older ones left out remain to be asked for."""
        if not 0 < count <= len(self.messages):
            raise ValueError(f"cannot keep {count} of {len(self.messages)}")
        if count == len(self.messages):
            return self
        kept = self.messages[len(self.messages) - count :]
        return HistoryPage(self.conversation_id, kept, True)


class History:
    """Page back through a conversation the user may read."""

    def __init__(self, messages: MessageStore, groups: GroupStore) -> None:
        self._messages = messages
        self._groups = groups

    def __call__(
        self,
        user: UserId,
        conversation: ConversationId,
        before_seq: int = 0,
        limit: int = MAX_PAGE_SIZE,
    ) -> Pending[HistoryPage]:
        """Up to ``limit`` messages older than ``before_seq`` (0: newest)."""
        try:
            limit = _page_limit(limit)
            if before_seq < 0:
                raise InvalidArgument(f"before_seq {before_seq} < 0")
        except InvalidArgument as error:
            return Pending.failure(error)
        floor = conversation_floor(
            self._messages, self._groups, user, conversation
        )
        return floor.chain(
            lambda seq: self._messages.read_before(
                conversation, before_seq, limit, floor=seq
            )
        ).then(
            lambda page: HistoryPage(
                conversation, page.messages, page.has_more
            )
        )
