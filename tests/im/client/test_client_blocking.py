"""The blocking Client against a scripted server on a real socket."""

from __future__ import annotations

import socket
import threading

import pytest
from client_fake_server import DEADLINE, token_for

from im.client import (
    Client,
    ConnectionLost,
    Event,
    KickedError,
    LoginFailedError,
    MessageReceived,
    RequestError,
    RequestTimeout,
)
from im.protocol import (
    JSON,
    MAX_FRAME_SIZE,
    ContentType,
    DeliveryAck,
    ErrorCode,
    Kicked,
    LoginOk,
    Ping,
    Pong,
    SendToUser,
)


def test_login_returns_what_the_server_said(connect):
    client = connect()
    ok = client.login(token_for("alice"), "laptop")
    assert isinstance(ok, LoginOk)
    assert (ok.user_id, ok.device_id) == ("alice", "laptop")
    assert client.login_ok == ok
    assert client.user_id == "alice"
    assert client.ping() > 0


def test_a_refused_token_raises_with_the_code_and_the_connection_ends(
    connect,
):
    client = connect()
    with pytest.raises(LoginFailedError) as caught:
        client.login("expired", "phone")
    assert caught.value.code == ErrorCode.TOKEN_EXPIRED
    assert caught.value.code_name == "TOKEN_EXPIRED"
    with pytest.raises(ConnectionLost, match="TOKEN_EXPIRED"):
        client.next_push(timeout=DEADLINE)
    assert not client.is_open


def test_a_message_reaches_the_recipient_as_a_push(connect):
    alice, bob = connect("alice"), connect("bob")
    ack = alice.send_to_user("bob", "hello, bob")
    message = bob.next_push(timeout=DEADLINE)
    assert message.content == b"hello, bob"
    assert (message.from_user, message.to) == ("alice", "bob")
    assert (message.conversation_id, message.seq) == (
        ack.conversation_id,
        ack.seq,
    )
    assert message.message_id == ack.message_id


def test_offline_messages_arrive_unasked_after_login_in_order(server):
    server.backlog_page_size = 2  # three pages
    for n in range(5):
        server.post("alice", "bob", f"while you were out {n}")
    with Client.connect(server.host, server.port) as bob:
        bob.login(token_for("bob"), "phone")
        assert bob.wait_backlog(timeout=DEADLINE) == 5
        assert [m.content for m in bob.drain_pushes()] == [
            f"while you were out {n}".encode() for n in range(5)
        ]
        # Each page was acked as it came; the last ack covers all five.
        server.wait_packet(DeliveryAck, lambda ack: ack.seq == 5)
    with Client.connect(server.host, server.port) as again:
        again.login(token_for("bob"), "phone")
        assert again.wait_backlog(timeout=DEADLINE) == 0
        assert again.sync() == []
        assert again.drain_pushes() == []


def test_a_sync_pages_through_the_backlog_and_brings_no_copy(server):
    server.backlog_on_login = False
    for n in range(5):
        server.post("alice", "bob", f"while you were out {n}")
    with Client.connect(server.host, server.port) as bob:
        bob.login(token_for("bob"), "phone")
        backlog = bob.sync(limit=2)  # three pages
        assert [m.content for m in backlog] == [
            f"while you were out {n}".encode() for n in range(5)
        ]
        server.wait_packet(DeliveryAck, lambda ack: ack.seq == 5)
        assert bob.sync() == []


def test_waiting_for_the_backlog_of_a_lost_connection_raises(connect):
    client = connect()
    with pytest.raises(LoginFailedError):
        client.login("expired", "phone")
    with pytest.raises(ConnectionLost):
        client.wait_backlog(timeout=DEADLINE)


def test_pushes_after_the_sync_are_acked_cumulatively(connect, server):
    alice, bob = connect("alice"), connect("bob")
    bob.sync()
    for n in range(10):
        alice.send_to_user("bob", f"message {n}")
    received = [bob.next_push(timeout=DEADLINE) for _ in range(10)]
    assert [m.seq for m in received] == list(range(1, 11))
    server.wait_packet(DeliveryAck, lambda ack: ack.seq == 10)
    seqs = [ack.seq for ack in server.packets(DeliveryAck)]
    assert seqs == sorted(seqs)


def test_the_callback_sees_every_event(connect, server):
    events: list[Event] = []
    seen = threading.Event()

    def on_event(event: Event) -> None:
        events.append(event)
        if isinstance(event, MessageReceived):
            seen.set()

    bob = connect("bob", on_event=on_event, queue_pushes=False)
    server.post("alice", "bob", "hi")
    assert seen.wait(DEADLINE)
    assert events[-1].message.content == b"hi"
    with pytest.raises(RuntimeError, match="queue_pushes"):
        bob.next_push(timeout=0)


def test_an_error_reply_raises_and_the_connection_goes_on(connect):
    alice = connect("alice")
    with pytest.raises(RequestError) as caught:
        alice.send_to_user("nobody", "hello?")
    assert caught.value.code_name == "NO_SUCH_USER"
    assert alice.session.unacked_sends == ()  # refused for good
    assert alice.send_to_user("bob", "hello!").seq == 1


def test_groups_from_creation_to_leaving(connect):
    alice, bob, carol = connect("alice"), connect("bob"), connect("carol")
    created = alice.create_group("team", ["bob"])
    assert created.name == "team"
    group = created.group_id
    assert alice.members(group) == ("alice", "bob")
    ack = alice.send_to_group(group, "hi team")
    assert ack.conversation_id == created.conversation_id
    told = bob.next_push(timeout=DEADLINE)  # the group's "created"
    assert (told.to, told.content_type) == (group, ContentType.GROUP_EVENT)
    pushed = bob.next_push(timeout=DEADLINE)
    assert (pushed.to, pushed.content) == (group, b"hi team")

    with pytest.raises(RequestError) as caught:
        carol.send_to_group(group, "let me in")
    assert caught.value.code_name == "NOT_A_MEMBER"
    assert carol.join_group(group).conversation_id == created.conversation_id
    assert carol.members(group) == ("alice", "bob", "carol")
    assert carol.leave_group(group).group_id == group
    assert carol.members(group) == ("alice", "bob")


def test_history_pages_backwards(connect):
    alice = connect("alice")
    acks = [alice.send_to_user("bob", f"m{n}") for n in range(5)]
    conversation = acks[0].conversation_id
    newest = alice.history(conversation, limit=2)
    assert [m.content for m in newest.messages] == [b"m3", b"m4"]
    assert newest.has_more
    older = alice.history(conversation, newest.messages[0].seq, limit=10)
    assert [m.content for m in older.messages] == [b"m0", b"m1", b"m2"]
    assert not older.has_more


def test_kicked_ends_the_client_with_the_reason(connect, server):
    alice = connect("alice")
    server.on(Ping, lambda peer, header, packet: None)  # never answered
    errors: list[BaseException] = []

    def ping() -> None:
        try:
            alice.ping(timeout=DEADLINE)
        except BaseException as exc:
            errors.append(exc)

    waiting = threading.Thread(target=ping)
    waiting.start()
    server.wait_packet(Ping)
    peer = server.peer_of("alice")
    peer.send(Kicked(ErrorCode.REPLACED, "logged in elsewhere"))
    with pytest.raises(KickedError) as caught:
        alice.next_push(timeout=DEADLINE)
    waiting.join(DEADLINE)
    assert errors == [caught.value]
    assert caught.value.code_name == "REPLACED"
    assert alice.closed_reason is caught.value
    with pytest.raises(KickedError):
        alice.send_to_user("bob", "still there?")


def test_an_unanswered_send_is_resent_with_its_id_after_reconnecting(
    connect, server
):
    def store_then_hang_up(peer, header, packet):
        # The server stored the message, but its ack is lost with the
        # connection: the client cannot tell, and must resend.
        server.default(SendToUser)
        server.store_send(peer, packet)
        peer.close()

    server.on(SendToUser, store_then_hang_up)
    alice = connect("alice")
    with pytest.raises(ConnectionLost):
        alice.send_to_user("bob", "did this arrive?")
    alice.close()
    (unacked,) = alice.session.unacked_sends

    again = connect("alice", session=alice.session)
    (ack,) = again.resend_unacked()
    assert ack.client_message_id == unacked.client_message_id
    assert again.session.unacked_sends == ()
    stored = server.conversations[ack.conversation_id]
    assert [m.content for m in stored] == [b"did this arrive?"]


def test_a_timed_out_request_raises_and_its_late_reply_is_ignored(
    connect, server
):
    server.on(Ping, lambda peer, header, packet: None)
    alice = connect("alice")
    with pytest.raises(RequestTimeout):
        alice.ping(timeout=0.05)
    peer, header, _ = server.wait_packet(Ping)
    peer.send(Pong(), header.request_id)  # too late
    server.default(Ping)
    assert alice.ping() > 0
    assert alice.session.waiting == 0


def test_next_push_gives_up_after_its_timeout(connect):
    bob = connect("bob")
    with pytest.raises(TimeoutError):
        bob.next_push(timeout=0.01)
    assert bob.drain_pushes() == []


def test_the_server_hanging_up_fails_calls_and_pushes(connect, server):
    alice = connect("alice")
    server.peer_of("alice").close()
    with pytest.raises(ConnectionLost, match="server closed"):
        alice.next_push(timeout=DEADLINE)
    with pytest.raises(ConnectionLost):  # and again: it stays ended
        alice.next_push(timeout=DEADLINE)
    with pytest.raises(ConnectionLost):
        alice.ping()


def test_a_frame_too_long_from_the_server_ends_the_connection(connect, server):
    alice = connect("alice")
    server.peer_of("alice").send_raw(b"\xff\xff\xff\xff")
    # Told in the protocol's units: the bytes after the length prefix.
    announced = f"frame of {0xFFFFFFFF} bytes, more than {MAX_FRAME_SIZE}"
    with pytest.raises(ConnectionLost, match="connection failed") as lost:
        alice.next_push(timeout=DEADLINE)
    assert announced in str(lost.value)


def test_json_sessions_work_end_to_end(connect, server):
    alice = connect("alice", serializer=JSON)
    bob = connect("bob", serializer=JSON)
    alice.send_to_user("bob", "über JSON ✓")
    assert bob.next_push(timeout=DEADLINE).content == "über JSON ✓".encode()
    _, header, _ = server.wait_packet(SendToUser)
    assert header.serializer == JSON


def client_threads() -> list[threading.Thread]:
    return [
        thread
        for thread in threading.enumerate()
        if thread.name.startswith("netim client")
    ]


def test_close_is_idempotent_and_ends_the_thread(connect, server):
    with connect("alice") as alice:
        peer = server.peer_of("alice")
        assert client_threads()
    alice.close()
    assert client_threads() == []
    with pytest.raises(ConnectionLost, match="closed"):
        alice.ping()
    server.wait_gone(peer)


def test_connecting_to_nothing_raises_and_leaves_no_thread():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # bound, never listening
        with pytest.raises(ConnectionRefusedError):
            Client.connect("127.0.0.1", port, timeout=DEADLINE)
    assert client_threads() == []


def test_the_fake_server_refuses_requests_before_login(connect):
    client = connect(login=False)
    with pytest.raises(RequestError, match="NOT_LOGGED_IN"):
        client.sync()
