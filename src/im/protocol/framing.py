"""The length prefix, for peers that do not run the reactor.

On a TCP stream every frame body travels behind a 4-byte big-endian
length (the length of the body alone). The server's pipeline adds and
strips it with the codec package's prepender and frame decoder; the
client library and the load generator use these two instead:
``add_length_prefix`` on the way out, a ``FrameReader`` on the way in.
"""

from __future__ import annotations

import struct
from typing import Final

from .constants import LENGTH_PREFIX_SIZE, MAX_FRAME_SIZE
from .errors import FrameTooLongError

__all__ = ["FrameReader", "add_length_prefix", "frame_too_long"]

_PREFIX: Final = struct.Struct(">I")
assert _PREFIX.size == LENGTH_PREFIX_SIZE


def add_length_prefix(body: bytes) -> bytes:
    """``body`` with its length in front: one frame, ready to send."""
    return _PREFIX.pack(len(body)) + body


class FrameReader:
    """Cut frame bodies out of a byte stream, incrementally.

    ``feed`` takes whatever the socket gave, in any split, and returns
    the frame bodies it completed (often none; sometimes several). The
    bytes of an unfinished frame wait in the reader; nothing else does.

    A length over ``max_frame_size`` raises ``FrameTooLongError`` as soon
    as its four bytes are in, before the frame is buffered: a peer cannot
    make us hold more than one frame's worth by announcing a huge one.
    The error breaks the stream, so the reader stays failed: every later
    ``feed`` raises the same error. (Frames completed by the failing
    ``feed`` ahead of the bad length are not returned; the connection is
    going down anyway.)
    """

    __slots__ = ("_buffer", "_error", "max_frame_size")

    def __init__(self, max_frame_size: int = MAX_FRAME_SIZE) -> None:
        if not 0 < max_frame_size <= 0xFFFF_FFFF:
            raise ValueError(
                f"max_frame_size must be in 1..2**32-1, got {max_frame_size}"
            )
        self.max_frame_size = max_frame_size
        self._buffer = bytearray()
        self._error: FrameTooLongError | None = None

    @property
    def buffered(self) -> int:
        """Bytes received that are not yet part of a returned frame."""
        return len(self._buffer)

    def feed(self, data: bytes | bytearray | memoryview) -> list[bytes]:
        """Add ``data``; return the frame bodies now complete, in order."""
        if self._error is not None:
            raise self._error
        buffer = self._buffer
        buffer += data
        frames: list[bytes] = []
        start = 0
        with memoryview(buffer) as view:
            while len(buffer) - start >= LENGTH_PREFIX_SIZE:
                (length,) = _PREFIX.unpack_from(buffer, start)
                self._check_length(length)
                end = start + LENGTH_PREFIX_SIZE + length
                if end > len(buffer):
                    break  # the rest of this frame is still on its way
                frames.append(bytes(view[start + LENGTH_PREFIX_SIZE : end]))
                start = end
        # One cut per feed, not one per frame: each cut moves the bytes
        # that follow it.
        del buffer[:start]
        return frames

    def _check_length(self, length: int) -> None:
        if length > self.max_frame_size:
            self._error = frame_too_long(length, self.max_frame_size)
            raise self._error


def frame_too_long(
    length: int, limit: int = MAX_FRAME_SIZE
) -> FrameTooLongError:
    """The error for a length prefix that announces ``length`` bytes
    after it, more than ``limit``: the words every netim peer uses,
    whichever decoder found it. (The reactor's decoder counts the prefix
    in a frame's length; convert its figure before calling this.)"""
    return FrameTooLongError(
        f"peer announced a frame of {length} bytes, more than {limit}"
    )
