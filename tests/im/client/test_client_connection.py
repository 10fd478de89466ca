"""Connection on an EmbeddedChannel: the transport's timing decisions
(heartbeats, coalesced acks, gap filling) on a clock the test moves,
and how replies and endings reach futures and ``on_event``.

No socket: what the connection writes is read back as frame bodies, and
the server's frames are written in as frame bodies (framing is the
codec's, tested with it; the real-socket tests cover the whole pipe).
"""

from __future__ import annotations

import logging

import pytest

from im.client import (
    ConnectionLost,
    Disconnected,
    Event,
    GapDetected,
    KickedError,
    LoginFailedError,
    MessageReceived,
    RequestError,
    SessionKicked,
    UnexpectedReplyError,
)
from im.client.connection import MAX_MISSED_HEARTBEATS, Connection
from im.protocol import (
    ChatType,
    ContentType,
    DeliveryAck,
    Direction,
    Error,
    ErrorCode,
    GroupLeft,
    Header,
    Kicked,
    LoginFailed,
    LoginOk,
    Message,
    Packet,
    Ping,
    Pong,
    Push,
    ServerAck,
    SyncPage,
    SyncRequest,
    decode,
    encode,
)
from reactor import EmbeddedChannel, Future

C = "d:alice-bob"
HEARTBEAT = 30


class Wire:
    """A Connection in an EmbeddedChannel, and the test's view of it."""

    def __init__(self, **options: object) -> None:
        self.events: list[Event] = []
        self.connection = Connection(on_event=self.events.append, **options)
        self.channel = EmbeddedChannel(self.connection.handler)

    def sent(self) -> list[tuple[Header, Packet]]:
        """Everything written since the last call, decoded."""
        out = []
        while (data := self.channel.read_outbound()) is not None:
            out.append(decode(data, Direction.TO_SERVER))
        return out

    def sent_packets(self) -> list[Packet]:
        return [packet for _, packet in self.sent()]

    def last_request_id(self) -> int:
        (header, _), *_ = self.sent()[-1:]
        return header.request_id

    def answer(self, packet: Packet, request_id: int = 0) -> None:
        self.channel.write_inbound(encode(packet, request_id))

    def answer_each(self, *packets: Packet) -> None:
        """Several frames in one read batch."""
        self.channel.write_inbound(*(encode(p) for p in packets))

    def login(self) -> LoginOk:
        future = self.connection.login("token", "phone")
        ok = LoginOk("alice", "phone", "s1", HEARTBEAT, 90, 0)
        self.answer(ok, self.last_request_id())
        assert future.result() == ok
        return ok

    def sync(self, *messages: Message) -> Future:
        future = self.connection.sync()
        self.answer(
            SyncPage(tuple(messages), False, ""), self.last_request_id()
        )
        return future

    def advance(self, seconds: float) -> None:
        self.channel.advance_time(seconds)

    def of_type(self, kind: type) -> list:
        return [e for e in self.events if isinstance(e, kind)]


def message(seq: int, conversation: str = C) -> Message:
    return Message(
        seq, conversation, seq, ChatType.DIRECT, "bob", "phone", "alice",
        0, ContentType.TEXT, b"hi",
    )  # fmt: skip


# -- replies ------------------------------------------------------------------


def test_a_reply_completes_its_future_with_the_packet():
    wire = Wire()
    future = wire.connection.leave_group("team")
    wire.answer(GroupLeft("team"), wire.last_request_id())
    assert future.result() == GroupLeft("team")


def test_an_error_reply_fails_the_request_with_its_code():
    wire = Wire()
    future = wire.connection.send_to_user("nobody", "hi")
    error = Error(ErrorCode.NO_SUCH_USER, "no user nobody", False)
    wire.answer(error, wire.last_request_id())
    with pytest.raises(RequestError) as caught:
        future.result()
    assert caught.value.code == ErrorCode.NO_SUCH_USER
    assert caught.value.code_name == "NO_SUCH_USER"
    assert caught.value.text == "no user nobody"
    assert "NO_SUCH_USER" in str(caught.value)


def test_login_failed_fails_the_login_and_names_the_close():
    wire = Wire()
    future = wire.connection.login("bad", "phone")
    pending = wire.connection.ping()
    wire.answer(
        LoginFailed(ErrorCode.BAD_TOKEN, "bad signature"),
        wire.sent()[0][0].request_id,
    )
    with pytest.raises(LoginFailedError) as caught:
        future.result()
    assert caught.value.code_name == "BAD_TOKEN"
    wire.channel.close()  # the server closes after LOGIN_FAILED
    wire.channel.run_pending_tasks()
    with pytest.raises(ConnectionLost, match="BAD_TOKEN"):
        pending.result()


def test_a_reply_of_the_wrong_type_fails_the_request():
    wire = Wire()
    future = wire.connection.ping()
    wire.answer(GroupLeft("team"), wire.last_request_id())
    with pytest.raises(UnexpectedReplyError):
        future.result()


def test_a_sync_walks_every_page():
    wire = Wire()
    future = wire.connection.sync(limit=2)
    ((header, request),) = wire.sent()
    assert request == SyncRequest("", (), 2)
    wire.answer(SyncPage((message(1), message(2)), True, "2 d:alice-bob"),
                header.request_id)  # fmt: skip
    ack, (header, request) = wire.sent()
    assert ack[1] == DeliveryAck(C, 2)  # the page is acked at once
    assert isinstance(request, SyncRequest)
    assert request.cursor == "2 d:alice-bob"
    wire.answer(SyncPage((message(3),), False, ""), header.request_id)
    assert future.result() == [message(1), message(2), message(3)]


# -- heartbeat ----------------------------------------------------------------


def test_pings_follow_the_interval_the_server_announced():
    wire = Wire()
    wire.login()
    wire.advance(HEARTBEAT - 1)
    assert wire.sent_packets() == []
    wire.advance(1)
    assert wire.sent_packets() == [Ping()]


def test_a_server_that_answers_nothing_is_presumed_dead():
    wire = Wire()
    wire.login()
    for _ in range(MAX_MISSED_HEARTBEATS):
        wire.advance(HEARTBEAT)
        assert wire.sent_packets() == [Ping()]
    wire.advance(HEARTBEAT)
    (event,) = wire.of_type(Disconnected)
    assert "presumed dead" in event.error.reason
    assert wire.connection.lost is event.error
    assert wire.connection.closed.result() is event.error


def test_any_frame_from_the_server_keeps_the_connection_alive():
    wire = Wire()
    wire.login()
    for _ in range(MAX_MISSED_HEARTBEATS + 2):
        wire.advance(HEARTBEAT)
        ((header, _),) = wire.sent()
        wire.answer(Pong(), header.request_id)
    assert wire.connection.is_open


def test_no_heartbeat_when_disabled():
    wire = Wire(heartbeat=False)
    wire.login()
    wire.advance(HEARTBEAT * 5)
    assert wire.sent_packets() == []
    assert wire.connection.is_open


# -- delivery acks ------------------------------------------------------------


def test_a_burst_of_pushes_is_acked_once_after_the_ack_delay():
    wire = Wire(ack_delay=0.2)
    wire.sync()
    wire.sent()
    wire.answer_each(*(Push(message(seq)) for seq in (1, 2, 3)))
    wire.answer(Push(message(4)))
    assert wire.sent_packets() == []
    wire.advance(0.2)
    assert wire.sent_packets() == [DeliveryAck(C, 4)]
    assert [e.message.seq for e in wire.of_type(MessageReceived)] == [
        1, 2, 3, 4,
    ]  # fmt: skip


def test_each_sync_page_is_acked_as_it_arrives():
    wire = Wire()
    future = wire.sync(message(1), message(2), message(1, "g:team"))
    assert future.done()
    assert sorted(
        (p.conversation_id, p.seq)
        for p in wire.sent_packets()
        if isinstance(p, DeliveryAck)
    ) == [(C, 2), ("g:team", 1)]


def test_no_automatic_acks_when_disabled_but_explicit_ones_go():
    wire = Wire(auto_ack=False)
    wire.sync(message(1))
    wire.sent()
    wire.answer(Push(message(2)))
    wire.advance(10)
    assert wire.sent_packets() == []
    wire.connection.ack(C, 2)
    assert wire.sent_packets() == [DeliveryAck(C, 2)]


def test_closing_sends_the_acks_that_are_due():
    wire = Wire()
    wire.sync()
    wire.sent()
    wire.answer(Push(message(1)))
    wire.connection.close()
    assert wire.sent_packets() == [DeliveryAck(C, 1)]
    wire.channel.run_pending_tasks()
    assert "closed by the client" in str(wire.connection.closed.result())


# -- gaps ---------------------------------------------------------------------


def test_a_gap_that_stays_open_is_filled_by_a_sync():
    wire = Wire(gap_grace=0.5)
    wire.sync(message(1))
    wire.sent()
    wire.answer(Push(message(3)))
    assert wire.of_type(GapDetected) == [GapDetected(C, 2, 2)]
    wire.advance(0.5)
    ((header, request),) = [
        (h, p) for h, p in wire.sent() if isinstance(p, SyncRequest)
    ]
    assert [(r.conversation_id, r.seq) for r in request.received] == [(C, 1)]
    wire.answer(SyncPage((message(2), message(3)), False, ""),
                header.request_id)  # fmt: skip
    filled = [e for e in wire.of_type(MessageReceived) if e.synced]
    assert [e.message.seq for e in filled] == [2]


def test_a_gap_closed_by_a_late_push_needs_no_sync():
    wire = Wire(gap_grace=0.5)
    wire.sync(message(1))
    wire.sent()
    wire.answer(Push(message(3)))
    wire.answer(Push(message(2)))
    wire.advance(0.5)
    assert not any(isinstance(p, SyncRequest) for p in wire.sent_packets())


# -- endings ------------------------------------------------------------------


def test_kicked_fails_what_waits_and_reports_why():
    wire = Wire()
    future = wire.connection.ping()
    wire.answer(Kicked(ErrorCode.REPLACED, "logged in elsewhere"))
    wire.channel.run_pending_tasks()
    with pytest.raises(KickedError) as caught:
        future.result()
    assert caught.value.code_name == "REPLACED"
    assert wire.of_type(SessionKicked) == [
        SessionKicked(ErrorCode.REPLACED, "logged in elsewhere")
    ]
    (event,) = wire.of_type(Disconnected)
    assert event.error is caught.value
    assert not wire.channel.is_open


def test_an_error_that_closes_names_the_close():
    wire = Wire()
    future = wire.connection.ping()
    wire.answer(Error(ErrorCode.LOGIN_TIMEOUT, "too slow", True))
    wire.channel.close()
    wire.channel.run_pending_tasks()
    with pytest.raises(ConnectionLost, match="LOGIN_TIMEOUT"):
        future.result()


def test_requests_after_the_end_fail_at_once():
    wire = Wire()
    wire.channel.close()
    wire.channel.run_pending_tasks()
    future = wire.connection.send_to_user("bob", "hi")
    with pytest.raises(ConnectionLost, match="server closed"):
        future.result()
    # The send is kept for the next connection.
    assert len(wire.connection.session.unacked_sends) == 1
    assert wire.connection.session.waiting == 0


def test_an_abandoned_request_turns_its_late_reply_into_a_stray():
    wire = Wire()
    future = wire.connection.ping()
    request_id = wire.last_request_id()
    wire.connection.abandon(future)
    wire.answer(Pong(), request_id)
    assert not future.done()
    assert wire.events[-1].reply == Pong()


def test_a_failing_callback_is_logged_and_the_connection_goes_on(caplog):
    def explode(event: Event) -> None:
        raise ValueError("application bug")

    wire = Wire()
    wire.connection.on_event = explode
    wire.sync()
    with caplog.at_level(logging.ERROR, logger="im.client"):
        wire.answer(Push(message(1)))
    assert "on_event callback raised" in caplog.text
    assert wire.connection.is_open


def test_own_sends_settle_from_their_ack():
    wire = Wire()
    future = wire.connection.send_to_user("bob", "hi")
    ((header, packet),) = wire.sent()
    ack = ServerAck(packet.client_message_id, 5, C, 1, 0)
    wire.answer(ack, header.request_id)
    assert future.result() == ack
    assert wire.connection.session.unacked_sends == ()
