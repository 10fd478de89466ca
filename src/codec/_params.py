"""Checks of codec settings, shared by both scanner builds and the
handlers, so that a bad setting fails the same way whichever build runs.

Bad settings are our misuse, found at construction time: a decoder never
meets them in the middle of a stream.
"""

from __future__ import annotations

import operator
from typing import Final

__all__ = [
    "FIELD_LENGTHS",
    "PRESIZE_LIMIT",
    "VALUE_LIMIT",
    "check_decoder",
    "check_field",
]

FIELD_LENGTHS: Final = (1, 2, 3, 4, 8)

# An incomplete frame of up to this many bytes gets a cumulation sized for
# all of it at once: one allocation, where growing as bytes arrive would
# take several. Larger frames grow as their bytes come, so that a peer
# announcing a big frame and then stalling holds only what it sent; this
# way 10,000 stalled peers pin at most 40 MiB. Most chat messages fit.
PRESIZE_LIMIT: Final = 4096

# Every size setting stays below 2**62, so that the compiled scanner can
# add and compare them with a 64-bit raw length without overflowing.
# (Netty's limit is 2**31 - 1; nobody frames exabytes.)
VALUE_LIMIT: Final = (1 << 62) - 1


def _int(name: str, value: object) -> int:
    if isinstance(value, bool):
        raise TypeError(f"{name} must be an int, not bool")
    try:
        number = operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        raise TypeError(
            f"{name} must be an int, not {type(value).__name__}"
        ) from None
    if not -VALUE_LIMIT <= number <= VALUE_LIMIT:
        raise ValueError(f"{name}={number} is out of range (|n| < 2**62)")
    return number


def check_field(length_field_length: object, byteorder: object) -> int:
    """Validate a length field's size and byte order; return the size."""
    length = _int("length_field_length", length_field_length)
    if length not in FIELD_LENGTHS:
        raise ValueError(
            f"length_field_length must be 1, 2, 3, 4 or 8, got {length}"
        )
    if byteorder not in ("big", "little"):
        raise ValueError(
            f"byteorder must be 'big' or 'little', got {byteorder!r}"
        )
    return length


def check_decoder(
    max_frame_length: object,
    length_field_offset: object,
    length_field_length: object,
    length_adjustment: object,
    initial_bytes_to_strip: object,
    byteorder: object,
) -> tuple[int, int, int, int, int]:
    """Validate a frame decoder's settings; return them as plain ints."""
    length = check_field(length_field_length, byteorder)
    maximum = _int("max_frame_length", max_frame_length)
    offset = _int("length_field_offset", length_field_offset)
    adjustment = _int("length_adjustment", length_adjustment)
    strip = _int("initial_bytes_to_strip", initial_bytes_to_strip)
    if maximum <= 0:
        raise ValueError(f"max_frame_length must be > 0, got {maximum}")
    if offset < 0:
        raise ValueError(f"length_field_offset must be >= 0, got {offset}")
    if strip < 0:
        raise ValueError(f"initial_bytes_to_strip must be >= 0, got {strip}")
    if offset > maximum - length:
        # No frame could hold its own length field.
        raise ValueError(
            f"length_field_offset ({offset}) must be <= max_frame_length "
            f"({maximum}) - length_field_length ({length})"
        )
    return maximum, offset, length, adjustment, strip
