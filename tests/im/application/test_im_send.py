from __future__ import annotations

import json

import pytest
from im_app_fakes import App, DeferredMessageStore, dev, value

from im.application.messaging import EVENT_MEMBERS_NAMED
from im.domain import (
    MAX_GROUP_MEMBERS,
    ContentType,
    ConversationId,
    GroupId,
    InvalidArgument,
    NoSuchGroup,
    NotAMember,
    UserId,
)

ALICE, BOB, CAROL = UserId("alice"), UserId("bob"), UserId("carol")


def test_seq_is_contiguous_per_conversation() -> None:
    app = App()
    a = dev("alice")
    to_bob = [
        value(app.send.to_user(a, f"b{i}", BOB, 1, b"x")) for i in range(3)
    ]
    to_carol = [
        value(app.send.to_user(a, f"c{i}", CAROL, 1, b"x")) for i in range(2)
    ]
    assert [o.ack.seq for o in to_bob] == [1, 2, 3]
    assert [o.ack.seq for o in to_carol] == [1, 2]
    # Both directions of a pair share one conversation and one counter.
    reply = value(app.send.to_user(dev("bob"), "r", ALICE, 1, b"y"))
    assert reply.ack.conversation_id == to_bob[0].ack.conversation_id
    assert reply.ack.seq == 4
    message_ids = {o.ack.message_id for o in [*to_bob, *to_carol, reply]}
    assert len(message_ids) == 6


def test_ack_carries_what_the_server_assigned() -> None:
    app = App()
    app.clock.now = 1234
    outcome = value(app.send.to_user(dev("alice"), "c1", BOB, 1, b"hi"))
    ack = outcome.ack
    assert ack.client_message_id == "c1"
    assert ack.conversation_id == ConversationId.direct(ALICE, BOB)
    assert (ack.seq, ack.timestamp_ms) == (1, 1234)
    assert ack.message_id == outcome.message.message_id
    assert outcome.message.body == b"hi"
    assert outcome.message.sender == dev("alice")


def test_a_resent_client_message_id_gets_the_original_ack() -> None:
    app = App()
    first = value(app.send.to_user(dev("alice"), "c1", BOB, 1, b"hi"))
    app.clock.now += 5000
    again = value(app.send.to_user(dev("alice", "laptop"), "c1", BOB, 1, b"?"))
    assert again.ack == first.ack
    assert again.message == first.message
    assert again.duplicate and not first.duplicate
    assert again.recipients == ()  # the first send pushed already
    history = value(app.history(ALICE, first.ack.conversation_id))
    assert [m.body for m in history.messages] == [b"hi"]


def test_the_same_client_id_from_another_user_is_another_message() -> None:
    app = App()
    one = value(app.send.to_user(dev("alice"), "c1", BOB, 1, b"a"))
    two = value(app.send.to_user(dev("bob"), "c1", ALICE, 1, b"b"))
    assert not two.duplicate
    assert (one.ack.seq, two.ack.seq) == (1, 2)


def test_recipients_are_the_peer_and_the_sender_for_its_other_devices():
    app = App()
    outcome = value(app.send.to_user(dev("alice"), "c1", BOB, 1, b"x"))
    assert outcome.recipients == (BOB, ALICE)
    assert outcome.message.sender == dev("alice")  # the device to skip


def test_a_note_to_self_names_the_sender_once() -> None:
    app = App()
    outcome = value(app.send.to_user(dev("alice"), "c1", ALICE, 1, b"x"))
    assert outcome.recipients == (ALICE,)


def test_only_members_may_send_to_a_group() -> None:
    app = App()
    group = value(app.manage.create(ALICE, "team", (BOB,)))
    carol = app.send.to_group(dev("carol"), "c1", group.group_id, 1, b"x")
    assert isinstance(carol.exception(), NotAMember)
    nowhere = app.send.to_group(dev("alice"), "c1", GroupId("nope"), 1, b"x")
    assert isinstance(nowhere.exception(), NoSuchGroup)
    ok = value(app.send.to_group(dev("bob"), "c1", group.group_id, 1, b"x"))
    assert ok.ack.seq == 1
    assert ok.ack.conversation_id == group.conversation_id


def test_group_message_goes_to_every_member() -> None:
    app = App()
    group = value(app.manage.create(ALICE, "team", (BOB, CAROL)))
    outcome = value(
        app.send.to_group(dev("alice"), "c1", group.group_id, 2, b"\x00")
    )
    assert set(outcome.recipients) == {ALICE, BOB, CAROL}
    assert outcome.message.to == group.group_id


def test_an_empty_client_message_id_is_refused() -> None:
    app = App()
    sent = app.send.to_user(dev("alice"), "", BOB, 1, b"x")
    assert isinstance(sent.exception(), InvalidArgument)


def test_nothing_is_acked_before_the_store_completes() -> None:
    store = DeferredMessageStore()
    app = App(messages=store)
    first = app.send.to_user(dev("alice"), "c1", BOB, 1, b"1")
    second = app.send.to_user(dev("alice"), "c2", BOB, 1, b"2")
    assert not first.done and not second.done
    store.run(1)  # the store may finish them in any order ...
    assert second.result().ack.seq == 1
    store.run(0)
    assert first.result().ack.seq == 2  # ... and seq follows its order


@pytest.mark.parametrize("body", ["héllo 👋".encode(), b"\xff\x00\xfe", b""])
def test_bodies_are_kept_byte_for_byte(body: bytes) -> None:
    app = App()
    outcome = value(app.send.to_user(dev("alice"), "c", BOB, 2, body))
    page = value(app.history(BOB, outcome.ack.conversation_id))
    assert page.messages[0].body == body


# -- what the server writes itself -------------------------------------------


def test_a_new_group_is_told_in_its_conversation_to_all_its_members() -> None:
    app = App()
    group = value(app.manage.create(ALICE, "team", (BOB, CAROL)))
    told = value(app.send.group_created(dev("alice"), group))
    assert told.message.seq == 1
    assert told.message.conversation_id == group.conversation_id
    assert told.message.content_type == ContentType.GROUP_EVENT
    assert json.loads(told.message.body) == {
        "event": "created",
        "name": "team",
        "members": ["alice", "bob", "carol"],
    }
    assert told.recipients == (ALICE, BOB, CAROL)
    assert not told.duplicate


def test_the_event_of_the_largest_group_fits_in_one_message() -> None:
    app = App()
    ids = [UserId(f"{n:064}") for n in range(MAX_GROUP_MEMBERS - 1)]
    group = value(app.manage.create(ALICE, "x" * 1024, tuple(ids)))
    body = value(app.send.group_created(dev("alice"), group)).message.body
    event = json.loads(body)
    assert len(event["members"]) == EVENT_MEMBERS_NAMED
    assert event["more"] == MAX_GROUP_MEMBERS - EVENT_MEMBERS_NAMED
    assert len(body) <= 64 * 1024  # the protocol's MAX_CONTENT_SIZE


@pytest.mark.parametrize("content_type", [0xFF00, ContentType.GROUP_EVENT])
def test_a_client_may_not_write_a_server_content_type(content_type) -> None:
    app = App()
    group = value(app.manage.create(ALICE, "team"))
    for sent in (
        app.send.to_user(dev("alice"), "c1", BOB, content_type, b"{}"),
        app.send.to_group(
            dev("alice"), "c2", group.group_id, content_type, b"{}"
        ),
    ):
        assert isinstance(sent.exception(), InvalidArgument)
