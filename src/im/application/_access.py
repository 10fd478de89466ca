"""Who may touch a conversation, and from which seq on."""

from __future__ import annotations

from im.domain import (
    ConversationId,
    Group,
    GroupStore,
    MessageStore,
    NoSuchConversation,
    Pending,
    UserId,
)


def conversation_floor(
    messages: MessageStore,
    groups: GroupStore,
    user: UserId,
    conversation: ConversationId,
) -> Pending[int]:
    """The seq after which ``user`` may see ``conversation``.

    0 for a direct conversation the user takes part in; the member's
    floor for a group. NoSuchConversation or NotAMember otherwise.
    """
    group_id = conversation.group
    if group_id is None:

        def direct(takes_part: bool) -> int:
            if not takes_part:
                raise NoSuchConversation(f"no conversation {conversation}")
            return 0

        return messages.takes_part(user, conversation).then(direct)

    def member(group: Group | None) -> int:
        if group is None:
            raise NoSuchConversation(f"no conversation {conversation}")
        return group.require_member(user)

    return groups.get(group_id).then(member)
