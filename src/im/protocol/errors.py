"""Error codes on the wire, and what goes wrong in decoding and whose fault
it is.

The peer's faults
-----------------
``ProtocolError`` and its subclasses say that the peer broke the wire
protocol. Each carries what the receiver should send back: an error
``code`` from ``ErrorCode``, the ``request_id`` to echo and the
``serializer`` to answer in (both taken from the header when it could be
read), and ``close``, whether the connection must be closed after the
reply. The rule for ``close`` is the question "can the next frame still
be trusted?":

* ``FatalProtocolError`` (close): the peer does not speak our protocol,
  or not our version of it, or its framing is off. Nothing it sends
  later can be read with confidence.
* ``PacketError`` (stay open): one frame arrived whole and in step, but
  its packet cannot be used. The stream is fine; the peer hears why and
  may carry on.

Our faults
----------
``EncodeError`` is our misuse: a packet whose fields do not fit the
protocol (a wrong type, an over-long id, invalid text, a body over the
cap). It is a ``ValueError`` and never goes on the wire.
"""

from __future__ import annotations

import enum
from typing import ClassVar

from .constants import Serializer

__all__ = [
    "BadHeaderError",
    "BadMagicError",
    "BodyTooLargeError",
    "ContentTooLargeError",
    "EncodeError",
    "ErrorCode",
    "FatalProtocolError",
    "FrameTooLongError",
    "InvalidTextError",
    "MalformedPacketError",
    "PacketError",
    "ProtocolError",
    "UnexpectedPacketError",
    "UnknownPacketTypeError",
    "UnsupportedSerializerError",
    "UnsupportedVersionError",
]


class ErrorCode(enum.IntEnum):
    """Every error code that travels in ERROR, LOGIN_FAILED and KICKED.

    The thousands say the family: 10xx the stream is unusable and the
    connection closes; 11xx one packet was refused and the connection
    stays open; 2xxx session and login; 3xxx messaging and groups; 5xxx
    the server's own failure. Codes are plain integers on the wire, and a
    peer must accept codes it does not know (newer servers add some).
    """

    # -- the stream is unusable: reply, then close ----------------------------
    BAD_MAGIC = 1001
    UNSUPPORTED_VERSION = 1002
    BAD_HEADER = 1003
    FRAME_TOO_LONG = 1004

    # -- one packet refused: reply, stay open ---------------------------------
    UNSUPPORTED_SERIALIZER = 1101
    UNKNOWN_PACKET_TYPE = 1102
    UNEXPECTED_PACKET = 1103
    BODY_TOO_LARGE = 1104
    MALFORMED_BODY = 1105
    INVALID_TEXT = 1106
    CONTENT_TOO_LARGE = 1107

    # -- session: sent by the server's handlers, not by this codec ------------
    NOT_LOGGED_IN = 2001
    BAD_TOKEN = 2002
    TOKEN_EXPIRED = 2003
    ALREADY_LOGGED_IN = 2004
    LOGIN_TIMEOUT = 2005
    REPLACED = 2006
    SLOW_CONSUMER = 2007
    SERVER_SHUTDOWN = 2008

    # -- messaging and groups: sent by the server's use cases -----------------
    RATE_LIMITED = 3001
    NO_SUCH_USER = 3002
    NO_SUCH_GROUP = 3003
    NOT_A_MEMBER = 3004
    NO_SUCH_CONVERSATION = 3005
    INVALID_ARGUMENT = 3006

    # -- the server failed ----------------------------------------------------
    INTERNAL_ERROR = 5001


class ProtocolError(Exception):
    """The peer broke the wire protocol.

    ``request_id`` and ``serializer`` come from the offending frame's
    header when it was readable (0 and msgpack otherwise), so that the
    reply reaches the request that caused it, in a form its sender reads.
    ``packet_type`` is the header's packet type, or None.
    """

    code: ClassVar[ErrorCode]
    close: ClassVar[bool]

    def __init__(
        self,
        message: str,
        *,
        request_id: int = 0,
        serializer: Serializer = Serializer.MSGPACK,
        packet_type: int | None = None,
    ) -> None:
        super().__init__(message)
        self.request_id = request_id
        self.serializer = serializer
        self.packet_type = packet_type


class FatalProtocolError(ProtocolError):
    """The stream cannot be trusted any more: reply, then close."""

    close = True


class FrameTooLongError(FatalProtocolError):
    """A length prefix announced more than the largest frame.

    Raised by ``FrameReader`` as soon as the prefix is in, before any of
    the frame is buffered. An HTTP request or a TLS hello on our port
    usually ends here: its first four bytes read as a huge length.
    """

    code = ErrorCode.FRAME_TOO_LONG


class BadMagicError(FatalProtocolError):
    """The frame body does not start with ``MAGIC``: not our protocol."""

    code = ErrorCode.BAD_MAGIC


class UnsupportedVersionError(FatalProtocolError):
    """Our magic, another version. The reply is written in ours, which a
    newer peer can still read (the first three bytes never change)."""

    code = ErrorCode.UNSUPPORTED_VERSION


class BadHeaderError(FatalProtocolError):
    """The frame body is shorter than a header."""

    code = ErrorCode.BAD_HEADER


class PacketError(ProtocolError):
    """One packet was refused; the stream is in step: reply, stay open."""

    close = False


class UnsupportedSerializerError(PacketError):
    """The header names a serializer we do not have. The reply goes out
    in msgpack, the one serializer every peer must read."""

    code = ErrorCode.UNSUPPORTED_SERIALIZER


class UnknownPacketTypeError(PacketError):
    """The header names a packet type we do not know (perhaps a newer
    peer's: it learns, without losing the connection, that we lack it)."""

    code = ErrorCode.UNKNOWN_PACKET_TYPE


class UnexpectedPacketError(PacketError):
    """A known packet going the wrong way, such as a client sending PUSH."""

    code = ErrorCode.UNEXPECTED_PACKET


class BodyTooLargeError(PacketError):
    """The packet body is longer than ``MAX_BODY_SIZE``."""

    code = ErrorCode.BODY_TOO_LARGE


class ContentTooLargeError(PacketError):
    """A message's content is longer than ``MAX_CONTENT_SIZE``."""

    code = ErrorCode.CONTENT_TOO_LARGE


class MalformedPacketError(PacketError):
    """The body does not parse, or its fields are missing, extra, of the
    wrong type or out of range."""

    code = ErrorCode.MALFORMED_BODY


class InvalidTextError(MalformedPacketError):
    """Text that is not UTF-8: a string field, a TEXT message's content,
    or, under JSON, the body itself."""

    code = ErrorCode.INVALID_TEXT


class EncodeError(ValueError):
    """Our misuse: a packet or an argument that the protocol cannot carry."""
