"""The in-memory store keeps the port's contract at the edges."""

from __future__ import annotations

import pytest
from im_app_fakes import dev, value

from im.domain import (
    BacklogStart,
    ConversationId,
    MessageDraft,
    UserId,
)
from im.infrastructure import InMemoryMessageStore

ALICE, BOB = UserId("alice"), UserId("bob")
CONV = ConversationId.direct(ALICE, BOB)


def filled(n: int) -> InMemoryMessageStore:
    store = InMemoryMessageStore()
    for i in range(n):
        draft = MessageDraft(i, f"c{i}", CONV, dev("alice"), BOB, 1, b"", 0)
        assert value(store.append(draft)).message.seq == i + 1
    return store


def test_an_unknown_conversation_reads_empty() -> None:
    store = InMemoryMessageStore()
    assert value(store.last_seq(CONV)) == 0
    assert not value(store.read_after(CONV, 0, 10)).has_more
    assert value(store.read_before(CONV, 0, 10)).messages == ()
    assert value(store.record_ack(dev("bob"), CONV, 5)) == 0


@pytest.mark.parametrize(
    ("after", "limit", "seqs", "more"),
    [(0, 3, [1, 2, 3], True), (2, 3, [3, 4, 5], False), (5, 3, [], False)],
)
def test_read_after_says_whether_more_follow(
    after: int, limit: int, seqs: list[int], more: bool
) -> None:
    page = value(filled(5).read_after(CONV, after, limit))
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
    ],
)
def test_read_before_says_whether_older_remain(
    before: int, limit: int, floor: int, seqs: list[int], more: bool
) -> None:
    page = value(filled(5).read_before(CONV, before, limit, floor))
    assert [m.seq for m in page.messages] == seqs
    assert page.has_more is more


def test_backlog_that_ends_exactly_at_the_limit_has_no_more() -> None:
    store = filled(4)
    bob = dev("bob")
    value(store.record_ack(bob, CONV, 1))
    page = value(store.read_backlog(bob, [BacklogStart(CONV)], 3))
    assert [m.seq for m in page.messages] == [2, 3, 4]
    assert not page.has_more
    page = value(store.read_backlog(bob, [BacklogStart(CONV, 2)], 1))
    assert [m.seq for m in page.messages] == [3]
    assert page.has_more


def test_the_store_says_it_is_not_durable() -> None:
    assert InMemoryMessageStore.durable is False
    assert "NOT DURABLE" in (InMemoryMessageStore.__doc__ or "")
