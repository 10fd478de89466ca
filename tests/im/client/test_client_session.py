"""ClientSession, sans I/O: requests are bytes out, replies are bytes in.

The "server" here is ``reply``: it encodes a packet with
``im.protocol`` exactly as a server would, and the session reads it.
"""

from __future__ import annotations

import itertools

import pytest

from im.client import (
    BacklogPageReceived,
    ClientSession,
    GapDetected,
    MessageReceived,
    ProtocolViolation,
    ReplyReceived,
    ServerErrorReceived,
    SessionKicked,
    StrayReply,
    UnexpectedReply,
)
from im.protocol import (
    JSON,
    MAX_CONTENT_SIZE,
    ChatType,
    ContentType,
    ConversationSeq,
    DeliveryAck,
    Direction,
    EncodeError,
    Error,
    ErrorCode,
    FrameReader,
    GroupCreated,
    Kicked,
    Login,
    LoginOk,
    Message,
    Packet,
    Ping,
    Pong,
    Push,
    SendToGroup,
    SendToUser,
    ServerAck,
    SyncPage,
    SyncRequest,
    decode,
    encode,
)

C = "d:alice-bob"


def reply(packet: Packet, request_id: int = 0) -> bytes:
    return encode(packet, request_id)


def sent(data: bytes) -> Packet:
    _, packet = decode(data, Direction.TO_SERVER)
    return packet


def message(seq: int, conversation: str = C, text: str = "hi") -> Message:
    return Message(
        message_id=1000 + seq,
        conversation_id=conversation,
        seq=seq,
        chat_type=ChatType.DIRECT,
        from_user="bob",
        from_device="phone",
        to="alice",
        timestamp=1_700_000_000_000 + seq,
        content_type=ContentType.TEXT,
        content=text.encode(),
    )


def push(seq: int, conversation: str = C) -> bytes:
    return reply(Push(message(seq, conversation)))


def counting_ids() -> ClientSession:
    counter = itertools.count(1)
    return ClientSession(new_message_id=lambda: f"m{next(counter)}")


def synced(session: ClientSession, *messages: Message) -> list:
    """Run a one-page sync holding ``messages``; the session's events."""
    request = session.sync_request()
    page = SyncPage(tuple(messages), False, "")
    return session.receive(reply(page, request.request_id))


def ack_packets(session: ClientSession) -> list[Packet]:
    return [sent(r.data) for r in session.take_delivery_acks()]


# -- request ids --------------------------------------------------------------


def test_request_ids_count_up_from_one():
    session = ClientSession()
    ids = [session.ping().request_id for _ in range(3)]
    assert ids == [1, 2, 3]
    assert session.waiting == 3


def test_request_ids_wrap_to_one_and_skip_ids_still_waiting():
    session = ClientSession()
    first = session.ping()  # id 1, left waiting
    # Jump to the end of the u32 range rather than sending 2**32 pings.
    session._next_id = 0xFFFF_FFFF
    assert session.ping().request_id == 0xFFFF_FFFF
    assert session.ping().request_id == 2  # 1 is still waiting
    session.receive(reply(Pong(), first.request_id))
    session._next_id = 1
    assert session.ping().request_id == 1  # free again


def test_a_request_is_a_frame_body_and_frame_adds_the_prefix():
    session = ClientSession()
    request = session.login("t0k3n", "phone")
    assert sent(request.data) == Login("t0k3n", "phone", "netim-client/0.1")
    assert FrameReader().feed(request.frame()) == [request.data]


def test_the_chosen_serializer_is_used():
    session = ClientSession(serializer=JSON)
    data = session.ping().data
    assert data[3] == JSON
    assert sent(data) == Ping()


def test_delivery_acks_do_not_wait_for_a_reply():
    session = ClientSession()
    request = session.delivery_ack(C, 3)
    assert sent(request.data) == DeliveryAck(C, 3)
    assert not session.is_waiting(request.request_id)


# -- replies ------------------------------------------------------------------


def test_a_reply_is_matched_to_its_request():
    session = ClientSession()
    request = session.login("t", "phone")
    ok = LoginOk("alice", "phone", "s1", 30, 90, 1_700_000_000_000)
    events = session.receive(reply(ok, request.request_id))
    assert events == [ReplyReceived(request.request_id, request.packet, ok)]
    assert session.login_ok == ok
    assert session.waiting == 0


def test_an_error_reply_answers_its_request():
    session = ClientSession()
    request = session.create_group("g", ["bob"])
    error = Error(ErrorCode.NO_SUCH_USER, "no user bob", False)
    (event,) = session.receive(reply(error, request.request_id))
    assert event == ReplyReceived(request.request_id, request.packet, error)


def test_a_reply_of_the_wrong_type_is_reported_not_trusted():
    session = ClientSession()
    request = session.ping()
    created = GroupCreated("g1", "g:g1", "team")
    events = session.receive(reply(created, request.request_id))
    assert events == [
        UnexpectedReply(request.request_id, request.packet, created)
    ]
    assert not session.is_waiting(request.request_id)


def test_a_reply_for_no_waiting_request_is_a_stray():
    session = ClientSession()
    request = session.ping()
    assert session.forget(request.request_id) == Ping()
    events = session.receive(reply(Pong(), request.request_id))
    assert events == [StrayReply(request.request_id, Pong())]


def test_an_error_about_no_waiting_request_is_unsolicited():
    session = ClientSession()
    ack = session.delivery_ack(C, 1)  # expects no reply
    error = Error(ErrorCode.NO_SUCH_CONVERSATION, "no", False)
    assert session.receive(reply(error, ack.request_id)) == [
        ServerErrorReceived(ack.request_id, error)
    ]
    assert session.receive(reply(error)) == [ServerErrorReceived(0, error)]


def test_kicked_is_reported():
    session = ClientSession()
    (event,) = session.receive(reply(Kicked(ErrorCode.REPLACED, "newer")))
    assert event == SessionKicked(ErrorCode.REPLACED, "newer")
    assert event.code_name == "REPLACED"


def test_a_frame_that_does_not_decode_is_a_protocol_violation():
    session = ClientSession()
    (event,) = session.receive(b"GET / HTTP/1.1")
    assert isinstance(event, ProtocolViolation)
    assert event.error.code == ErrorCode.BAD_MAGIC
    assert event.error.close
    # A client-to-server packet coming our way: refused, stream usable.
    (event,) = session.receive(encode(Ping(), 1))
    assert isinstance(event, ProtocolViolation)
    assert not event.error.close


# -- delivery -----------------------------------------------------------------


def test_pushes_are_delivered_once_even_when_a_sync_brings_them_again():
    session = ClientSession()
    assert session.receive(push(1)) == [MessageReceived(message(1))]
    assert session.receive(push(1)) == []  # the same push twice
    events = synced(session, message(1), message(2))
    (event,) = events
    assert event.fresh == (message(2),)
    assert session.duplicates == 2


def test_the_backlog_sent_after_login_is_reported_message_by_message():
    session = ClientSession()
    first = SyncPage((message(1), message(2)), True, "after 2")
    assert session.receive(reply(first)) == [
        MessageReceived(message(1), synced=True),
        MessageReceived(message(2), synced=True),
        BacklogPageReceived(2, complete=False),
    ]
    assert not session.synced
    # A copy (the same message in a sync of the device's own) is dropped.
    last = SyncPage((message(2), message(3)), False, "")
    assert session.receive(reply(last)) == [
        MessageReceived(message(3), synced=True),
        BacklogPageReceived(1, complete=True),
    ]
    assert session.synced
    assert session.duplicates == 1
    assert ack_packets(session) == [DeliveryAck(C, 3)]


def test_a_push_before_the_end_of_the_backlog_is_acked_after_it():
    session = ClientSession()
    session.receive(push(9, "d:other"))
    assert ack_packets(session) == []
    session.receive(reply(SyncPage((message(4),), False, "")))
    assert sorted(ack_packets(session), key=repr) == sorted(
        [DeliveryAck(C, 4), DeliveryAck("d:other", 9)], key=repr
    )


def test_nothing_is_acked_before_a_sync_finished():
    session = ClientSession()
    session.receive(push(6))
    assert ack_packets(session) == []
    # The backlog had 5 still: acking 6 first would have lost it.
    synced(session, message(5))
    assert ack_packets(session) == [DeliveryAck(C, 6)]


def test_a_conversation_seen_only_in_pushes_is_acked_after_the_sync():
    session = ClientSession()
    session.receive(push(8, "d:other"))
    synced(session)  # an empty backlog
    assert session.synced
    assert ack_packets(session) == [DeliveryAck("d:other", 8)]


def test_after_the_sync_new_conversations_are_acked_from_their_push():
    session = ClientSession()
    synced(session)
    session.receive(push(3, "g:team"))
    assert ack_packets(session) == [DeliveryAck("g:team", 3)]


def test_acks_are_cumulative_and_stop_at_a_gap():
    session = ClientSession()
    synced(session, message(1), message(2))
    assert ack_packets(session) == [DeliveryAck(C, 2)]
    events = session.receive(push(5))
    assert events == [GapDetected(C, 3, 4), MessageReceived(message(5))]
    assert ack_packets(session) == []
    session.receive(push(3))
    assert ack_packets(session) == [DeliveryAck(C, 3)]
    session.receive(push(4))
    assert ack_packets(session) == [DeliveryAck(C, 5)]


def test_a_sync_request_names_what_the_device_holds():
    session = ClientSession()
    synced(session, message(1), message(2), message(9, "g:team"))
    request = session.sync_request("7 g:team", limit=50)
    assert sent(request.data) == SyncRequest(
        "7 g:team",
        (ConversationSeq(C, 2), ConversationSeq("g:team", 9)),
        50,
    )


def test_a_lost_connection_forgets_requests_and_the_sync_not_the_device():
    session = ClientSession()
    synced(session, message(1))
    ping = session.ping()
    assert session.connection_lost() == [ping.request_id]
    assert session.waiting == 0
    assert not session.synced
    assert session.login_ok is None
    assert session.receive(push(1)) == []  # still held


# -- sends --------------------------------------------------------------------


def test_a_send_has_a_fresh_client_message_id_and_utf8_content():
    session = ClientSession()
    first = sent(session.send_to_user("bob", "héllo").data)
    second = sent(session.send_to_user("bob", b"\x00\xff", 2).data)
    assert isinstance(first, SendToUser) and isinstance(second, SendToUser)
    assert first.content == "héllo".encode()
    assert first.content_type == ContentType.TEXT
    assert second.content_type == ContentType.BINARY
    assert len(first.client_message_id) == 32
    assert first.client_message_id != second.client_message_id


def test_a_send_stays_unacked_until_its_server_ack():
    session = counting_ids()
    request = session.send_to_group("team", "hi")
    assert session.unacked_sends == (SendToGroup("m1", "team", 1, b"hi"),)
    ack = ServerAck("m1", 77, "g:team", 4, 1_700_000_000_000)
    (event,) = session.receive(reply(ack, request.request_id))
    assert event == ReplyReceived(request.request_id, request.packet, ack)
    assert session.unacked_sends == ()


def test_an_ack_for_another_message_is_unexpected():
    session = counting_ids()
    request = session.send_to_user("bob", "hi")
    ack = ServerAck("someone-else", 77, C, 4, 0)
    (event,) = session.receive(reply(ack, request.request_id))
    assert isinstance(event, UnexpectedReply)
    assert len(session.unacked_sends) == 1


@pytest.mark.parametrize(
    ("code", "kept"),
    [
        (ErrorCode.NO_SUCH_USER, False),
        (ErrorCode.RATE_LIMITED, True),
        (ErrorCode.INTERNAL_ERROR, True),
    ],
)
def test_a_refused_send_is_kept_only_if_retrying_can_help(code, kept):
    session = counting_ids()
    request = session.send_to_user("bob", "hi")
    session.receive(reply(Error(code, "no", False), request.request_id))
    assert bool(session.unacked_sends) is kept


def test_unacked_sends_are_resent_with_their_first_ids():
    session = counting_ids()
    first = session.send_to_user("bob", "one")
    session.send_to_user("bob", "two")
    acked = session.send_to_user("bob", "three")
    session.receive(reply(ServerAck("m3", 3, C, 3, 0), acked.request_id))
    session.connection_lost()
    again = session.resend_unacked()
    assert [sent(r.data) for r in again] == [
        SendToUser("m1", "bob", 1, b"one"),
        SendToUser("m2", "bob", 1, b"two"),
    ]
    assert again[0].request_id != first.request_id
    # Still in flight: not resent twice.
    assert session.resend_unacked() == []


def test_an_explicit_client_message_id_is_used_and_can_be_discarded():
    session = ClientSession()
    session.send_to_user("bob", "hi", client_message_id="mine-1")
    assert session.unacked_sends[0].client_message_id == "mine-1"
    session.discard_send("mine-1")
    assert session.unacked_sends == ()


def test_a_send_the_protocol_refuses_raises_and_is_not_kept():
    session = ClientSession()
    with pytest.raises(EncodeError):
        session.send_to_user("bob", b"x" * (MAX_CONTENT_SIZE + 1), 2)
    with pytest.raises(EncodeError):
        session.send_to_user("bob", b"\xff")  # TEXT that is not UTF-8
    assert session.unacked_sends == ()
    assert session.waiting == 0


def test_the_devices_own_message_counts_towards_its_ack():
    session = ClientSession()
    synced(session, message(1))
    session.take_delivery_acks()
    request = session.send_to_user("bob", "mine")
    ack = ServerAck(request.packet.client_message_id, 9, C, 2, 0)
    session.receive(reply(ack, request.request_id))
    session.receive(push(3))
    assert ack_packets(session) == [DeliveryAck(C, 3)]


def test_an_own_message_acked_during_the_backlog_does_not_skip_one_held():
    # The server holds live pushes while it sends the backlog, but not
    # the SERVER_ACK of the device's own send. So the device can learn
    # of its own seq 5 before someone else's seq 4, which the server
    # sends after the backlog's last page. Taking 5 as the start of
    # the conversation would drop 4 as a copy and ack past it.
    session = ClientSession()
    request = session.send_to_user("bob", "mine")
    ack = ServerAck(request.packet.client_message_id, 9, C, 5, 0)
    session.receive(reply(ack, request.request_id))
    session.receive(reply(SyncPage((), False, "")))  # the last page
    assert ack_packets(session) == []  # nothing known below 5 yet
    assert session.receive(push(4)) == [MessageReceived(message(4))]
    assert ack_packets(session) == [DeliveryAck(C, 5)]
    assert session.duplicates == 0
