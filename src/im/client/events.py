"""What a client session reports after reading a frame: events.

The session (``session.py``) turns each frame body from the server into
a short list of these. They are plain values, so the same session
serves a blocking script, a reactor callback and a test alike; the
transport decides what to do with each (complete a waiting request,
call the application, close the connection).

Which event, when:

=====================  ==================================================
``ReplyReceived``      the answer to a request this session is waiting
                       for (ERROR and LOGIN_FAILED included)
``UnexpectedReply``    a reply whose type cannot answer the request its
                       id names: a server bug
``StrayReply``         a reply for no request we wait for (one given up
                       after a timeout, usually)
``MessageReceived``    a message this device did not have yet
``BacklogPageReceived``  the server sent a page of this device's backlog
                       on its own (after LOGIN_OK); its new messages
                       come just before it as ``MessageReceived``
``GapDetected``        a message arrived past a hole in its conversation
``SessionKicked``      KICKED: the server ends the session and closes
``ServerErrorReceived``  ERROR about no waiting request (request id 0,
                       or the id of a DELIVERY_ACK)
``ProtocolViolation``  a frame that does not decode; ``error.close``
                       says whether the stream is still usable
``Disconnected``       (from the transport) the connection is gone
=====================  ==================================================
"""

from __future__ import annotations

from dataclasses import dataclass

from im.protocol import Error, Message, Packet, ProtocolError

from .errors import ConnectionLost, code_name

__all__ = [
    "BacklogPageReceived",
    "Disconnected",
    "Event",
    "GapDetected",
    "MessageReceived",
    "ProtocolViolation",
    "ReplyReceived",
    "ServerErrorReceived",
    "SessionKicked",
    "StrayReply",
    "UnexpectedReply",
]


class Event:
    """Base of everything a session or a transport reports."""

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class ReplyReceived(Event):
    """``reply`` answers ``request``, sent with ``request_id``.

    For a SYNC_PAGE, ``fresh`` holds the page's messages that this
    device did not have yet (in page order); it is empty otherwise.
    """

    request_id: int
    request: Packet
    reply: Packet
    fresh: tuple[Message, ...] = ()


@dataclass(frozen=True, slots=True)
class UnexpectedReply(Event):
    """``reply`` carries the id of ``request`` but cannot answer it."""

    request_id: int
    request: Packet
    reply: Packet


@dataclass(frozen=True, slots=True)
class StrayReply(Event):
    """A reply for a request id nobody waits for any more."""

    request_id: int
    reply: Packet


@dataclass(frozen=True, slots=True)
class MessageReceived(Event):
    """A message new to this device. ``synced`` is False for a live
    PUSH, True for one from a page of backlog: one the server sent on
    its own after login, or one fetched by a sync the transport ran by
    itself (to fill a gap)."""

    message: Message
    synced: bool = False


@dataclass(frozen=True, slots=True)
class BacklogPageReceived(Event):
    """A SYNC_PAGE with request id 0: after LOGIN_OK the server sends a
    device's backlog by itself, page after page, before any live PUSH.
    ``fresh`` counts the page's messages new to this device (each was
    reported as ``MessageReceived`` just before); ``complete`` is True
    on the last page, when everything the server held has arrived."""

    fresh: int
    complete: bool


@dataclass(frozen=True, slots=True)
class GapDetected(Event):
    """Seqs ``first_seq``..``last_seq`` of a conversation are missing
    below a message that arrived. Often they are only late (pushes of
    one conversation may overtake each other); a sync fetches them."""

    conversation_id: str
    first_seq: int
    last_seq: int


@dataclass(frozen=True, slots=True)
class SessionKicked(Event):
    """KICKED: the server ends the session; the connection closes."""

    code: int
    reason: str

    @property
    def code_name(self) -> str:
        return code_name(self.code)


@dataclass(frozen=True, slots=True)
class ServerErrorReceived(Event):
    """An ERROR that answers no waiting request. ``request_id`` is 0
    for an error about the connection, or the id of a request that
    expects no reply (DELIVERY_ACK) or that we gave up on."""

    request_id: int
    error: Error

    @property
    def code_name(self) -> str:
        return code_name(self.error.code)


@dataclass(frozen=True, slots=True)
class ProtocolViolation(Event):
    """The server sent a frame we cannot decode."""

    error: ProtocolError


@dataclass(frozen=True, slots=True)
class Disconnected(Event):
    """The connection is gone; ``error`` says why (a ``KickedError``
    after KICKED). Every request still waiting failed with it."""

    error: ConnectionLost
