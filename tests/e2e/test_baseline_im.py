"""End to end: the benchmark's peer baseline, bench/baseline/asyncio_im.py,
as a real process, driven by netim's own client library.

The baseline only counts as a peer if the clients that drive netim's
server drive it too, so everything here goes through ``im.client`` (or a
plain socket, for what no client sends). It runs once on the stock
asyncio loop and once on uvloop. One server per loop serves the whole
module, to keep the suite fast; each test has users of its own (see
``user``), so the tests do not see each other's messages.
"""

from __future__ import annotations

import itertools
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from im_process import DEADLINE, SECRET, ImServer, wait_for

from im.client import (
    Client,
    ConnectionLost,
    Event,
    KickedError,
    LoginFailedError,
    RequestError,
    ServerErrorReceived,
)
from im.domain.ids import ConversationId, UserId
from im.infrastructure.tokens import issue_token
from im.protocol import (
    MAX_CONTENT_SIZE,
    ContentType,
    Error,
    ErrorCode,
    LoginOk,
    Message,
    Ping,
    Pong,
    SendToUser,
    ServerAck,
    SyncPage,
    SyncRequest,
    add_length_prefix,
)

BASELINE = Path(__file__).resolve().parents[2] / "bench/baseline/asyncio_im.py"


class BaselineServer(ImServer):
    """The baseline in place of ``netim serve``; the clients, tokens and
    teardown (killed whatever happens) are ``ImServer``'s."""

    def __init__(
        self, workdir: Path, loop: str, options: Iterable[str] = ()
    ) -> None:
        super().__init__(workdir, options)
        self.loop = loop

    def command(self) -> list[str]:
        return [
            sys.executable, str(BASELINE),
            "--host", self.host, "--port", str(self.port),
            "--secret", SECRET.hex(), "--loop", self.loop,
            *self.options,
        ]  # fmt: skip


@pytest.fixture(scope="module", params=["asyncio", "uvloop"])
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[BaselineServer]:
    baseline = BaselineServer(tmp_path_factory.mktemp("im"), request.param)
    try:
        yield baseline.start()
    finally:
        baseline.close()


_tests = itertools.count(1)


@pytest.fixture
def user() -> Callable[[str], str]:
    """``user("alice")``: a user id that belongs to this test alone."""
    test = next(_tests)
    return lambda name: f"{name}.{test}"


def nothing_more(client: Client) -> list[Message]:
    """What ``client`` was pushed beyond what the test read, once a ping
    has made the round trip (replies and pushes leave in order)."""
    client.ping()
    return client.drain_pushes()


def errors_of(events: list[Event]) -> list[int]:
    return [e.error.code for e in events if isinstance(e, ServerErrorReceived)]


# -- sessions -----------------------------------------------------------------


def test_login_answers_with_the_defaults_and_an_empty_backlog(server, user):
    alice = user("alice")
    client = server.connect()
    ok = client.login(server.token(alice), "phone")
    assert (ok.user_id, ok.device_id) == (alice, "phone")
    assert (ok.heartbeat_interval, ok.idle_timeout) == (30, 90)
    assert abs(ok.server_time - time.time() * 1000) < 60_000
    assert client.wait_backlog(timeout=DEADLINE) == 0
    assert client.ping() > 0


def test_a_bad_or_expired_token_is_refused_and_closed(server, user):
    forged = issue_token(b"not the secret", user("mallory"))
    expired = server.token(user("alice"), ttl=60, now=time.time() - 3600)
    for token, code in (
        (forged, ErrorCode.BAD_TOKEN),
        (expired, ErrorCode.TOKEN_EXPIRED),
    ):
        client = server.connect()
        with pytest.raises(LoginFailedError) as refused:
            client.login(token, "phone")
        assert refused.value.code == code
        wait_for(lambda c=client: not c.is_open, "the close after refusal")


def test_a_second_login_of_a_device_kicks_the_first(server, user):
    alice, bob = user("alice"), user("bob")
    first = server.login(alice, "phone")
    second = server.login(alice, "phone")
    with pytest.raises(KickedError) as kicked:
        first.next_push(timeout=DEADLINE)
    assert kicked.value.code == ErrorCode.REPLACED
    server.login(bob).send_to_user(alice, "still there?")
    assert second.next_push(timeout=DEADLINE).content == b"still there?"


def test_only_login_and_ping_are_served_before_login(server, user):
    peer = server.raw()
    peer.send_packet(Ping(), request_id=7)
    assert peer.next_packet()[1] == Pong()
    peer.send_packet(SendToUser("c-1", user("bob"), 1, b"early"), 8)
    header, error = peer.next_packet()
    assert isinstance(error, Error)
    assert error.code == ErrorCode.NOT_LOGGED_IN and not error.will_close
    assert header.request_id == 8
    assert isinstance(peer.login(server.token(user("alice"))), LoginOk)
    assert peer.next_packet()[1] == SyncPage((), False, "")
    # Sync is what the baseline leaves out: refused, connection kept.
    peer.send_packet(SyncRequest("", (), 10), request_id=9)
    header, error = peer.next_packet()
    assert isinstance(error, Error) and header.request_id == 9
    assert error.code == ErrorCode.UNEXPECTED_PACKET and not error.will_close
    # A frame that is not ours ends the connection, after saying why.
    peer.send(add_length_prefix(b"hello, world"))
    [error] = peer.packets_until_closed()
    assert error.code == ErrorCode.BAD_MAGIC and error.will_close


def test_a_silent_connection_is_closed_after_the_idle_timeout(tmp_path):
    options = ["--heartbeat-interval", "1", "--idle-timeout", "1"]
    server = BaselineServer(tmp_path, "asyncio", options)
    try:
        server.start()
        silent = server.login("alice", heartbeat=False)
        assert silent.login_ok is not None
        assert silent.login_ok.idle_timeout == 1
        beating = server.raw()
        beating.login(server.token("bob"))
        started = time.monotonic()
        # The one that pings outlives the silent one by half a timeout.
        while time.monotonic() - started < 1.5:
            beating.send_packet(Ping(), request_id=2)
            time.sleep(0.25)
        assert not silent.is_open
        with pytest.raises(ConnectionLost):
            silent.next_push(timeout=DEADLINE)
        assert "closed: idle timeout" in server.log()
        beating.send_packet(Ping(), request_id=3)
        while (reply := beating.next_packet())[0].request_id != 3:
            pass  # the earlier pongs, and the backlog's page
        assert reply[1] == Pong()
    finally:
        server.close()


# -- messages -----------------------------------------------------------------


def test_a_direct_message_is_pushed_to_every_other_device(server, user):
    alice, bob = user("alice"), user("bob")
    alice_phone = server.login(alice, "phone")
    alice_laptop = server.login(alice, "laptop")
    events: list[Event] = []
    bob_phone = server.login(bob, "phone", on_event=events.append)
    bob_tablet = server.login(bob, "tablet")
    conversation = ConversationId.direct(UserId(alice), UserId(bob)).value

    ack = alice_phone.send_to_user(bob, "hello, bob")
    assert (ack.conversation_id, ack.seq) == (conversation, 1)
    for device in (bob_phone, bob_tablet, alice_laptop):
        message = device.next_push(timeout=DEADLINE)
        assert (message.message_id, message.seq) == (ack.message_id, 1)
        assert (message.from_user, message.from_device) == (alice, "phone")
        assert (message.to, message.content) == (bob, b"hello, bob")
        assert message.conversation_id == conversation
    reply = bob_tablet.send_to_user(alice, "hello, alice")
    assert (reply.conversation_id, reply.seq) == (conversation, 2)
    for device in (alice_phone, alice_laptop, bob_phone):
        assert device.next_push(timeout=DEADLINE).seq == 2
    assert nothing_more(bob_tablet) == []  # the sender has its ack

    # DELIVERY_ACK gets no reply, unless it names a stranger's
    # conversation.
    bob_phone.ack(conversation, 2)
    assert nothing_more(bob_phone) == []
    assert errors_of(events) == []
    bob_phone.ack("d:" + "0" * 40, 1)
    wait_for(
        lambda: errors_of(events) == [ErrorCode.NO_SUCH_CONVERSATION],
        "the refused ack",
    )


def test_a_resent_client_message_id_is_stored_once(server, user):
    alice, bob = user("alice"), user("bob")
    phone = server.login(alice, "phone")
    laptop = server.login(alice, "laptop")
    receiver = server.login(bob)
    first = phone.send_to_user(bob, "once", client_message_id="m-1")
    # The same id again, from the same device or another of the user's:
    # the first ack, and nothing new stored or pushed.
    assert phone.send_to_user(bob, "once", client_message_id="m-1") == first
    assert laptop.send_to_user(bob, "once", client_message_id="m-1") == first
    after = phone.send_to_user(bob, "twice", client_message_id="m-2")
    assert after.seq == first.seq + 1 == 2
    for device in (receiver, laptop):
        received = [device.next_push(timeout=DEADLINE) for _ in range(2)]
        assert [m.content for m in received] == [b"once", b"twice"]
        assert [m.seq for m in received] == [1, 2]
        assert nothing_more(device) == []


def test_a_device_that_stops_reading_is_cut_off(server, user):
    alice, bob = user("alice"), user("bob")
    sender = server.login(alice)
    stalled = server.raw(receive_buffer=4096)
    assert isinstance(stalled.login(server.token(bob), "phone"), LoginOk)
    # 64 KiB messages, 16 MiB in all: past what the kernel queues (a few
    # MB) and the 8 MiB that the baseline lets wait for a reader.
    content = b"\x00" * MAX_CONTENT_SIZE
    with ThreadPoolExecutor(8) as pool:
        acks = list(
            pool.map(
                lambda n: sender.send_to_user(
                    bob, content, ContentType.BINARY, f"big-{n}"
                ),
                range(256),
            )
        )
    assert [a.seq for a in acks] == list(range(1, 257))
    wait_for(
        lambda: f"{bob}/phone] closed: kicked: slow_consumer" in server.log(),
        "the slow reader's disconnection",
    )
    assert sender.ping() > 0


# -- groups -------------------------------------------------------------------


def test_a_group_of_five_sees_every_message_in_seq_order(server, user):
    members = [user(f"member{n}") for n in range(5)]
    clients = [server.login(member) for member in members]
    group = clients[0].create_group("five", members[1:4])
    assert group.conversation_id == f"g:{group.group_id}"
    joined = clients[4].join_group(group.group_id)
    assert joined.conversation_id == group.conversation_id
    assert clients[2].members(group.group_id) == tuple(members)
    per_member = 10
    total = per_member * len(members)
    start = threading.Barrier(len(members))
    acks: dict[str, list[ServerAck]] = {}

    def speak(client: Client, member: str) -> None:
        start.wait(DEADLINE)
        acks[member] = [
            client.send_to_group(group.group_id, f"{member} says {n}")
            for n in range(per_member)
        ]

    speakers = [
        threading.Thread(target=speak, args=pair)
        for pair in zip(clients, members, strict=True)
    ]
    for thread in speakers:
        thread.start()
    for thread in speakers:
        thread.join(DEADLINE)
    assert sorted(acks) == sorted(members)
    views = []
    for client, member in zip(clients, members, strict=True):
        received = [
            client.next_push(timeout=DEADLINE)
            for _ in range(total - per_member)
        ]
        seqs = [m.seq for m in received]
        assert seqs == sorted(set(seqs))  # ascending, each once
        assert all(m.from_user != member for m in received)
        # With its own sends, the whole conversation: 1..total.
        view = {m.seq: m.message_id for m in received}
        view.update({a.seq: a.message_id for a in acks[member]})
        assert sorted(view) == list(range(1, total + 1))
        views.append(view)
        assert nothing_more(client) == []
    assert all(view == views[0] for view in views)


def test_only_members_may_send_to_a_group(server, user):
    owner = server.login(user("owner"))
    outsider = server.login(user("outsider"))
    group = owner.create_group("closed")
    refusals = [
        (lambda: outsider.send_to_group(group.group_id, "let me in")),
        (lambda: outsider.members(group.group_id)),
        (lambda: outsider.leave_group(group.group_id)),
    ]
    for refused_call in refusals:
        with pytest.raises(RequestError) as refused:
            refused_call()
        assert refused.value.code == ErrorCode.NOT_A_MEMBER
    with pytest.raises(RequestError) as refused:
        outsider.send_to_group("no-such-group", "hello?")
    assert refused.value.code == ErrorCode.NO_SUCH_GROUP
    outsider.join_group(group.group_id)
    assert outsider.send_to_group(group.group_id, "hi all").seq == 1
    assert owner.next_push(timeout=DEADLINE).content == b"hi all"
    outsider.leave_group(group.group_id)
    assert owner.members(group.group_id) == (user("owner"),)
    with pytest.raises(RequestError) as refused:
        outsider.send_to_group(group.group_id, "bye")
    assert refused.value.code == ErrorCode.NOT_A_MEMBER
