"""netim's client library, shared by the chat, the tests and the load
generator; and the interactive chat client itself.

Three layers, each usable alone, each built on the one below::

    blocking.Client       blocking calls on a background loop thread:
                          scripts, end-to-end tests, the chat
        |
    connection.Connection the transport: a reactor pipeline, heartbeats,
                          coalesced acks, gap filling; non-blocking, so
                          one loop runs thousands (the load generator)
        |
    session.ClientSession the protocol state, sans I/O: request ids,
                          reply matching, dedupe, cumulative acks,
                          unacked sends; tested with bytes alone

Why this split. Everything that is protocol logic (which id a request
gets, which reply answers it, whether a message is a copy, which ack is
safe) lives in the session, which has no socket, thread or clock, so
it is tested exhaustively with plain values and is the same code under
every transport. The transport adds only what needs a clock or a
socket. The blocking facade adds only waiting. A load generator that
wants raw speed drives ``Connection`` objects on its own loop; a test
that wants readability uses ``Client``.

Delivery, in one paragraph (``tracker`` tells the whole story): each
conversation's messages have seqs 1, 2, 3... and a device acks
cumulatively, so the client keeps, per conversation, the highest seq it
holds with nothing missing below. It drops copies, reports holes, and
acks only what it holds, so an ack never makes the server forget a
message this device lacks. Counting starts from what the server says
(a page of backlog: the server sends one unasked right after LOGIN_OK,
and a sync asks for more), never from a guess.

Sends are idempotent by client message id: each send stays in the
session's outbox until its SERVER_ACK, and ``resend_unacked`` on a new
connection (same session) sends the same ids again.

``chat`` (the terminal client, ``netim chat``) and ``chat_text`` (its
command parsing and message formatting, plain functions) are not
imported here: the chat needs prompt_toolkit, which a load generator
has no use for.
"""

from .blocking import DEFAULT_REQUEST_TIMEOUT, Client
from .connection import (
    DEFAULT_ACK_DELAY,
    DEFAULT_CONNECT_TIMEOUT,
    Connection,
    EventCallback,
)
from .errors import (
    ClientError,
    ConnectionLost,
    KickedError,
    LoginFailedError,
    RequestError,
    RequestTimeout,
    UnexpectedReplyError,
    code_name,
)
from .events import (
    BacklogPageReceived,
    Disconnected,
    Event,
    GapDetected,
    MessageReceived,
    ProtocolViolation,
    ReplyReceived,
    ServerErrorReceived,
    SessionKicked,
    StrayReply,
    UnexpectedReply,
)
from .session import (
    CLIENT_VERSION,
    DEFAULT_HISTORY_LIMIT,
    DEFAULT_SYNC_LIMIT,
    ClientSession,
    Request,
)
from .tracker import DeliveryTracker, Receipt

__all__ = [
    "CLIENT_VERSION",
    "DEFAULT_ACK_DELAY",
    "DEFAULT_CONNECT_TIMEOUT",
    "DEFAULT_HISTORY_LIMIT",
    "DEFAULT_REQUEST_TIMEOUT",
    "DEFAULT_SYNC_LIMIT",
    "BacklogPageReceived",
    "Client",
    "ClientError",
    "ClientSession",
    "Connection",
    "ConnectionLost",
    "DeliveryTracker",
    "Disconnected",
    "Event",
    "EventCallback",
    "GapDetected",
    "KickedError",
    "LoginFailedError",
    "MessageReceived",
    "ProtocolViolation",
    "Receipt",
    "ReplyReceived",
    "Request",
    "RequestError",
    "RequestTimeout",
    "ServerErrorReceived",
    "SessionKicked",
    "StrayReply",
    "UnexpectedReply",
    "UnexpectedReplyError",
    "code_name",
]
