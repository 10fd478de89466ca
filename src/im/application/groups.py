"""Use cases of groups: create, join, leave, list members."""

from __future__ import annotations

from dataclasses import dataclass

from im.domain import (
    Clock,
    DeviceAddress,
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
from im.records import fast_init

from .messaging import SendMessage, SendOutcome


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


@fast_init
@dataclass(frozen=True, slots=True)
class NewGroup:
    """A group just created, and its first message on its way.

    ``announced`` is the GROUP_EVENT "created" being stored: push it to
    ``recipients`` (every member's devices, the creator's included) when
    it completes. Two steps, not one transaction: if the event cannot be
    stored, the group stands without it, and members learn of it from
    the first message someone writes.
    """

    group: Group
    announced: Pending[SendOutcome]


class CreateGroup:
    """Create a group, then tell its members in its conversation: a
    member added by the creator would otherwise not hear of the group
    until someone wrote to it."""

    def __init__(self, manage: ManageGroups, send: SendMessage) -> None:
        self._manage = manage
        self._send = send

    def __call__(
        self,
        creator: DeviceAddress,
        name: str,
        members: tuple[UserId, ...] = (),
    ) -> Pending[NewGroup]:
        return self._manage.create(creator.user, name, members).then(
            lambda group: NewGroup(
                group, self._send.group_created(creator, group)
            )
        )
