from __future__ import annotations

from collections.abc import Sequence

from im_app_fakes import App, dev, value

from im.domain import (
    ConversationId,
    InvalidArgument,
    Message,
    NoSuchConversation,
    NotAMember,
    UserId,
)

ALICE, BOB, CAROL = UserId("alice"), UserId("bob"), UserId("carol")


def send_many(app: App, sender: str, to: str, n: int) -> ConversationId:
    for i in range(n):
        ack = value(app.send.to_user(dev(sender), f"{to}{i}", UserId(to),
                                     1, f"{i}".encode())).ack  # fmt: skip
    return ack.conversation_id


def seqs(messages: Sequence[Message]) -> list[tuple[str, int]]:
    return [(m.conversation_id.value, m.seq) for m in messages]


def test_acks_are_cumulative_and_never_move_back() -> None:
    app = App()
    conv = send_many(app, "alice", "bob", 5)
    bob = dev("bob")
    assert value(app.ack(bob, conv, 3)) == 3
    assert value(app.ack(bob, conv, 1)) == 3
    assert value(app.messages.acked_seq(bob, conv)) == 3
    # Another device of the same user has its own cursor.
    assert value(app.messages.acked_seq(dev("bob", "laptop"), conv)) == 0


def test_an_ack_past_the_end_is_clamped_to_the_end() -> None:
    app = App()
    conv = send_many(app, "alice", "bob", 2)
    assert value(app.ack(dev("bob"), conv, 99)) == 2
    value(app.send.to_user(dev("alice"), "late", BOB, 1, b"late"))
    backlog = value(app.sync(dev("bob")))
    assert [m.body for m in backlog.messages] == [b"late"]


def test_acks_need_a_conversation_the_device_is_in() -> None:
    app = App()
    conv = send_many(app, "alice", "bob", 1)
    stranger = app.ack(dev("carol"), conv, 1)
    assert isinstance(stranger.exception(), NoSuchConversation)
    negative = app.ack(dev("bob"), conv, -1)
    assert isinstance(negative.exception(), InvalidArgument)


def test_backlog_is_what_was_not_acked_in_seq_order() -> None:
    app = App()
    with_alice = send_many(app, "alice", "bob", 4)
    with_carol = send_many(app, "carol", "bob", 2)
    value(app.ack(dev("bob"), with_alice, 2))
    page = value(app.sync(dev("bob")))
    wanted = [
        (with_alice, 3),
        (with_alice, 4),
        (with_carol, 1),
        (with_carol, 2),
    ]
    expected = sorted((c.value, s) for c, s in wanted)
    assert seqs(page.messages) == expected
    assert not page.has_more and page.next_cursor == ""
    # The sender's own device has the same backlog: it never acked.
    assert len(value(app.sync(dev("alice"))).messages) == 4


def test_backlog_pages_move_on_without_acks_and_miss_nothing() -> None:
    app = App()
    conversations = [send_many(app, s, "bob", 3) for s in ("a", "c", "d")]
    got: list[tuple[str, int]] = []
    cursor, pages = "", 0
    while True:
        page = value(app.sync(dev("bob"), cursor, limit=2))
        got += seqs(page.messages)
        pages += 1
        if not page.has_more:
            break
        cursor = page.next_cursor
    expected = sorted((c.value, s) for c in conversations for s in (1, 2, 3))
    assert got == expected
    assert pages == 5


def test_received_lets_a_device_skip_what_it_holds() -> None:
    app = App()
    conv = send_many(app, "alice", "bob", 5)
    page = value(app.sync(dev("bob"), received={conv: 4}))
    assert seqs(page.messages) == [(conv.value, 5)]


def test_a_bad_cursor_or_limit_is_refused() -> None:
    app = App()
    assert isinstance(
        app.sync(dev("bob"), "nonsense").exception(), InvalidArgument
    )
    assert isinstance(
        app.sync(dev("bob"), limit=0).exception(), InvalidArgument
    )


def test_group_backlog_starts_at_the_members_join() -> None:
    app = App()
    group = value(app.manage.create(ALICE, "team"))
    gid = group.group_id
    for i in range(3):
        value(app.send.to_group(dev("alice"), f"a{i}", gid, 1, b"old"))
    value(app.manage.join(BOB, gid))
    value(app.send.to_group(dev("alice"), "new", gid, 1, b"new"))
    page = value(app.sync(dev("bob")))
    assert [(m.seq, m.body) for m in page.messages] == [(4, b"new")]
    history = value(app.history(BOB, group.conversation_id))
    assert [m.seq for m in history.messages] == [4]
    assert not history.has_more


def test_history_pages_back_in_ascending_pages() -> None:
    app = App()
    conv = send_many(app, "alice", "bob", 7)
    first = value(app.history(BOB, conv, 0, limit=3))
    assert [m.seq for m in first.messages] == [5, 6, 7]
    assert first.has_more
    second = value(app.history(BOB, conv, first.messages[0].seq, limit=3))
    assert [m.seq for m in second.messages] == [2, 3, 4]
    third = value(app.history(BOB, conv, second.messages[0].seq, limit=3))
    assert [m.seq for m in third.messages] == [1]
    assert not third.has_more


def test_history_is_for_participants_and_members_only() -> None:
    app = App()
    conv = send_many(app, "alice", "bob", 1)
    outsider = app.history(CAROL, conv)
    assert isinstance(outsider.exception(), NoSuchConversation)
    group = value(app.manage.create(ALICE, "team"))
    member_only = app.history(CAROL, group.conversation_id)
    assert isinstance(member_only.exception(), NotAMember)
