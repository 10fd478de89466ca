"""End to end: ``netim serve`` as a real process, real clients on sockets.

What a user of the server counts on, checked from outside: messages
reach every device once and in their conversation's order, across
offline periods, a backlog that is still being sent, kicks and a
``kill -9``; bad input is refused with a clear error and closes only
the connection that sent it.

The SQLite store runs with ``synchronous=NORMAL`` where durability
against power loss is not the point (it is what makes the commits
fast); the crash test keeps the default, FULL.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import msgpack
import pytest
from im_process import DEADLINE, ImServer, child_env, wait_for

from im.client import (
    Client,
    ConnectionLost,
    Event,
    KickedError,
    RequestError,
    SessionKicked,
)
from im.protocol import (
    MAX_CONTENT_SIZE,
    MAX_FRAME_SIZE,
    ContentType,
    Error,
    ErrorCode,
    ListMembers,
    LoginOk,
    Message,
    PacketType,
    Ping,
    Pong,
    SendToUser,
    Serializer,
    ServerAck,
    encode,
)
from im.protocol.header import encode_header

FAST_DISK = ["--sqlite-synchronous", "NORMAL"]


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Any]:
    """``start(*options)``: a running server; killed at teardown."""
    servers: list[ImServer] = []

    def make(*options: str) -> ImServer:
        server = ImServer(tmp_path / f"server{len(servers)}", options)
        server.workdir.mkdir()
        servers.append(server)
        return server.start()

    yield make
    for server in servers:
        server.close()


@pytest.fixture
def server(start: Any) -> ImServer:
    return start(*FAST_DISK)


def send_all(
    client: Client, to_user: str, texts: list[str], threads: int = 8
) -> list[ServerAck]:
    """Send ``texts`` with several requests in flight (one at a time
    would measure the disk, not the server); their acks, in order."""
    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(lambda t: client.send_to_user(to_user, t), texts))


def pushes(client: Client, count: int) -> list[Message]:
    return [client.next_push(timeout=DEADLINE) for _ in range(count)]


def seqs(messages: list[Message]) -> list[int]:
    return [m.seq for m in messages]


def nothing_more(client: Client) -> list[Message]:
    """What ``client`` was sent beyond what the test read, once a ping
    has made the round trip (the server answers in order, so a message
    sent before the PONG has arrived by then)."""
    client.ping()
    return client.drain_pushes()


# -- delivery -----------------------------------------------------------------


def test_a_direct_message_reaches_every_device_of_both_users(server):
    laptop = server.login("alice", "laptop")
    alice_phone = server.login("alice", "phone")
    bob_phone = server.login("bob", "phone")
    bob_tablet = server.login("bob", "tablet")
    ack = laptop.send_to_user("bob", "hello, bob")
    for device in (bob_phone, bob_tablet, alice_phone):
        message = device.next_push(timeout=DEADLINE)
        assert message.content == b"hello, bob"
        assert (message.message_id, message.seq) == (ack.message_id, 1)
        assert (message.from_user, message.from_device) == ("alice", "laptop")
    assert nothing_more(laptop) == []  # the sending device has its ack


def test_fifty_members_sending_at_once_all_see_one_order(server):
    members = [f"member{n:02}" for n in range(50)]
    clients = [server.login(user) for user in members]
    group = clients[0].create_group("fifty", members[1:])
    assert sorted(clients[1].members(group.group_id)) == members
    per_member = 4
    total = per_member * len(members)
    start = threading.Barrier(len(members))
    acks: dict[str, list[ServerAck]] = {}

    def speak(client: Client, user: str) -> None:
        start.wait(DEADLINE)
        acks[user] = [
            client.send_to_group(group.group_id, f"{user} says {n}")
            for n in range(per_member)
        ]

    speakers = [
        threading.Thread(target=speak, args=pair)
        for pair in zip(clients, members, strict=True)
    ]
    for thread in speakers:
        thread.start()
    for thread in speakers:
        thread.join(DEADLINE * 2)
    assert len(acks) == len(members)
    orders = []
    for client, user in zip(clients, members, strict=True):
        # The group's first message (the server's "created"), then the
        # others' messages.
        received = pushes(client, 1 + total - per_member)
        assert received[0].content_type == ContentType.GROUP_EVENT
        # Each device gets its conversation in seq order...
        assert seqs(received) == sorted(seqs(received))
        # ...and with its own sends, the whole of it: 1..total + 1, no gap.
        view = {m.seq: m.message_id for m in received}
        view.update({a.seq: a.message_id for a in acks[user]})
        assert sorted(view) == list(range(1, total + 2))
        orders.append(view)
        assert nothing_more(client) == []
    assert all(order == orders[0] for order in orders)


def test_an_offline_user_gets_the_backlog_in_order_at_login(server):
    alice = server.login("alice")
    # More than one page of backlog (the server sends 200 a page).
    texts = [f"while you were away {n}" for n in range(450)]
    acks = send_all(alice, "bob", texts)
    bob = server.connect()
    bob.login(server.token("bob"), "phone")
    assert bob.wait_backlog(timeout=DEADLINE) == len(texts)
    backlog = bob.drain_pushes()
    assert seqs(backlog) == list(range(1, len(texts) + 1))
    by_id = {a.message_id: a.client_message_id for a in acks}
    assert {m.message_id for m in backlog} == set(by_id)
    assert sorted(m.content.decode() for m in backlog) == sorted(texts)


def test_live_messages_during_the_backlog_do_not_overtake_it(start):
    # 2,300 sends as fast as alice can: more than the default limit's
    # burst (2,000) and faster than its refill on a quick machine, and
    # the limit is not what this test is about.
    server = start(*FAST_DISK, "--rate-limit", "100000")
    alice = server.login("alice")
    backlog = 2000
    send_all(alice, "bob", [f"old {n}" for n in range(backlog)])
    live = 300
    sending = threading.Thread(
        target=send_all, args=(alice, "bob", [f"new {n}" for n in range(live)])
    )
    received: list[Message] = []
    done = threading.Event()

    def on_event(event: Event) -> None:
        message = getattr(event, "message", None)
        if message is not None:
            received.append(message)
            if len(received) == backlog + live:
                done.set()

    bob = server.connect(on_event=on_event, queue_pushes=False)
    sending.start()
    bob.login(server.token("bob"), "phone")
    sending.join(DEADLINE * 2)
    assert done.wait(DEADLINE)
    assert seqs(received) == list(range(1, backlog + live + 1))
    assert bob.session.duplicates == 0
    bob.ping()
    assert len(received) == backlog + live


def test_what_a_device_acked_is_not_sent_again_and_the_rest_is(server):
    alice = server.login("alice")
    send_all(alice, "bob", [f"first {n}" for n in range(5)])
    # auto_ack off: this device acks 3 of them itself, then goes away.
    bob = server.login("bob", auto_ack=False)
    first = bob.drain_pushes()
    assert seqs(first) == [1, 2, 3, 4, 5]
    bob.ack(first[0].conversation_id, 3)
    bob.ping()  # the ack has been read by the time the PONG comes
    bob.close()
    again = server.login("bob")
    redelivered = again.drain_pushes()
    assert seqs(redelivered) == [4, 5]
    assert [m.message_id for m in redelivered] == [
        m.message_id for m in first[3:]
    ]


def test_a_resent_client_message_id_is_stored_once(server):
    alice = server.login("alice")
    bob = server.login("bob")
    first = alice.send_to_user("bob", "once", client_message_id="c-1")
    again = alice.send_to_user("bob", "once", client_message_id="c-1")
    assert again == first
    assert bob.next_push(timeout=DEADLINE).message_id == first.message_id
    assert nothing_more(bob) == []
    page = alice.history(first.conversation_id)
    assert [m.message_id for m in page.messages] == [first.message_id]


def test_content_is_delivered_byte_for_byte(server):
    alice = server.login("alice")
    bob = server.login("bob")
    text = "grüße 👋🏽 — 你好 \u200d\U0001f9d1\u200d\U0001f4bb"
    binary = bytes(range(256)) * 3
    largest = b"\xff" * MAX_CONTENT_SIZE
    alice.send_to_user("bob", text)
    alice.send_to_user("bob", binary, ContentType.BINARY)
    alice.send_to_user("bob", largest, ContentType.BINARY)
    received = pushes(bob, 3)
    assert received[0].content == text.encode()
    assert received[0].content_type == ContentType.TEXT
    assert [m.content for m in received[1:]] == [binary, largest]
    history = alice.history(received[0].conversation_id).messages
    assert [m.content for m in history] == [text.encode(), binary, largest]


def test_groups_take_members_and_only_members_may_send(server):
    alice = server.login("alice")
    bob = server.login("bob")
    carol = server.login("carol")
    group = alice.create_group("team")
    with pytest.raises(RequestError) as refused:
        bob.send_to_group(group.group_id, "let me in")
    assert refused.value.code == ErrorCode.NOT_A_MEMBER
    bob.join_group(group.group_id)
    carol.join_group(group.group_id)
    assert sorted(alice.members(group.group_id)) == ["alice", "bob", "carol"]
    alice.send_to_group(group.group_id, "welcome")
    assert bob.next_push(timeout=DEADLINE).content == b"welcome"
    assert carol.next_push(timeout=DEADLINE).content == b"welcome"
    carol.leave_group(group.group_id)
    alice.send_to_group(group.group_id, "carol has gone")
    # Seq 1 is the group's "created"; those who joined later start after.
    assert bob.next_push(timeout=DEADLINE).seq == 3
    assert nothing_more(carol) == []


def test_members_added_at_creation_hear_of_the_group_online_or_not(server):
    alice = server.login("alice")
    bob = server.login("bob")  # online; carol is not
    group = alice.create_group("team", ["bob", "carol"])
    created = bob.next_push(timeout=DEADLINE)
    assert created.content_type == ContentType.GROUP_EVENT
    assert (created.to, created.from_user) == (group.group_id, "alice")
    assert json.loads(created.content) == {
        "event": "created",
        "name": "team",
        "members": ["alice", "bob", "carol"],
    }
    # The creating device has it too (seq 1 is no hole in its log).
    assert alice.next_push(timeout=DEADLINE) == created
    carol = server.connect()
    carol.login(server.token("carol"), "phone")
    assert carol.wait_backlog(timeout=DEADLINE) == 1
    assert carol.drain_pushes() == [created]


# -- crashes and restarts -----------------------------------------------------


def test_kill_9_loses_and_duplicates_nothing_that_was_acknowledged(start):
    server = start()  # synchronous=FULL, the default
    alice = server.login("alice")
    acked: dict[str, ServerAck] = {}
    lost = threading.Event()

    def keep_sending(worker: int) -> None:
        for n in range(10_000):
            if lost.is_set():
                return
            try:
                ack = alice.send_to_user("bob", f"{worker}-{n}")
            except ConnectionLost:
                lost.set()
                return
            acked[ack.client_message_id] = ack

    senders = [
        threading.Thread(target=keep_sending, args=(w,)) for w in range(4)
    ]
    for thread in senders:
        thread.start()
    wait_for(lambda: len(acked) >= 200, "200 acknowledged messages")
    server.kill()
    for thread in senders:
        thread.join(DEADLINE)
    assert lost.is_set()
    before_crash = dict(acked)
    server.start()

    # The sender comes back with the same session and resends what it
    # has no ack for, with the same client message ids.
    alice.close()
    again = server.connect(session=alice.session)
    again.login(server.token("alice"), "phone")
    again.wait_backlog(timeout=DEADLINE)
    for outcome in again.resend_unacked():
        assert isinstance(outcome, ServerAck), outcome
        acked[outcome.client_message_id] = outcome

    bob = server.login("bob")
    received = bob.drain_pushes()
    assert seqs(received) == list(range(1, len(acked) + 1))
    by_id = {m.message_id: m for m in received}
    assert len(by_id) == len(received)
    # Every acknowledged message, with the id and seq its ack gave.
    for ack in before_crash.values():
        assert by_id[ack.message_id].seq == ack.seq
    assert {a.message_id for a in acked.values()} == set(by_id)
    # Each text once: nothing stored twice by the resend.
    texts = [m.content for m in received]
    assert len(set(texts)) == len(texts)


def test_a_stopped_server_keeps_every_message_for_the_next_start(start):
    server = start(*FAST_DISK)
    alice = server.login("alice")
    acks = send_all(alice, "bob", [f"before the stop {n}" for n in range(50)])
    assert server.stop() == 0
    # The last line says the stop is over, and what the store did.
    stopped = server.log().splitlines()[-1]
    assert "netim stopped; the store made " in stopped
    assert " commits of " in stopped
    with pytest.raises(ConnectionLost):
        alice.next_push(timeout=DEADLINE)
    server.start()
    bob = server.login("bob")
    received = bob.drain_pushes()
    assert [m.message_id for m in received] == sorted(
        a.message_id for a in acks
    )


def test_a_second_server_on_the_same_database_is_refused_plainly(server):
    # The first holds the file's lock; the second says so and exits,
    # without a traceback, and the first carries on.
    command = [
        sys.executable, "-m", "im.cli", "serve", "--port", "0",
        "--database", str(server.database), "--secret", "00" * 32,
    ]  # fmt: skip
    second = subprocess.run(
        command,
        capture_output=True,
        env=child_env(),
        timeout=DEADLINE,
    )
    assert second.returncode == 1
    error = second.stderr.decode()
    assert "cannot open the store" in error and "in use" in error
    assert "Traceback" not in error
    alice = server.login("alice")
    assert alice.ping(timeout=DEADLINE) >= 0


# -- sessions -----------------------------------------------------------------


def test_a_second_login_of_a_device_kicks_the_first_exactly_once(server):
    kicks: list[SessionKicked] = []

    def on_event(event: Event) -> None:
        if isinstance(event, SessionKicked):
            kicks.append(event)

    first = server.login("alice", "phone", on_event=on_event)
    other_device = server.login("alice", "laptop")
    second = server.login("alice", "phone")
    with pytest.raises(KickedError) as kicked:
        first.next_push(timeout=DEADLINE)
    assert kicked.value.code == ErrorCode.REPLACED
    assert [k.code for k in kicks] == [ErrorCode.REPLACED]
    assert not first.is_open
    # The new session and the other device carry on.
    bob = server.login("bob")
    bob.send_to_user("alice", "still there?")
    assert second.next_push(timeout=DEADLINE).content == b"still there?"
    assert other_device.next_push(timeout=DEADLINE).content == b"still there?"
    assert len(kicks) == 1


def test_refuse_new_keeps_the_first_session(start):
    server = start(*FAST_DISK, "--duplicate-login", "refuse-new")
    first = server.login("alice", "phone")
    peer = server.raw()
    reply = peer.login(server.token("alice"), "phone")
    assert reply.code == ErrorCode.REPLACED
    assert first.ping() > 0


def test_a_silent_connection_is_closed_after_the_idle_timeout(start):
    server = start(
        *FAST_DISK, "--heartbeat-interval", "1", "--idle-timeout", "2"
    )
    silent = server.login("alice", heartbeat=False)
    beating = server.login("bob")
    assert silent.login_ok is not None
    assert silent.login_ok.idle_timeout == 2
    started = time.monotonic()
    with pytest.raises(ConnectionLost):
        silent.next_push(timeout=DEADLINE)
    assert 1.5 < time.monotonic() - started < DEADLINE
    # The client that pings every second is still there after the same
    # two seconds and more.
    time.sleep(1.0)
    assert beating.is_open
    assert beating.ping() > 0


def test_a_connection_that_never_logs_in_is_closed(start):
    server = start(*FAST_DISK, "--login-timeout", "0.5")
    peer = server.raw()
    started = time.monotonic()
    [error] = peer.packets_until_closed()
    assert time.monotonic() - started >= 0.4
    assert isinstance(error, Error)
    assert error.code == ErrorCode.LOGIN_TIMEOUT


def test_a_device_that_stops_reading_is_kicked_and_loses_nothing(start):
    server = start(*FAST_DISK, "--slow-consumer-timeout", "1")
    alice = server.login("alice")
    stalled = server.raw(receive_buffer=4096)
    assert isinstance(stalled.login(server.token("bob"), "phone"), LoginOk)
    # 64 KiB messages, 8 MB in all: far past what the kernel queues and
    # the server's high watermark hold for a peer that reads nothing.
    content = b"\x00" * MAX_CONTENT_SIZE
    count = 128
    with ThreadPoolExecutor(8) as pool:
        acks = list(
            pool.map(
                lambda n: alice.send_to_user(
                    "bob", content, ContentType.BINARY, f"big-{n}"
                ),
                range(count),
            )
        )
    # The sender was never held up (every send was acked); the stalled
    # device is cut off once it has been unwritable for a second.
    assert len(acks) == count
    wait_for(
        lambda: "closed: kicked: slow_consumer" in server.log(),
        "the slow-consumer kick",
    )
    # Everything waits in the store for the device's next login.
    bob = server.login("bob", "phone")
    received = bob.drain_pushes()
    assert seqs(received) == list(range(1, count + 1))
    assert all(m.content == content for m in received)


def test_a_client_over_the_rate_limit_is_told_to_slow_down(start):
    server = start(*FAST_DISK, "--rate-limit", "5", "--rate-burst", "5")
    peer = server.raw()
    assert isinstance(peer.login(server.token("alice")), LoginOk)
    # PING is the heartbeat's and never limited; a request is.
    for request_id in range(100, 120):
        peer.send_packet(ListMembers("no-such-group"), request_id)
    # Refusals are immediate, answers wait for the store: they may come
    # in any order, so they are matched by request id.
    by_id: dict[int, Any] = {}
    while len(by_id) < 20:
        header, packet = peer.next_packet()
        if header.request_id:
            by_id[header.request_id] = packet
    replies = [by_id[r] for r in range(100, 120)]
    codes = [r.code for r in replies]
    # The burst was served (and refused on its merits), the rest not.
    assert codes[:5] == [ErrorCode.NO_SUCH_GROUP] * 5
    assert codes.count(ErrorCode.RATE_LIMITED) >= 10
    assert not any(r.will_close for r in replies)
    peer.send_packet(Ping(), request_id=200)
    assert next_reply(peer, 200) == Pong()


# -- bad input ----------------------------------------------------------------


def test_nothing_but_login_and_ping_is_taken_before_login(server):
    bob = server.login("bob")
    peer = server.raw()
    peer.send_packet(Ping(), request_id=7)
    assert peer.next_packet()[1] == Pong()
    peer.send_packet(SendToUser("c-1", "bob", 1, b"sneaky"), request_id=8)
    header, error = peer.next_packet()
    assert isinstance(error, Error) and error.code == ErrorCode.NOT_LOGGED_IN
    assert header.request_id == 8
    assert nothing_more(bob) == []


def test_a_bad_token_is_refused_and_the_connection_closed(server):
    peer = server.raw()
    reply = peer.login("not-a-token")
    assert reply.code == ErrorCode.BAD_TOKEN
    assert peer.packets_until_closed() == []
    expired = server.raw()
    reply = expired.login(
        server.token("alice", ttl=60, now=time.time() - 3600)
    )
    assert reply.code == ErrorCode.TOKEN_EXPIRED


def test_garbage_closes_only_the_connection_that_sent_it(server):
    alice = server.login("alice")
    bob = server.login("bob")
    http = server.raw()
    http.send(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
    # "GET " read as a length is 1.2 GB: refused on its four bytes.
    [error] = http.packets_until_closed(timeout=2.0)
    assert error.code == ErrorCode.FRAME_TOO_LONG and error.will_close
    # In the protocol's units (docs/protocol.md): the bytes after the
    # length prefix, against MAX_FRAME_SIZE, as the client's reader says.
    assert error.text == (
        f"peer announced a frame of {int.from_bytes(b'GET ', 'big')} "
        f"bytes, more than {MAX_FRAME_SIZE}"
    )
    bad_magic = server.raw()
    bad_magic.send(len(b"hello, world").to_bytes(4, "big") + b"hello, world")
    [error] = bad_magic.packets_until_closed(timeout=2.0)
    assert error.code == ErrorCode.BAD_MAGIC and error.will_close
    # The others never noticed.
    alice.send_to_user("bob", "still here")
    assert bob.next_push(timeout=DEADLINE).content == b"still here"


def test_text_that_is_not_utf8_is_refused_and_the_connection_kept(server):
    bob = server.login("bob")
    peer = server.raw()
    assert isinstance(peer.login(server.token("alice")), LoginOk)
    body = bytearray(encode(SendToUser("c-1", "bob", 1, b"ok"), 9))
    body[-2:] = b"\xff\xfe"  # the content's two bytes, now not UTF-8
    peer.send(len(body).to_bytes(4, "big") + body)
    header, error = next_error(peer)
    assert error.code == ErrorCode.INVALID_TEXT and not error.will_close
    assert header.request_id == 9
    peer.send_packet(Ping(), request_id=10)
    assert next_reply(peer, 10) == Pong()
    assert nothing_more(bob) == []


def test_content_over_the_limit_is_refused_and_the_connection_kept(server):
    bob = server.login("bob")
    peer = server.raw()
    assert isinstance(peer.login(server.token("alice")), LoginOk)
    fields = ["c-1", "bob", ContentType.BINARY, b"x" * (MAX_CONTENT_SIZE + 1)]
    body = encode_header(
        PacketType.SEND_TO_USER, 11, Serializer.MSGPACK
    ) + msgpack.packb(fields, use_bin_type=True)
    peer.send(len(body).to_bytes(4, "big") + body)
    header, error = next_error(peer)
    assert error.code == ErrorCode.CONTENT_TOO_LARGE and not error.will_close
    assert header.request_id == 11
    peer.send_packet(Ping(), request_id=12)
    assert next_reply(peer, 12) == Pong()
    assert nothing_more(bob) == []


def test_a_frame_over_the_limit_is_refused_at_its_header(server):
    peer = server.raw()
    assert isinstance(peer.login(server.token("alice")), LoginOk)
    # Announce 100 MB and send only the length: the server must not wait
    # for the body to refuse it.
    peer.send((100 * 1024 * 1024).to_bytes(4, "big"))
    packets = peer.packets_until_closed(timeout=2.0)
    errors = [p for p in packets if isinstance(p, Error)]
    assert [e.code for e in errors] == [ErrorCode.FRAME_TOO_LONG]


def test_an_unknown_recipient_gets_a_clear_error_not_a_crash(server):
    alice = server.login("alice")
    with pytest.raises(RequestError) as refused:
        alice.send_to_group("no-such-group", "hello?")
    assert refused.value.code == ErrorCode.NO_SUCH_GROUP
    assert alice.ping() > 0


def next_error(peer: Any) -> tuple[Any, Error]:
    """The next ERROR, skipping the backlog page sent after login."""
    while True:
        header, packet = peer.next_packet()
        if isinstance(packet, Error):
            return header, packet


def next_reply(peer: Any, request_id: int) -> Any:
    while True:
        header, packet = peer.next_packet()
        if header.request_id == request_id:
            return packet
