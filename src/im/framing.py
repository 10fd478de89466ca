"""netim's frames on the reactor: the codec's handlers set up for the
protocol, shared by the server, the client and the load generator.

A frame is a 4-byte big-endian length prefix and a body of at most
MAX_FRAME_SIZE bytes (docs/protocol.md). The reactor's decoder follows
Netty and counts the prefix in a frame's length, so its limit is
MAX_FRAME_SIZE plus the prefix, and its errors give lengths with the
prefix in them; ``in_protocol_units`` turns those back into the
protocol's figures, which every netim peer reports.

``im.protocol`` stays free of the reactor (it is sans-IO); this module
is where the two meet.
"""

from __future__ import annotations

from typing import Final

from codec import (
    LengthFieldBasedFrameDecoder,
    LengthFieldPrepender,
    TooLongFrameError,
)
from im.protocol import LENGTH_PREFIX_SIZE, MAX_FRAME_SIZE, frame_too_long

__all__ = ["PREPENDER", "frame_decoder", "in_protocol_units"]

#: Puts the length prefix in front of each body. It keeps no state per
#: channel, so this one serves every connection.
PREPENDER: Final = LengthFieldPrepender(LENGTH_PREFIX_SIZE)


def frame_decoder(
    *, close_on_error: bool = True
) -> LengthFieldBasedFrameDecoder:
    """A decoder that hands on frame bodies (the prefix stripped) and
    refuses a prefix over MAX_FRAME_SIZE as soon as it is read."""
    return LengthFieldBasedFrameDecoder(
        MAX_FRAME_SIZE + LENGTH_PREFIX_SIZE,
        0,
        LENGTH_PREFIX_SIZE,
        0,
        LENGTH_PREFIX_SIZE,
        close_on_error=close_on_error,
    )


def in_protocol_units(error: BaseException) -> BaseException:
    """``error``, with a too-long frame told as the protocol counts it:
    the bytes after the prefix, against MAX_FRAME_SIZE. Other errors
    are returned as they are."""
    if isinstance(error, TooLongFrameError) and error.frame_length is not None:
        return frame_too_long(error.frame_length - LENGTH_PREFIX_SIZE)
    return error
