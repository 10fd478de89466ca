from __future__ import annotations

from im_app_fakes import App, dev, value

from im.application import CreateGroup
from im.domain import (
    MAX_GROUP_MEMBERS,
    GroupFull,
    GroupId,
    NoSuchGroup,
    NotAMember,
    UserId,
)

ALICE, BOB, CAROL = UserId("alice"), UserId("bob"), UserId("carol")


def test_create_join_leave_and_list() -> None:
    app = App()
    group = value(app.manage.create(ALICE, "team", (BOB,)))
    gid = group.group_id
    assert value(app.manage.members(ALICE, gid)) == (ALICE, BOB)
    value(app.manage.join(CAROL, gid))
    value(app.manage.join(CAROL, gid))  # twice changes nothing
    assert value(app.manage.members(CAROL, gid)) == (ALICE, BOB, CAROL)
    value(app.manage.leave(BOB, gid))
    assert value(app.manage.members(ALICE, gid)) == (ALICE, CAROL)
    assert isinstance(app.manage.leave(BOB, gid).exception(), NotAMember)


def test_group_ids_are_fresh() -> None:
    app = App()
    one = value(app.manage.create(ALICE, "a"))
    two = value(app.manage.create(ALICE, "a"))
    assert one.group_id != two.group_id


def test_listing_members_takes_membership() -> None:
    app = App()
    group = value(app.manage.create(ALICE, "team"))
    listed = app.manage.members(BOB, group.group_id)
    assert isinstance(listed.exception(), NotAMember)


def test_unknown_groups_are_reported() -> None:
    app = App()
    nope = GroupId("nope")
    for pending in (
        app.manage.join(BOB, nope),
        app.manage.leave(BOB, nope),
        app.manage.members(BOB, nope),
    ):
        assert isinstance(pending.exception(), NoSuchGroup)


def test_a_member_who_left_no_longer_gets_the_backlog() -> None:
    app = App()
    group = value(app.manage.create(ALICE, "team", (BOB,)))
    value(app.manage.leave(BOB, group.group_id))
    value(app.send.to_group(dev("alice"), "c", group.group_id, 1, b"x"))
    assert value(app.sync(dev("bob"))).messages == []


def test_creating_a_group_also_stores_its_first_message() -> None:
    app = App()
    create = CreateGroup(app.manage, app.send)
    new = value(create(dev("alice"), "team", (BOB,)))
    told = value(new.announced)
    assert told.message.conversation_id == new.group.conversation_id
    assert told.message.seq == 1
    assert told.recipients == (ALICE, BOB)


def test_a_refused_group_announces_nothing() -> None:
    app = App()
    create = CreateGroup(app.manage, app.send)
    crowd = tuple(UserId(f"u{n}") for n in range(MAX_GROUP_MEMBERS))
    refused = create(dev("alice"), "too many", crowd)
    assert isinstance(refused.exception(), GroupFull)
    assert app.ids.next_message_id() == 1  # no message was even drafted
