"""Length-field framing: Netty's LengthFieldBasedFrameDecoder and
LengthFieldPrepender as pipeline handlers.

The decoder is a thin handler around a ``FrameScanner`` (compiled, or its
pure-Python twin; see ``_impl``), which does all the work on the bytes.
Even the handler's ``channel_read`` comes from the scanner's module, so
that with the compiled build a read runs without a Python frame of ours.
Frames leave as zero-copy ``memoryview`` objects of the received storage.

What a framing error does
-------------------------
A bad length is the peer's fault and leaves the stream unusable, so by
default the decoder fires ``exception_caught`` with the error and then
closes the channel. From that moment it drops every byte it receives,
even if the close takes a while. ``close_on_error=False`` leaves the
channel open (the error is still fired) and, for a frame that was only
too long, skips exactly that frame and goes on decoding, as Netty does;
after a corrupted length it still decodes nothing more.

Memory
------
An idle decoder holds no buffer: two small objects (this handler and its
scanner), and a settings object shared by every decoder configured the
same way.
"""

from __future__ import annotations

import functools
import logging
import struct
from collections.abc import Callable
from types import ModuleType
from typing import Any, ClassVar, Final

from reactor.buffer import ByteBuf, BytesLike
from reactor.future import Future
from reactor.pipeline import (
    ChannelHandlerContext,
    ChannelInboundHandler,
    ChannelOutboundHandler,
)

from . import _impl
from ._params import check_decoder, check_field
from .errors import LengthFieldOverflowError

__all__ = ["LengthFieldBasedFrameDecoder", "LengthFieldPrepender"]

_log = logging.getLogger("codec.frame")


@functools.lru_cache(maxsize=64)
def _shared_spec(module: ModuleType, *settings: Any) -> Any:
    # Settings are validated and normalised before they get here, so
    # equal keys really are equal settings.
    return module.FrameSpec(*settings)


class LengthFieldBasedFrameDecoder(ChannelInboundHandler):
    """Split a byte stream into frames by a length field in each header.

    ``max_frame_length``
        Largest frame accepted, measured over the whole frame (header
        included, before stripping). Longer ones are a
        ``TooLongFrameError``, raised as soon as the length field is in.
    ``length_field_offset``
        Bytes before the length field.
    ``length_field_length``
        Size of the length field: 1, 2, 3, 4 or 8 bytes. Fields of up to
        4 bytes are unsigned; an 8-byte field is signed, and a negative
        value is a ``CorruptedFrameError``.
    ``length_adjustment``
        Added to the field's value to get the bytes that follow the
        field; negative when the field counts the header too.
    ``initial_bytes_to_strip``
        Bytes cut from the front of each frame before it is handed on
        (usually the header).
    ``fail_fast``
        With False, a too-long frame is reported only once all its bytes
        have gone by (they are dropped, never buffered), as in Netty.
    ``byteorder``
        ``"big"`` (network order, the default) or ``"little"``.
    ``close_on_error``
        Close the channel after a framing error (the default). See the
        module docstring for what False changes.

    Messages that are ``ByteBuf``, ``bytes``, ``bytearray`` or
    ``memoryview`` are decoded, and become the decoder's: frames are views
    of them. Other messages pass through untouched.
    """

    __slots__ = ("_scanner",)

    #: The scanner build to use; tests set it on a subclass.
    implementation: ClassVar[ModuleType] = _impl.scanner

    # The hot method lives with the scanner, so that the compiled build
    # runs a whole read compiled (see ``decoder_channel_read``).
    channel_read = _impl.scanner.decoder_channel_read

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        own = cls.__dict__
        if "implementation" in own and "channel_read" not in own:
            cls.channel_read = cls.implementation.decoder_channel_read

    def __init__(
        self,
        max_frame_length: int,
        length_field_offset: int,
        length_field_length: int,
        length_adjustment: int = 0,
        initial_bytes_to_strip: int = 0,
        *,
        fail_fast: bool = True,
        byteorder: str = "big",
        close_on_error: bool = True,
    ) -> None:
        settings = check_decoder(
            max_frame_length,
            length_field_offset,
            length_field_length,
            length_adjustment,
            initial_bytes_to_strip,
            byteorder,
        )
        spec = _shared_spec(
            self.implementation,
            *settings,
            bool(fail_fast),
            byteorder,
            not close_on_error,
        )
        self._scanner = self.implementation.FrameScanner(spec)

    @property
    def close_on_error(self) -> bool:
        return not self._scanner.spec.resume_after_too_long

    @property
    def failed(self) -> bool:
        """True after a framing error: nothing more will be decoded."""
        return bool(self._scanner.failed)

    @property
    def cumulation(self) -> ByteBuf | None:
        """The incomplete frame held between reads; None when idle."""
        cumulation: ByteBuf | None = self._scanner.cumulation
        return cumulation

    @property
    def pending_bytes(self) -> int:
        """Bytes received and not yet handed on as a frame."""
        return int(self._scanner.pending_bytes)

    # -- pipeline events ------------------------------------------------------

    def handler_added(self, ctx: ChannelHandlerContext) -> None:
        if self._scanner.stopped:  # re-added after a removal: start over
            self._scanner = type(self._scanner)(self._scanner.spec)

    def channel_inactive(self, ctx: ChannelHandlerContext) -> None:
        # A partial frame cannot be completed any more (Netty's
        # decodeLast would find no frame in it either).
        dropped = self._scanner.drop_pending()
        if dropped and _log.isEnabledFor(logging.DEBUG):
            _log.debug(
                "%r: input ended inside a frame; %d bytes dropped",
                ctx.channel,
                dropped,
            )
        ctx.fire_channel_inactive()

    def handler_removed(self, ctx: ChannelHandlerContext) -> None:
        # Bytes not yet framed go to the next handler, so that a pipeline
        # can switch protocols without losing any (Netty does the same).
        scanner = self._scanner
        scanner.stop()
        if not scanner.busy:
            self._forward_rest(ctx)
        # else: removed by a frame's handler in the middle of a read;
        # channel_read forwards the rest once the scanner returns.

    def _forward_rest(self, ctx: ChannelHandlerContext) -> None:
        rest = self._scanner.take_remainder()
        if rest is not None:
            ctx.fire_channel_read(rest)
            ctx.fire_channel_read_complete()


# The largest value each field size carries, matching what the decoder
# reads back: unsigned up to 4 bytes, signed for 8.
_FIELD_LIMITS: Final = {1: 0xFF, 2: 0xFFFF, 3: 0xFF_FFFF, 4: 0xFFFF_FFFF}
_FIELD_LIMITS_8: Final = (1 << 63) - 1
_STRUCT_CODES: Final = {1: "B", 2: "H", 4: "I", 8: "q"}

# Payloads up to this size are copied behind their header and written as
# one ``bytes``; larger ones go out as two messages, header then the
# payload itself, never copied. Measured through a socket channel's
# outbound path (bench/micro, test_prepend, 1024 writes and one flush):
# for 64-byte payloads one joined message costs two thirds of two (1.06
# against 1.59 us a message), because every message pays a walk through
# the pipeline and an entry in the outbound buffer, while copying 64
# bytes is almost free. The two break even at about 4 KiB (2.61 against
# 2.67 us); at 16 KiB the copy already costs more than the second message.
JOIN_LIMIT: Final = 4096


class LengthFieldPrepender(ChannelOutboundHandler):
    """Put a length field in front of each outbound message.

    The field holds the payload's length, plus ``length_adjustment``,
    plus the field's own size if ``length_includes_length_field``.
    ``LengthFieldPrepender(4)`` pairs with
    ``LengthFieldBasedFrameDecoder(max, 0, 4, 0, 4)``.

    A length that does not fit the field (or is negative) raises
    ``LengthFieldOverflowError`` from ``write``, which fails that write's
    future. Messages other than ``ByteBuf``, ``bytes``, ``bytearray`` and
    ``memoryview`` pass through untouched. The handler keeps no state, so
    one instance may serve every channel.
    """

    __slots__ = (
        "_extra",
        "_limit",
        "_pack",
        "byteorder",
        "length_adjustment",
        "length_field_length",
        "length_includes_length_field",
    )

    sharable = True
    #: Payloads up to this size are joined with their header (see
    #: ``JOIN_LIMIT``); the benchmarks set it on subclasses to compare.
    join_limit: ClassVar[int] = JOIN_LIMIT

    def __init__(
        self,
        length_field_length: int = 4,
        length_adjustment: int = 0,
        *,
        length_includes_length_field: bool = False,
        byteorder: str = "big",
    ) -> None:
        size = check_field(length_field_length, byteorder)
        if isinstance(length_adjustment, bool) or not isinstance(
            length_adjustment, int
        ):
            raise TypeError("length_adjustment must be an int")
        self.length_field_length = size
        self.length_adjustment = length_adjustment
        self.length_includes_length_field = bool(length_includes_length_field)
        self.byteorder = byteorder
        self._extra = length_adjustment + (
            size if length_includes_length_field else 0
        )
        self._limit = _FIELD_LIMITS.get(size, _FIELD_LIMITS_8)
        self._pack: Callable[[int], bytes]
        if size == 3:
            self._pack = functools.partial(
                int.to_bytes,
                length=3,
                byteorder=byteorder,  # type: ignore[arg-type]
            )
        else:
            code = (">" if byteorder == "big" else "<") + _STRUCT_CODES[size]
            self._pack = struct.Struct(code).pack

    def write(
        self, ctx: ChannelHandlerContext, msg: Any, promise: Future | None
    ) -> None:
        payload: BytesLike
        if type(msg) is bytes or type(msg) is bytearray:
            payload = msg
            size = len(msg)
        elif isinstance(msg, ByteBuf):
            payload = msg.view()
            size = len(payload)
        elif isinstance(msg, (bytes, bytearray, memoryview)):
            payload = memoryview(msg)
            if payload.format != "B" or payload.ndim != 1:
                payload = payload.cast("B")
            size = len(payload)
        else:
            ctx.write(msg, promise)
            return
        header = self._header(size)
        if size <= self.join_limit:
            ctx.write(header + payload, promise)
        else:
            # The header's own write needs no future: it leaves before
            # the payload, whose future therefore speaks for both.
            ctx.write(header, None)
            ctx.write(payload, promise)

    def frame(self, payload: bytes) -> bytes:
        """``payload`` behind its length field: the same bytes ``write``
        sends (as one object, where ``write`` may queue two).

        For a message that goes to many channels: framed once, it can be
        written to each one from this handler's own context (which
        passes the handler by), so the header is packed and joined once
        instead of once per channel.
        """
        return self._header(len(payload)) + payload

    def _header(self, size: int) -> bytes:
        length = size + self._extra
        if not 0 <= length <= self._limit:
            raise LengthFieldOverflowError(
                f"cannot prepend length {length} to a {size}-byte message: "
                f"a {self.length_field_length}-byte length field holds "
                f"0..{self._limit} (the message is too long for this "
                "prepender, or length_adjustment makes it negative)"
            )
        return self._pack(length)
