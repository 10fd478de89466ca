"""netim's framing codecs: length-field frames on a reactor pipeline.

``LengthFieldBasedFrameDecoder`` cuts an inbound byte stream into frames
(zero-copy ``memoryview`` objects); ``LengthFieldPrepender`` puts the
length field in front of outbound messages. Framing errors are the peer's
fault and derive from ``FrameError``.

The scanning of length fields is compiled with Cython when the extension
was built; ``IMPLEMENTATION`` says whether the compiled build
(``"compiled"``) or its pure-Python twin (``"python"``) is in use, and
``NETIM_PURE_PYTHON=1`` in the environment forces the twin.
"""

from ._impl import IMPLEMENTATION
from .errors import (
    CorruptedFrameError,
    FrameError,
    LengthFieldOverflowError,
    TooLongFrameError,
)
from .frame import LengthFieldBasedFrameDecoder, LengthFieldPrepender

__all__ = [
    "IMPLEMENTATION",
    "CorruptedFrameError",
    "FrameError",
    "LengthFieldBasedFrameDecoder",
    "LengthFieldOverflowError",
    "LengthFieldPrepender",
    "TooLongFrameError",
]
