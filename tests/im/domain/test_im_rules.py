from __future__ import annotations

import pytest

from im.domain import (
    MAX_GROUP_MEMBERS,
    ConversationId,
    DeviceAddress,
    DeviceId,
    Group,
    GroupFull,
    GroupId,
    InvalidArgument,
    MessageDraft,
    NotAMember,
    Timeline,
    UserId,
)

ALICE, BOB, CAROL = UserId("alice"), UserId("bob"), UserId("carol")
CONV = ConversationId.direct(ALICE, BOB)


def draft(n: int, conversation: ConversationId = CONV) -> MessageDraft:
    return MessageDraft(
        message_id=100 + n,
        client_message_id=f"c{n}",
        conversation_id=conversation,
        sender=DeviceAddress(ALICE, DeviceId("phone")),
        to=BOB,
        content_type=1,
        body=f"m{n}".encode(),
        timestamp_ms=n,
    )


def test_timeline_assigns_contiguous_seqs_from_one() -> None:
    timeline = Timeline(CONV)
    seqs = [timeline.append(draft(n)).seq for n in range(5)]
    assert seqs == [1, 2, 3, 4, 5]
    assert timeline.last_seq == 5


def test_timeline_refuses_another_conversations_draft() -> None:
    other = ConversationId.direct(ALICE, CAROL)
    with pytest.raises(ValueError):
        Timeline(CONV).append(draft(1, other))


def test_timeline_reads_by_seq() -> None:
    timeline = Timeline(CONV)
    for n in range(10):
        timeline.append(draft(n))
    assert [m.seq for m in timeline.after(3, 4)] == [4, 5, 6, 7]
    assert [m.seq for m in timeline.before(8, 3)] == [5, 6, 7]
    assert [m.seq for m in timeline.before(4, 10)] == [1, 2, 3]
    assert [m.seq for m in timeline.before(8, 10, floor=5)] == [6, 7]
    assert timeline.before(1, 10) == []


def test_a_draft_needs_a_client_message_id() -> None:
    with pytest.raises(InvalidArgument):
        MessageDraft(1, "", CONV, DeviceAddress(ALICE, DeviceId("d")), BOB,
                     1, b"", 0)  # fmt: skip


def test_group_create_includes_the_creator_once() -> None:
    group = Group.create(GroupId("1"), "g", ALICE, (BOB, ALICE, BOB), 0)
    assert list(group.members) == [ALICE, BOB]
    assert group.conversation_id == ConversationId.for_group(GroupId("1"))


def test_join_records_the_floor_and_is_idempotent() -> None:
    group = Group.create(GroupId("1"), "g", ALICE, (), 0).joined(BOB, 7)
    assert group.require_member(BOB) == 7
    assert group.joined(BOB, 9) is group


def test_only_members_pass_and_leave() -> None:
    group = Group.create(GroupId("1"), "g", ALICE, (BOB,), 0)
    with pytest.raises(NotAMember):
        group.require_member(CAROL)
    with pytest.raises(NotAMember):
        group.left(CAROL)
    after = group.left(BOB)
    assert not after.is_member(BOB)
    assert group.is_member(BOB)  # groups are values: the old one stands


def test_group_size_is_capped() -> None:
    many = tuple(UserId(f"u{i}") for i in range(MAX_GROUP_MEMBERS - 1))
    full = Group.create(GroupId("1"), "g", ALICE, many, 0)
    assert len(full.members) == MAX_GROUP_MEMBERS
    with pytest.raises(GroupFull):
        full.joined(CAROL, 0)
    with pytest.raises(GroupFull):
        Group.create(GroupId("2"), "g", ALICE, (*many, CAROL), 0)
