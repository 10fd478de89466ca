"""What can go wrong in framing, and whose fault it is.

Decoding errors are the peer's fault: it sent a length field that no
valid frame can carry. They derive from ``FrameError`` (a ``ValueError``)
and carry the numbers that were wrong, so a server can log them or turn
them into a protocol error reply.

Encoding errors are ours: the application wrote a message that the
configured length field cannot describe.

The message texts are built here, in one place, because both builds of
the frame scanner (compiled and pure Python) must raise the very same
errors with the very same words; the differential tests compare them.
"""

from __future__ import annotations

__all__ = [
    "CorruptedFrameError",
    "FrameError",
    "LengthFieldOverflowError",
    "TooLongFrameError",
]


class FrameError(ValueError):
    """The peer violated the framing protocol; the stream is not usable.

    ``frame_length`` is the whole frame length the peer announced (header
    included, after ``length_adjustment``), or None when it could not be
    computed.
    """

    def __init__(self, message: str, frame_length: int | None) -> None:
        super().__init__(message)
        self.frame_length = frame_length


class TooLongFrameError(FrameError):
    """The peer announced a frame larger than ``max_frame_length``."""

    def __init__(
        self, message: str, frame_length: int, max_frame_length: int
    ) -> None:
        super().__init__(message, frame_length)
        self.max_frame_length = max_frame_length


class CorruptedFrameError(FrameError):
    """The peer sent a length that no frame can have (negative, shorter
    than its own header, or shorter than the bytes to strip)."""


class LengthFieldOverflowError(ValueError):
    """Our misuse: a message's length does not fit the length field."""


# -- message builders shared by both scanner builds ---------------------------


def too_long(frame_length: int, max_frame_length: int) -> TooLongFrameError:
    return TooLongFrameError(
        f"peer announced a frame of {frame_length} bytes, more than "
        f"max_frame_length={max_frame_length}",
        frame_length,
        max_frame_length,
    )


def negative_length(raw: int) -> CorruptedFrameError:
    return CorruptedFrameError(
        f"peer sent a negative 8-byte length field ({raw}); the stream "
        "is corrupted",
        None,
    )


def shorter_than_header(
    frame_length: int, header_end: int
) -> CorruptedFrameError:
    return CorruptedFrameError(
        f"peer announced a frame of {frame_length} bytes, shorter than "
        f"the {header_end} bytes up to the end of its length field; the "
        "stream is corrupted",
        frame_length,
    )


def shorter_than_strip(
    frame_length: int, initial_bytes_to_strip: int
) -> CorruptedFrameError:
    return CorruptedFrameError(
        f"peer announced a frame of {frame_length} bytes, fewer than "
        f"initial_bytes_to_strip={initial_bytes_to_strip}; the stream "
        "is corrupted",
        frame_length,
    )
