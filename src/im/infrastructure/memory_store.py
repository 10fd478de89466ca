"""In-memory stores. NOT DURABLE: everything is gone when the process is.

For tests and benchmarks only. Whatever chooses these stores must say so
where it does (the server's startup line, a benchmark's report), since
a server on them acks messages that a restart loses.

They keep the ports' rules exactly (contiguous seq, idempotent append,
cumulative clamped acks), so that tests of the use cases on them hold
for the durable store too. Every result is complete on return; the
stores are single-threaded, as the loop that calls them is.
"""

from __future__ import annotations

from collections.abc import Sequence

from im.domain import (
    Appended,
    BacklogStart,
    ConversationId,
    DeviceAddress,
    DomainError,
    Group,
    GroupId,
    GroupStore,
    Message,
    MessageDraft,
    MessagePage,
    MessageStore,
    NoSuchGroup,
    Pending,
    Timeline,
    UserId,
)


class InMemoryMessageStore(MessageStore):
    """Message logs and cursors in dicts. NOT DURABLE."""

    durable = False

    def __init__(self) -> None:
        self._timelines: dict[ConversationId, Timeline] = {}
        # sender user -> client message id -> the message first stored.
        # Kept forever here; a durable store may bound it to a window.
        # One dict per user rather than one keyed by the pair: a dict
        # rehashes everything when it grows, and one of millions of
        # entries stalled the loop for hundreds of milliseconds each
        # time (docs/perf/007-sustained.md); a user's own stays small.
        self._by_client_id: dict[UserId, dict[str, Message]] = {}
        # user -> their direct conversations, as an ordered set.
        self._direct: dict[UserId, dict[ConversationId, None]] = {}
        self._cursors: dict[tuple[DeviceAddress, ConversationId], int] = {}

    def append(self, draft: MessageDraft) -> Pending[Appended]:
        sender = draft.sender.user
        sent_by = self._by_client_id.get(sender)
        if sent_by is None:
            sent_by = self._by_client_id[sender] = {}
        original = sent_by.get(draft.client_message_id)
        if original is not None:
            return Pending.of(Appended(original, duplicate=True))
        conversation = draft.conversation_id
        timeline = self._timelines.get(conversation)
        if timeline is None:
            timeline = self._timelines[conversation] = Timeline(conversation)
            # A direct conversation begins with its first message: from
            # then on it is one of both people's, and every later
            # message finds them listed already.
            if conversation.group is None:
                for user in (sender, UserId(draft.to)):
                    self._direct.setdefault(user, {})[conversation] = None
        message = timeline.append(draft)
        sent_by[draft.client_message_id] = message
        return Pending.of(Appended(message, duplicate=False))

    def last_seq(self, conversation: ConversationId) -> Pending[int]:
        return Pending.of(self._last_seq(conversation))

    def read_after(
        self, conversation: ConversationId, after_seq: int, limit: int
    ) -> Pending[MessagePage]:
        timeline = self._timelines.get(conversation)
        if timeline is None:
            return Pending.of(MessagePage((), False))
        messages = timeline.after(after_seq, limit)
        last = messages[-1].seq if messages else after_seq
        return Pending.of(MessagePage(messages, last < timeline.last_seq))

    def read_before(
        self,
        conversation: ConversationId,
        before_seq: int,
        limit: int,
        floor: int = 0,
    ) -> Pending[MessagePage]:
        timeline = self._timelines.get(conversation)
        if timeline is None:
            return Pending.of(MessagePage((), False))
        if before_seq == 0:
            before_seq = timeline.last_seq + 1
        messages = timeline.before(before_seq, limit, floor)
        first = messages[0].seq if messages else before_seq
        return Pending.of(MessagePage(messages, first - 1 > floor))

    def direct_conversations(
        self, user: UserId
    ) -> Pending[Sequence[ConversationId]]:
        return Pending.of(tuple(self._direct.get(user, ())))

    def takes_part(
        self, user: UserId, conversation: ConversationId
    ) -> Pending[bool]:
        return Pending.of(conversation in self._direct.get(user, ()))

    def record_ack(
        self,
        device: DeviceAddress,
        conversation: ConversationId,
        seq: int,
    ) -> Pending[int]:
        key = (device, conversation)
        seq = min(seq, self._last_seq(conversation))
        cursor = max(self._cursors.get(key, 0), seq)
        self._cursors[key] = cursor
        return Pending.of(cursor)

    def acked_seq(
        self, device: DeviceAddress, conversation: ConversationId
    ) -> Pending[int]:
        return Pending.of(self._cursors.get((device, conversation), 0))

    def read_backlog(
        self,
        device: DeviceAddress,
        starts: Sequence[BacklogStart],
        limit: int,
    ) -> Pending[MessagePage]:
        out: list[Message] = []
        for start in starts:
            timeline = self._timelines.get(start.conversation_id)
            if timeline is None:
                continue
            cursor = self._cursors.get((device, start.conversation_id), 0)
            after = max(cursor, start.after_seq)
            if after >= timeline.last_seq:
                continue  # nothing unread here
            if len(out) == limit:
                return Pending.of(MessagePage(out, True))
            taken = timeline.after(after, limit - len(out))
            out.extend(taken)
            if taken[-1].seq < timeline.last_seq:
                return Pending.of(MessagePage(out, True))
        return Pending.of(MessagePage(out, False))

    def _last_seq(self, conversation: ConversationId) -> int:
        timeline = self._timelines.get(conversation)
        return 0 if timeline is None else timeline.last_seq


class InMemoryGroupStore(GroupStore):
    """Groups in a dict. NOT DURABLE."""

    durable = False

    def __init__(self) -> None:
        self._groups: dict[GroupId, Group] = {}

    def create(self, group: Group) -> Pending[Group]:
        if group.group_id in self._groups:
            # An id generator handing out an id twice is our bug.
            return Pending.failure(
                ValueError(f"group {group.group_id} exists already")
            )
        self._groups[group.group_id] = group
        return Pending.of(group)

    def get(self, group_id: GroupId) -> Pending[Group | None]:
        return Pending.of(self._groups.get(group_id))

    def add_member(
        self, group_id: GroupId, user: UserId, floor: int
    ) -> Pending[Group]:
        try:
            group = self._require(group_id).joined(user, floor)
        except DomainError as error:
            return Pending.failure(error)
        self._groups[group_id] = group
        return Pending.of(group)

    def remove_member(self, group_id: GroupId, user: UserId) -> Pending[Group]:
        try:
            group = self._require(group_id).left(user)
        except DomainError as error:
            return Pending.failure(error)
        self._groups[group_id] = group
        return Pending.of(group)

    def groups_of(self, user: UserId) -> Pending[Sequence[Group]]:
        # A scan: fine for tests and benchmarks; a durable store indexes
        # membership by user.
        groups = tuple(g for g in self._groups.values() if g.is_member(user))
        return Pending.of(groups)

    def _require(self, group_id: GroupId) -> Group:
        group = self._groups.get(group_id)
        if group is None:
            raise NoSuchGroup(f"no group {group_id}")
        return group
