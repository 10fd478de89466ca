"""The server's pipeline on embedded channels: login, heartbeat, errors,
messages, groups. No sockets; the clock moves when the test says."""

from __future__ import annotations

import json
import logging

import pytest
from im_server_kit import (
    SECRET,
    Peer,
    SlowAppends,
    logged_in,
    make_services,
)

from im.infrastructure.tokens import issue_token
from im.interfaces.handlers import Router
from im.interfaces.limits import RateLimiter, RatePolicy
from im.protocol import (
    MAGIC,
    ContentType,
    CreateGroup,
    DeliveryAck,
    Error,
    ErrorCode,
    GroupCreated,
    GroupJoined,
    HistoryPage,
    HistoryRequest,
    JoinGroup,
    Kicked,
    ListMembers,
    Login,
    LoginFailed,
    LoginOk,
    MemberList,
    Ping,
    Pong,
    Push,
    SendToGroup,
    SendToUser,
    Serializer,
    ServerAck,
    SyncPage,
    SyncRequest,
    encode,
)
from reactor.pipeline import M_WRITE


def only(packets: list, kind: type) -> list:
    return [p for p in packets if isinstance(p, kind)]


# -- before login --------------------------------------------------------


def test_ping_is_answered_before_login_with_its_request_id() -> None:
    peer = Peer(make_services())
    peer.send(Ping(), request_id=7)
    [(header, packet)] = peer.received()
    assert packet == Pong() and header.request_id == 7


def test_anything_but_login_is_refused_and_the_connection_stays() -> None:
    peer = Peer(make_services())
    peer.send(SendToUser("c1", "bob", 1, b"hi"), request_id=3)
    [(header, error)] = peer.received()
    assert error == Error(ErrorCode.NOT_LOGGED_IN, "log in first", False)
    assert header.request_id == 3
    assert peer.channel.is_open


@pytest.mark.parametrize(
    ("token", "code"),
    [
        ("v1.bm9wZQ.bm9wZQ", ErrorCode.BAD_TOKEN),
        (issue_token(b"another secret", "alice"), ErrorCode.BAD_TOKEN),
        (issue_token(SECRET, "alice", ttl=1, now=0), ErrorCode.TOKEN_EXPIRED),
        (issue_token(SECRET, "alice", device="tablet"), ErrorCode.BAD_TOKEN),
    ],
    ids=["garbage", "other-secret", "expired", "other-device"],
)
def test_a_bad_login_fails_and_closes(token: str, code: ErrorCode) -> None:
    peer = Peer(make_services())
    peer.send(Login(token, "phone", "test/1"))
    [failed] = peer.packets()
    assert isinstance(failed, LoginFailed) and failed.code == code
    assert not peer.channel.is_open


def test_no_login_before_the_deadline_closes() -> None:
    services = make_services(login_timeout=5.0)
    peer = Peer(services)
    peer.channel.advance_time(4.9)
    assert peer.channel.is_open
    peer.channel.advance_time(0.2)
    [error] = peer.packets()
    assert error.code == ErrorCode.LOGIN_TIMEOUT and error.will_close
    assert not peer.channel.is_open
    assert peer.closing.reason == "login timeout"


# -- login ---------------------------------------------------------------


def test_login_answers_then_sends_the_empty_backlog() -> None:
    services = make_services(heartbeat_interval=20, idle_timeout=60)
    peer = Peer(services)
    ok, page = peer.login("alice")
    assert isinstance(ok, LoginOk)
    assert (ok.user_id, ok.device_id) == ("alice", "phone")
    assert (ok.heartbeat_interval, ok.idle_timeout) == (20, 60)
    assert page == SyncPage((), False, "")
    # The gate stepped aside for the router.
    handlers = peer.channel.pipeline.handlers()
    assert any(isinstance(h, Router) for h in handlers)
    assert services.registry.online_devices("alice") == ("phone",)


def test_the_login_deadline_does_not_fire_after_login() -> None:
    services = make_services(login_timeout=5.0)
    peer = logged_in(services, "alice")
    peer.channel.advance_time(10)
    assert peer.channel.is_open and peer.packets() == []


def test_a_second_login_on_one_connection_is_an_error() -> None:
    peer = logged_in(make_services(), "alice")
    peer.send(Login(issue_token(SECRET, "bob"), "phone", "t"))
    [error] = peer.packets()
    assert error.code == ErrorCode.ALREADY_LOGGED_IN
    assert peer.channel.is_open


def test_the_close_is_logged_once_with_the_sessions_reason(caplog) -> None:
    services = make_services()
    old = logged_in(services, "alice")
    with caplog.at_level(logging.INFO, logger="im.server"):
        logged_in(services, "alice")
        old.channel.run_pending_tasks()
    closed = [r.getMessage() for r in caplog.records if "closed:" in r.message]
    assert len(closed) == 1
    assert closed[0].endswith("closed: kicked: replaced")


def test_the_same_device_again_kicks_the_older_session_once() -> None:
    services = make_services()
    old = logged_in(services, "alice")
    new = logged_in(services, "alice")
    kicked = old.packets()
    assert kicked == [Kicked(ErrorCode.REPLACED, "logged in again elsewhere")]
    assert not old.channel.is_open
    assert new.channel.is_open
    # The registry holds the newer session, even after the older one's
    # close events ran.
    old.channel.run_pending_tasks()
    [session] = services.registry.sessions()
    assert session.channel is new.channel


def test_refuse_new_keeps_the_older_session() -> None:
    services = make_services(duplicate_login="refuse-new")
    old = logged_in(services, "alice")
    new = Peer(services)
    [failed] = new.login("alice")
    assert isinstance(failed, LoginFailed)
    assert old.channel.is_open and not new.channel.is_open


def test_devices_of_one_user_hold_sessions_side_by_side() -> None:
    services = make_services()
    logged_in(services, "alice", "phone")
    logged_in(services, "alice", "laptop")
    assert sorted(services.registry.online_devices("alice")) == [
        "laptop",
        "phone",
    ]


# -- heartbeat and errors ------------------------------------------------


def test_a_silent_connection_is_closed_after_the_idle_timeout() -> None:
    services = make_services(heartbeat_interval=10, idle_timeout=30)
    peer = logged_in(services, "alice")
    peer.channel.advance_time(20)
    peer.send(Ping())
    peer.channel.advance_time(20)
    assert peer.channel.is_open, "the ping 20 s ago counts"
    peer.channel.advance_time(15)
    assert not peer.channel.is_open
    assert peer.closing.reason.startswith("idle timeout")
    assert services.registry.online_devices("alice") == ()


def test_a_bad_packet_gets_an_error_and_the_connection_stays() -> None:
    peer = logged_in(make_services(), "alice")
    body = bytearray(encode(Ping(), 9))
    body[4:6] = (0x7F7F).to_bytes(2, "big")  # no such packet type
    peer.send(bytes(body))
    [(header, error)] = peer.received()
    assert error.code == ErrorCode.UNKNOWN_PACKET_TYPE
    assert header.request_id == 9 and not error.will_close
    assert peer.channel.is_open


def test_not_our_protocol_gets_an_error_and_a_close() -> None:
    peer = logged_in(make_services(), "alice")
    peer.send(b"GET / HTTP/1.1\r\n\r\n")
    [error] = peer.packets()
    assert error.code == ErrorCode.BAD_MAGIC and error.will_close
    assert not peer.channel.is_open
    assert MAGIC == b"\xc1\x4e"


def test_text_that_is_not_utf8_is_refused_and_nothing_is_stored() -> None:
    services = make_services()
    alice = logged_in(services, "alice")
    bob = logged_in(services, "bob")
    body = bytearray(encode(SendToUser("c1", "bob", 1, b"ok"), 5))
    body[-2:] = b"\xff\xfe"  # the content's two bytes, now not UTF-8
    alice.send(bytes(body))
    [error] = alice.packets()
    assert error.code == ErrorCode.INVALID_TEXT
    assert bob.packets() == []


def test_requests_over_the_rate_limit_are_refused() -> None:
    services = make_services(rate_limit=0.001, rate_burst=2)
    peer = logged_in(services, "alice")
    for i in range(3):
        peer.send(JoinGroup("nope"), request_id=10 + i)
    errors = [(h.request_id, p.code) for h, p in peer.received()]
    assert errors == [
        (10, ErrorCode.NO_SUCH_GROUP),
        (11, ErrorCode.NO_SUCH_GROUP),
        (12, ErrorCode.RATE_LIMITED),
    ]


def test_the_rate_limiter_refills_with_time() -> None:
    now = [0.0]
    limiter = RateLimiter(RatePolicy(rate=2.0, burst=2, clock=lambda: now[0]))
    assert [limiter.allow() for _ in range(3)] == [True, True, False]
    now[0] += 0.5  # one token back
    assert [limiter.allow() for _ in range(2)] == [True, False]


# -- messages ------------------------------------------------------------


def test_a_message_is_acked_then_pushed_to_every_device() -> None:
    services = make_services()
    alice_phone = logged_in(services, "alice", "phone")
    alice_laptop = logged_in(services, "alice", "laptop")
    bob = logged_in(services, "bob")
    rid = alice_phone.send(SendToUser("c1", "bob", 1, "héllo 👋".encode()))
    [(header, ack)] = alice_phone.received()
    assert isinstance(ack, ServerAck) and header.request_id == rid
    assert (ack.client_message_id, ack.seq) == ("c1", 1)
    [push] = bob.packets()
    [copy] = alice_laptop.packets()
    assert push == copy and isinstance(push, Push)
    assert push.message.content == "héllo 👋".encode()
    assert push.message.message_id == ack.message_id
    assert (push.message.from_user, push.message.to) == ("alice", "bob")


def test_a_resent_client_message_id_gets_the_first_ack_and_no_push() -> None:
    services = make_services()
    alice = logged_in(services, "alice")
    bob = logged_in(services, "bob")
    alice.send(SendToUser("same", "bob", 1, b"one"))
    alice.send(SendToUser("same", "bob", 1, b"two"))
    first, second = alice.packets()
    assert first == second
    assert len(bob.packets()) == 1


def test_acks_move_the_backlog_so_the_next_login_starts_after() -> None:
    services = make_services()
    alice = logged_in(services, "alice")
    bob = logged_in(services, "bob")
    for i in range(3):
        alice.send(SendToUser(f"c{i}", "bob", 1, b"x"))
    pushes = bob.packets()
    conversation = pushes[0].message.conversation_id
    bob.send(DeliveryAck(conversation, 2))
    assert bob.packets() == []  # no reply to an ack
    bob.channel.close()
    again = Peer(services)
    _, page = again.login("bob")
    assert [m.seq for m in page.messages] == [3]


def test_an_offline_user_gets_the_backlog_in_order_at_login() -> None:
    services = make_services()
    alice = logged_in(services, "alice")
    for i in range(5):
        alice.send(SendToUser(f"c{i}", "bob", 1, f"m{i}".encode()))
    bob = Peer(services)
    _, page = bob.login("bob")
    assert [m.content for m in page.messages] == [
        f"m{i}".encode() for i in range(5)
    ]
    assert [m.seq for m in page.messages] == [1, 2, 3, 4, 5]
    assert not page.has_more


def test_sync_and_history_on_request() -> None:
    services = make_services()
    alice = logged_in(services, "alice")
    for i in range(5):
        alice.send(SendToUser(f"c{i}", "bob", 1, b"x"))
    conversation = alice.packets()[0].conversation_id
    bob = logged_in(services, "bob")
    bob.send(SyncRequest("", (), 2))
    [page] = bob.packets()
    assert [m.seq for m in page.messages] == [1, 2] and page.has_more
    bob.send(SyncRequest(page.next_cursor, (), 10))
    [page] = bob.packets()
    assert [m.seq for m in page.messages] == [3, 4, 5]
    bob.send(HistoryRequest(conversation, 4, 2))
    [history] = bob.packets()
    assert isinstance(history, HistoryPage)
    assert [m.seq for m in history.messages] == [2, 3] and history.has_more


def test_history_of_someone_elses_conversation_is_refused() -> None:
    services = make_services()
    alice = logged_in(services, "alice")
    alice.send(SendToUser("c", "bob", 1, b"x"))
    conversation = alice.packets()[0].conversation_id
    eve = logged_in(services, "eve")
    eve.send(HistoryRequest(conversation, 0, 10))
    [error] = eve.packets()
    assert error.code == ErrorCode.NO_SUCH_CONVERSATION


# -- groups --------------------------------------------------------------


def test_group_life_and_one_encoding_for_all_members() -> None:
    services = make_services()
    alice = logged_in(services, "alice")
    bob = logged_in(services, "bob")
    carol = logged_in(services, "carol")
    alice.send(CreateGroup("tea", ("bob",)))
    [created, _told] = alice.packets()
    assert isinstance(created, GroupCreated) and created.name == "tea"
    [_told] = bob.packets()
    carol.send(JoinGroup(created.group_id))
    [joined] = carol.packets()
    assert joined == GroupJoined(created.group_id, created.conversation_id)
    carol.send(ListMembers(created.group_id))
    [members] = carol.packets()
    assert members == MemberList(created.group_id, ("alice", "bob", "carol"))

    bob.send(SendToGroup("g1", created.group_id, 1, b"hello all"))
    [ack] = bob.packets()
    assert isinstance(ack, ServerAck)
    alice.channel.run_pending_tasks()
    carol.channel.run_pending_tasks()
    to_alice = alice.channel.read_outbound()
    to_carol = carol.channel.read_outbound()
    assert to_alice is to_carol, "one encoded push, shared"


def test_a_new_group_is_told_to_every_device_of_its_members() -> None:
    services = make_services()
    alice = logged_in(services, "alice")
    alice_laptop = logged_in(services, "alice", "laptop")
    bob = logged_in(services, "bob")
    carol = logged_in(services, "carol")  # not a member
    alice.send(CreateGroup("tea", ("bob",)))
    created, told = alice.packets()
    # The reply first, then the group's first message, to the creating
    # device too: seq 1 must not be a hole in its log.
    assert isinstance(created, GroupCreated)
    for device in (alice_laptop, bob):
        assert device.packets() == [told]
    assert isinstance(told, Push)
    event = told.message
    assert (event.conversation_id, event.seq) == (created.conversation_id, 1)
    assert (event.from_user, event.to) == ("alice", created.group_id)
    assert event.content_type == ContentType.GROUP_EVENT
    assert json.loads(event.content) == {
        "event": "created",
        "name": "tea",
        "members": ["alice", "bob"],
    }
    assert carol.packets() == []


def test_a_client_may_not_send_what_only_the_server_writes() -> None:
    services = make_services()
    alice = logged_in(services, "alice")
    alice.send(SendToUser("c1", "bob", ContentType.GROUP_EVENT, b"{}"))
    [error] = alice.packets()
    assert error.code == ErrorCode.INVALID_ARGUMENT
    assert "written by the server" in error.text


def test_only_members_may_send_to_a_group() -> None:
    services = make_services()
    alice = logged_in(services, "alice")
    alice.send(CreateGroup("tea", ()))
    [created, _told] = alice.packets()
    eve = logged_in(services, "eve")
    eve.send(SendToGroup("x", created.group_id, 1, b"hi"))
    [error] = eve.packets()
    assert error.code == ErrorCode.NOT_A_MEMBER
    assert alice.packets() == []


def test_a_reply_uses_the_serializer_of_its_request() -> None:
    services = make_services()
    alice = logged_in(services, "alice")  # logged in with msgpack
    alice.send(encode(CreateGroup("team", ()), 8, Serializer.JSON))
    alice.send(encode(JoinGroup("no-such-group"), 9, Serializer.JSON))
    replies = [(h, p) for h, p in alice.received() if not isinstance(p, Push)]
    assert [h.serializer for h, _ in replies] == [Serializer.JSON] * 2
    assert [type(p) for _, p in replies] == [GroupCreated, Error]


def test_a_message_stored_after_its_sender_left_still_reaches_everyone():
    store = SlowAppends()
    services = make_services(messages=store)
    alice = logged_in(services, "alice")
    alice_laptop = logged_in(services, "alice", "laptop")
    bob = logged_in(services, "bob")
    alice.send(SendToUser("c1", "bob", 1, b"are you there?"))
    alice.channel.close()  # gone before the store answered
    store.complete()
    [push] = only(bob.packets(), Push)
    assert push.message.content == b"are you there?"
    [copy] = only(alice_laptop.packets(), Push)
    assert copy.message.message_id == push.message.message_id


def test_a_reset_by_the_peer_is_a_close_reason_not_an_error(caplog):
    services = make_services()
    alice = logged_in(services, "alice")
    with caplog.at_level(logging.INFO):
        reset = ConnectionResetError(104, "Connection reset by peer")
        alice.channel.pipeline.fire_exception_caught(reset)
        alice.channel.close()
        alice.channel.run_pending_tasks()
    assert [r.levelname for r in caplog.records] == ["INFO"]
    assert (
        caplog.records[0]
        .getMessage()
        .endswith("closed: connection lost: Connection reset by peer")
    )


def test_senders_are_not_read_while_the_store_is_far_behind() -> None:
    store = SlowAppends()
    services = make_services(messages=store)
    admission = services.admission
    alice = logged_in(services, "alice")
    bob = logged_in(services, "bob")
    for n in range(admission.high - 1):
        alice.send(SendToUser(f"a{n}", "bob", 1, b"x"))
    assert alice.channel.auto_read  # one short of the limit
    bob.send(SendToUser("b0", "alice", 1, b"x"))
    assert not bob.channel.auto_read  # its send reached the limit
    assert alice.channel.auto_read  # held only when sending past it
    alice.send(SendToUser("a-last", "bob", 1, b"x"))
    assert not alice.channel.auto_read
    store.complete()  # the store catches up: everyone is read again
    assert alice.channel.auto_read and bob.channel.auto_read
    assert admission.in_flight == 0
    acks = only(alice.packets(), ServerAck)
    assert len(acks) == admission.high


def test_no_handler_after_the_prepender_takes_writes() -> None:
    # Pushes are written from the prepender's context and pass every
    # handler after it; one that handled writes would miss them.
    services = make_services()
    peer = Peer(services)
    ctx = peer.channel.pipeline.context(services.framing)
    assert ctx is not None
    after = []
    ctx = ctx.next
    while ctx is not peer.channel.pipeline.tail:
        after.append(ctx)
        ctx = ctx.next
    assert after, "the protocol codec and the rest follow the prepender"
    assert not [c.name for c in after if c._mask & M_WRITE]
