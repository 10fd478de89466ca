"""The store ports' contract, held by every adapter.

Each test runs on the in-memory store and on the SQLite store (the
``stores`` fixture), so the durable store behaves as the one the use
case tests run on: same results, same edge cases, same exceptions.
"""

from __future__ import annotations

import pytest
from store_harness import Stores, dev, draft

from im.application import (
    History,
    ManageGroups,
    SendMessage,
    SyncBacklog,
)
from im.domain import (
    MAX_GROUP_MEMBERS,
    BacklogStart,
    ConversationId,
    Group,
    GroupFull,
    GroupId,
    NoSuchGroup,
    NotAMember,
    UserId,
)
from im.infrastructure import (
    CountingIdGenerator,
    InMemoryMessageStore,
    SQLiteGroupStore,
    SQLiteMessageStore,
)

ALICE, BOB, CAROL = UserId("alice"), UserId("bob"), UserId("carol")
CONV = ConversationId.direct(ALICE, BOB)
G1 = GroupId("g1")


def fill(stores: Stores, n: int, conversation: ConversationId = CONV) -> None:
    for i in range(n):
        appended = stores.value(
            stores.messages.append(
                draft(conversation, f"{conversation}/c{i}", message_id=i)
            )
        )
        assert appended.message.seq == i + 1


def make_group(stores: Stores, *members: str) -> Group:
    group = Group.create(
        G1, "friends", ALICE, tuple(UserId(m) for m in members), 5
    )
    return stores.value(stores.groups.create(group))


def members(stores: Stores) -> list[UserId]:
    group = stores.value(stores.groups.get(G1))
    assert group is not None
    return list(group.members)


# -- messages ----------------------------------------------------------------


def test_an_unknown_conversation_reads_empty(stores: Stores) -> None:
    m = stores.messages
    assert stores.value(m.last_seq(CONV)) == 0
    assert not stores.value(m.read_after(CONV, 0, 10)).has_more
    assert stores.value(m.read_before(CONV, 0, 10)).messages == ()
    assert stores.value(m.record_ack(dev("bob"), CONV, 5)) == 0
    assert stores.value(m.acked_seq(dev("bob"), CONV)) == 0
    assert stores.value(m.direct_conversations(ALICE)) == ()


def test_seqs_are_contiguous_per_conversation(stores: Stores) -> None:
    other = ConversationId.direct(ALICE, CAROL)
    seqs = []
    for i in range(6):
        conversation = (CONV, other)[i % 2]
        appended = stores.value(
            stores.messages.append(draft(conversation, f"c{i}", message_id=i))
        )
        seqs.append((conversation, appended.message.seq))
    assert seqs == [
        (CONV, 1), (other, 1), (CONV, 2), (other, 2), (CONV, 3), (other, 3),
    ]  # fmt: skip
    assert stores.value(stores.messages.last_seq(CONV)) == 3


def test_a_message_reads_back_as_it_was_stored(stores: Stores) -> None:
    sent = draft(CONV, "c1", message_id=2**64 - 1, body=b"\x00hi\xff")
    stored = stores.value(stores.messages.append(sent)).message
    assert stored == sent.stored_as(1)
    page = stores.value(stores.messages.read_after(CONV, 0, 10))
    assert list(page.messages) == [stored]


def test_a_resend_returns_the_original_and_stores_nothing(
    stores: Stores,
) -> None:
    first = stores.value(stores.messages.append(draft(CONV, "c1", body=b"1")))
    other = ConversationId.direct(ALICE, CAROL)
    resend = draft(other, "c1", to="carol", message_id=9, body=b"2")
    again = stores.value(stores.messages.append(resend))
    assert again.duplicate and not first.duplicate
    assert again.message == first.message
    assert stores.value(stores.messages.last_seq(other)) == 0
    # The key is the sender *user*: another user may reuse the id.
    bobs = stores.value(
        stores.messages.append(draft(CONV, "c1", sender="bob", to="alice"))
    )
    assert not bobs.duplicate and bobs.message.seq == 2


def test_direct_conversations_in_the_order_they_began(stores: Stores) -> None:
    with_carol = ConversationId.direct(ALICE, CAROL)
    m = stores.messages
    stores.value(m.append(draft(with_carol, "a", to="carol")))
    stores.value(m.append(draft(CONV, "b")))
    stores.value(m.append(draft(with_carol, "c", sender="carol", to="alice")))
    assert stores.value(m.direct_conversations(ALICE)) == (with_carol, CONV)
    assert stores.value(m.direct_conversations(BOB)) == (CONV,)
    assert stores.value(m.direct_conversations(CAROL)) == (with_carol,)


def test_who_takes_part_in_a_direct_conversation(stores: Stores) -> None:
    m = stores.messages
    assert not stores.value(m.takes_part(ALICE, CONV))  # nothing sent yet
    stores.value(m.append(draft(CONV, "a")))
    # The sender and the addressee, whoever wrote first; nobody else.
    assert stores.value(m.takes_part(ALICE, CONV))
    assert stores.value(m.takes_part(BOB, CONV))
    assert not stores.value(m.takes_part(CAROL, CONV))
    with_carol = ConversationId.direct(BOB, CAROL)
    assert not stores.value(m.takes_part(BOB, with_carol))


def test_a_group_message_is_no_direct_conversation(stores: Stores) -> None:
    group = ConversationId.for_group(G1)
    stores.value(stores.messages.append(draft(group, "c1", to=G1)))
    assert stores.value(stores.messages.direct_conversations(ALICE)) == ()


def test_acks_are_cumulative_and_clamped_to_the_end(stores: Stores) -> None:
    fill(stores, 3)
    m, bob = stores.messages, dev("bob")
    assert stores.value(m.record_ack(bob, CONV, 2)) == 2
    assert stores.value(m.record_ack(bob, CONV, 1)) == 2
    assert stores.value(m.record_ack(bob, CONV, 99)) == 3
    assert stores.value(m.acked_seq(bob, CONV)) == 3
    assert stores.value(m.acked_seq(dev("bob", "laptop"), CONV)) == 0
    fill_more = draft(CONV, "later")
    assert stores.value(m.append(fill_more)).message.seq == 4
    # The clamp did not skip seq 4.
    assert stores.value(m.acked_seq(bob, CONV)) == 3


@pytest.mark.parametrize(
    ("after", "limit", "seqs", "more"),
    [
        (0, 3, [1, 2, 3], True),
        (2, 3, [3, 4, 5], False),
        (5, 3, [], False),
        (-4, 2, [1, 2], True),
        (1, 0, [], True),
    ],
)
def test_read_after_says_whether_more_follow(
    stores: Stores, after: int, limit: int, seqs: list[int], more: bool
) -> None:
    fill(stores, 5)
    page = stores.value(stores.messages.read_after(CONV, after, limit))
    assert [m.seq for m in page.messages] == seqs
    assert page.has_more is more


@pytest.mark.parametrize(
    ("before", "limit", "floor", "seqs", "more"),
    [
        (0, 2, 0, [4, 5], True),
        (3, 2, 0, [1, 2], False),
        (0, 5, 0, [1, 2, 3, 4, 5], False),
        (0, 9, 2, [3, 4, 5], False),
        (5, 1, 2, [4], True),
        (9, 2, 0, [4, 5], True),
        (1, 3, 0, [], False),
        (4, 0, 0, [], True),
    ],
)
def test_read_before_says_whether_older_remain(
    stores: Stores,
    before: int,
    limit: int,
    floor: int,
    seqs: list[int],
    more: bool,
) -> None:
    fill(stores, 5)
    page = stores.value(
        stores.messages.read_before(CONV, before, limit, floor)
    )
    assert [m.seq for m in page.messages] == seqs
    assert page.has_more is more


def test_backlog_that_ends_exactly_at_the_limit_has_no_more(
    stores: Stores,
) -> None:
    fill(stores, 4)
    m, bob = stores.messages, dev("bob")
    stores.value(m.record_ack(bob, CONV, 1))
    page = stores.value(m.read_backlog(bob, [BacklogStart(CONV)], 3))
    assert [m.seq for m in page.messages] == [2, 3, 4]
    assert not page.has_more
    page = stores.value(m.read_backlog(bob, [BacklogStart(CONV, 2)], 1))
    assert [m.seq for m in page.messages] == [3]
    assert page.has_more


def test_backlog_walks_conversations_in_the_given_order(
    stores: Stores,
) -> None:
    a, b = ConversationId.direct(ALICE, CAROL), CONV
    empty = ConversationId.direct(BOB, CAROL)
    fill(stores, 2, a)
    fill(stores, 3, b)
    m, alice = stores.messages, dev("alice")
    stores.value(m.record_ack(alice, a, 2))
    starts = [BacklogStart(empty), BacklogStart(a), BacklogStart(b, 1)]
    page = stores.value(m.read_backlog(alice, starts, 10))
    assert [(x.conversation_id, x.seq) for x in page.messages] == [
        (b, 2), (b, 3),
    ]  # fmt: skip
    assert not page.has_more
    starts = [BacklogStart(b), BacklogStart(a)]
    stores.value(m.record_ack(alice, a, 0))  # no step back
    page = stores.value(m.read_backlog(alice, starts, 3))
    assert [x.seq for x in page.messages] == [1, 2, 3]
    assert not page.has_more
    page = stores.value(m.read_backlog(dev("bob"), [*starts], 4))
    assert [x.seq for x in page.messages] == [1, 2, 3, 1]
    assert page.has_more


# -- groups ------------------------------------------------------------------


def test_a_group_reads_back_with_members_in_joining_order(
    stores: Stores,
) -> None:
    created = make_group(stores, "dave", "bob", "dave")
    assert list(created.members) == ["alice", "dave", "bob"]
    got = stores.value(stores.groups.get(G1))
    assert got == created
    assert list(got.members.items()) == [
        ("alice", 0), ("dave", 0), ("bob", 0),
    ]  # fmt: skip
    assert stores.value(stores.groups.get(GroupId("nope"))) is None


def test_members_keep_their_floor_and_order(stores: Stores) -> None:
    make_group(stores, "bob")
    g = stores.groups
    stores.value(g.add_member(G1, CAROL, 7))
    stores.value(g.remove_member(G1, BOB))
    stores.value(g.add_member(G1, BOB, 9))
    again = stores.value(g.add_member(G1, CAROL, 12))
    assert list(again.members.items()) == [
        ("alice", 0), ("carol", 7), ("bob", 9),
    ]  # fmt: skip
    assert stores.value(g.get(G1)) == again


def test_group_refusals_are_the_domain_errors(stores: Stores) -> None:
    g = stores.groups
    with pytest.raises(NoSuchGroup):
        stores.value(g.add_member(G1, BOB, 0))
    with pytest.raises(NoSuchGroup):
        stores.value(g.remove_member(G1, BOB))
    make_group(stores)
    with pytest.raises(NotAMember):
        stores.value(g.remove_member(G1, BOB))
    assert members(stores) == ["alice"]


def test_a_group_id_is_created_once(stores: Stores) -> None:
    make_group(stores)
    with pytest.raises(ValueError, match="exists already"):
        make_group(stores, "bob")
    assert members(stores) == ["alice"]


def test_a_full_group_refuses_a_member(stores: Stores) -> None:
    others = tuple(UserId(f"u{i}") for i in range(MAX_GROUP_MEMBERS - 1))
    group = Group.create(G1, "big", ALICE, others, 0)
    stores.value(stores.groups.create(group))
    with pytest.raises(GroupFull):
        stores.value(stores.groups.add_member(G1, BOB, 0))
    # Nothing half-done: the group is as it was, and still works.
    stored = stores.value(stores.groups.get(G1))
    assert stored is not None and len(stored.members) == MAX_GROUP_MEMBERS
    stores.value(stores.groups.remove_member(G1, UserId("u0")))
    stores.value(stores.groups.add_member(G1, BOB, 3))


def test_groups_of_a_user_in_creation_order(stores: Stores) -> None:
    g = stores.groups
    for name in ("g3", "g1", "g2"):
        members = (BOB,) if name != "g1" else ()
        created = Group.create(GroupId(name), name, ALICE, members, 0)
        stores.value(g.create(created))
    assert [x.group_id for x in stores.value(g.groups_of(BOB))] == [
        "g3",
        "g2",
    ]
    assert len(stores.value(g.groups_of(ALICE))) == 3
    stores.value(g.add_member(GroupId("g1"), BOB, 4))
    stores.value(g.remove_member(GroupId("g3"), BOB))
    mine = stores.value(g.groups_of(BOB))
    assert [(x.group_id, x.members[BOB]) for x in mine] == [
        ("g1", 4), ("g2", 0),
    ]  # fmt: skip
    assert stores.value(g.groups_of(CAROL)) == ()


# -- the use cases on each store ---------------------------------------------


class _Clock:
    def now_ms(self) -> int:
        return 1_700_000_000_000


def test_the_use_cases_run_on_each_store(stores: Stores) -> None:
    """A group's life through the use cases: the joins' floors, the sync
    and the history come out the same on both stores."""
    m, g, ids = stores.messages, stores.groups, CountingIdGenerator()
    send = SendMessage(m, g, _Clock(), ids)
    manage = ManageGroups(g, m, _Clock(), ids)
    sync, history = SyncBacklog(m, g), History(m, g)
    alice, bob = dev("alice"), dev("bob")

    group = stores.value(manage.create(ALICE, "team"))
    for i in range(3):
        send.to_group(alice, f"a{i}", group.group_id, 1, b"x")
    stores.value(manage.join(BOB, group.group_id))
    outcome = stores.value(send.to_group(alice, "a3", group.group_id, 1, b""))
    assert outcome.ack.seq == 4
    stores.value(send.to_user(bob, "b0", ALICE, 1, b"hi"))

    page = stores.value(sync(bob, limit=1))
    assert [x.seq for x in page.messages] == [1]  # the direct one first
    page = stores.value(sync(bob, page.next_cursor))
    assert [x.seq for x in page.messages] == [4]  # after bob's floor
    assert not page.has_more
    past = stores.value(history(BOB, group.conversation_id))
    assert [x.seq for x in past.messages] == [4]
    with pytest.raises(NotAMember):
        stores.value(history(CAROL, group.conversation_id))


def test_durability_is_declared(stores: Stores) -> None:
    durable = stores.kind != "memory"
    for store in (stores.messages, stores.groups):
        assert getattr(type(store), "durable") is durable  # noqa: B009
    if durable:
        assert isinstance(stores.messages, SQLiteMessageStore)
        assert isinstance(stores.groups, SQLiteGroupStore)
    else:
        assert "NOT DURABLE" in (InMemoryMessageStore.__doc__ or "")
