"""Groups: who belongs, and since when.

A member is recorded with the seq its group's conversation had reached
when it joined (its *floor*). Sync and history start after the floor, so
a newcomer neither receives nor reads what was said before it came; a
member that leaves and joins again gets a new floor. Recording a floor
one message too low only shows a newcomer one message more; recording it
too high would lose messages, so callers read the conversation's last
seq *before* adding the member.

``Group`` is immutable: the store applies ``joined``/``left`` inside its
own atomic step, so two joins in flight cannot overwrite each other.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from .errors import GroupFull, NotAMember
from .ids import ConversationId, GroupId, UserId

# The group size cap the server starts with: the protocol's list limit
# (MAX_LIST_ITEMS), so that MEMBER_LIST always fits one packet. A
# bigger group needs paged member lists and cheaper fan-out first.
MAX_GROUP_MEMBERS = 2000


@dataclass(frozen=True, slots=True)
class Group:
    group_id: GroupId
    name: str
    created_at_ms: int
    # user -> floor seq, in joining order (dicts keep insertion order).
    members: Mapping[UserId, int] = field(
        default_factory=lambda: MappingProxyType({})
    )

    @classmethod
    def create(
        cls,
        group_id: GroupId,
        name: str,
        creator: UserId,
        members: tuple[UserId, ...],
        created_at_ms: int,
    ) -> Group:
        """A new group of ``creator`` and ``members``, duplicates dropped."""
        everyone = dict.fromkeys((creator, *members), 0)
        if len(everyone) > MAX_GROUP_MEMBERS:
            raise GroupFull(
                f"{len(everyone)} members; at most {MAX_GROUP_MEMBERS}"
            )
        return cls(group_id, name, created_at_ms, MappingProxyType(everyone))

    @property
    def conversation_id(self) -> ConversationId:
        return ConversationId.for_group(self.group_id)

    def is_member(self, user: UserId) -> bool:
        return user in self.members

    def require_member(self, user: UserId) -> int:
        """The member's floor; NotAMember if ``user`` is not one."""
        try:
            return self.members[user]
        except KeyError:
            raise NotAMember(
                f"{user} is not a member of group {self.group_id}"
            ) from None

    def joined(self, user: UserId, floor: int) -> Group:
        """This group with ``user`` in it; unchanged if already a member."""
        if user in self.members:
            return self
        if len(self.members) >= MAX_GROUP_MEMBERS:
            raise GroupFull(f"group {self.group_id} is full")
        members = {**self.members, user: floor}
        return self._with(members)

    def left(self, user: UserId) -> Group:
        self.require_member(user)
        members = {u: f for u, f in self.members.items() if u != user}
        return self._with(members)

    def _with(self, members: dict[UserId, int]) -> Group:
        return Group(
            self.group_id,
            self.name,
            self.created_at_ms,
            MappingProxyType(members),
        )
