"""Use cases of groups: create, join, leave, list members."""

from __future__ import annotations

from im.domain import (
    Clock,
    DomainError,
    Group,
    GroupId,
    GroupStore,
    IdGenerator,
    MessageStore,
    NoSuchGroup,
    Pending,
    UserId,
)


class ManageGroups:
    """Groups are open: anyone who knows a group's id may join it."""

    def __init__(
        self,
        groups: GroupStore,
        messages: MessageStore,
        clock: Clock,
        ids: IdGenerator,
    ) -> None:
        self._groups = groups
        self._messages = messages
        self._clock = clock
        self._ids = ids

    def create(
        self, creator: UserId, name: str, members: tuple[UserId, ...] = ()
    ) -> Pending[Group]:
        """A new group of the creator and ``members``."""
        try:
            group = Group.create(
                self._ids.next_group_id(),
                name,
                creator,
                members,
                self._clock.now_ms(),
            )
        except DomainError as error:
            return Pending.failure(error)
        return self._groups.create(group)

    def join(self, user: UserId, group_id: GroupId) -> Pending[Group]:
        """Add ``user``; joining a group one is in changes nothing.

        The floor is read before the member is added, so that it can only
        be too low (the newcomer sees a message sent as it joined), never
        too high (a message lost to it).
        """

        def add(group: Group | None) -> Pending[Group]:
            if group is None:
                raise NoSuchGroup(f"no group {group_id}")
            if group.is_member(user):
                return Pending.of(group)
            floor = self._messages.last_seq(group.conversation_id)
            return floor.chain(
                lambda seq: self._groups.add_member(group_id, user, seq)
            )

        return self._groups.get(group_id).chain(add)

    def leave(self, user: UserId, group_id: GroupId) -> Pending[Group]:
        """Remove ``user``; NotAMember if it is not one."""
        return self._groups.remove_member(group_id, user)

    def members(
        self, user: UserId, group_id: GroupId
    ) -> Pending[tuple[UserId, ...]]:
        """The members in joining order; only a member may ask."""

        def listed(group: Group | None) -> tuple[UserId, ...]:
            if group is None:
                raise NoSuchGroup(f"no group {group_id}")
            group.require_member(user)
            return tuple(group.members)

        return self._groups.get(group_id).then(listed)
