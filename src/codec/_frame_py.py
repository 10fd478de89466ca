"""The frame scanner in pure Python: the twin of ``_frame.pyx``.

Both modules define the same classes (``FrameSpec``, ``FrameScanner``)
and the same function (``decoder_channel_read``, the decoder handler's
hot method) with the same behaviour, byte for byte: the same frames, the
same errors with the same messages, the same state left behind. The
compiled one is used when it was built; this one when it was not, or when
``NETIM_PURE_PYTHON=1`` asks for it. The test suite runs against both and
compares them on random input. Keep the two files in step: a change to
one is a change to the other, in the same place (the functions appear in
the same order in both).

How a stream is cut into frames
-------------------------------
A frame is ``[prefix][length field][more header][body]``; the length
field says how long the frame is (see ``FrameSpec``). ``feed`` takes the
bytes of one read and hands each complete frame to ``emit`` as a
``memoryview`` of the received storage, in order, with no copy.

When the bytes run out in the middle of a frame, its start is kept in a
cumulation (a ``ByteBuf``). When the next read comes, only the bytes that
complete *that one frame* are copied into it; everything after is again
cut straight from the received storage. So the cumulation never holds
more than one partial frame, a read costs at most one frame's worth of
copying, and between frames nothing is held at all: an idle stream owns
no buffer.

Errors
------
A length that no valid frame can have, or one above the limit, is judged
as soon as the length field is in; no body is waited for and nothing is
allocated according to it. The error goes to ``fail`` (or, with
``feed_to``, into the pipeline, and the channel is closed); from then on
the scanner is *failed* and drops every byte it is given, because a stream
whose framing broke cannot be trusted again. The one exception is opt-in
(``resume_after_too_long``): an oversized frame whose length was
well-formed has a known end, so its bytes can be skipped as they arrive
and framing can resume after it, as Netty does.

Re-entrancy
-----------
``emit`` runs handler code, which may feed this scanner again (a nested
read) or ask it to stop (the handler was removed). A nested feed is
queued and decoded after the current bytes, never interleaved; ``stop``
makes ``feed`` return after the frame being delivered, keeping the rest
for ``take_remainder``. If ``emit`` or ``fail`` raises, the bytes not yet
decoded are kept too and are decoded first on the next ``feed``.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

from reactor.buffer import ByteBuf

from ._params import PRESIZE_LIMIT, check_decoder
from .errors import (
    FrameError,
    negative_length,
    shorter_than_header,
    shorter_than_strip,
    too_long,
)

__all__ = ["FrameScanner", "FrameSpec", "decoder_channel_read"]

Emit = Callable[[memoryview], object]
Fail = Callable[[FrameError], object]

# Readers of the length field: ``read(view, offset)[0]``. Netty reads 1 to
# 4 byte fields unsigned and an 8-byte field signed, so that only an
# 8-byte field can announce a negative length.
_STRUCT_FORMATS = {1: "B", 2: "H", 4: "I", 8: "q"}


def _three_byte_reader(byteorder: Any) -> Callable[[Any, int], tuple[int]]:
    def read(view: memoryview, offset: int) -> tuple[int]:
        return (int.from_bytes(view[offset : offset + 3], byteorder),)

    return read


class FrameSpec:
    """How frames are laid out, and what to do with bad ones.

    A frame measures ``length_field_offset + length_field_length + raw +
    length_adjustment`` bytes, where ``raw`` is the value of the length
    field; that whole length, header included, is what
    ``max_frame_length`` limits. The first ``initial_bytes_to_strip``
    bytes of each frame are left out of the frame handed on.

    A spec is immutable and holds no stream state, so one instance can
    serve every connection with the same settings.
    """

    __slots__ = (
        "_header_end",
        "_lo",
        "_raw_max",
        "_raw_min",
        "_read",
        "byteorder",
        "fail_fast",
        "initial_bytes_to_strip",
        "length_adjustment",
        "length_field_length",
        "length_field_offset",
        "max_frame_length",
        "resume_after_too_long",
    )

    def __init__(
        self,
        max_frame_length: int,
        length_field_offset: int,
        length_field_length: int,
        length_adjustment: int = 0,
        initial_bytes_to_strip: int = 0,
        fail_fast: bool = True,
        byteorder: str = "big",
        resume_after_too_long: bool = False,
    ) -> None:
        maximum, offset, size, adjustment, strip = check_decoder(
            max_frame_length,
            length_field_offset,
            length_field_length,
            length_adjustment,
            initial_bytes_to_strip,
            byteorder,
        )
        self.max_frame_length = maximum
        self.length_field_offset = offset
        self.length_field_length = size
        self.length_adjustment = adjustment
        self.initial_bytes_to_strip = strip
        self.fail_fast = bool(fail_fast)
        self.byteorder = byteorder
        self.resume_after_too_long = bool(resume_after_too_long)
        header_end = offset + size
        self._header_end = header_end
        # frame length = raw + _lo. A frame is acceptable when it covers
        # its header and the bytes to strip and stays within the limit;
        # expressed on the raw value, that is _raw_min <= raw <= _raw_max.
        self._lo = header_end + adjustment
        self._raw_min = max(header_end, strip) - self._lo
        self._raw_max = maximum - self._lo
        if size == 3:
            self._read = _three_byte_reader(byteorder)
        else:
            order = ">" if byteorder == "big" else "<"
            fmt = order + _STRUCT_FORMATS[size]
            self._read = struct.Struct(fmt).unpack_from

    def __repr__(self) -> str:
        return (
            f"FrameSpec(max_frame_length={self.max_frame_length}, "
            f"length_field_offset={self.length_field_offset}, "
            f"length_field_length={self.length_field_length}, "
            f"length_adjustment={self.length_adjustment}, "
            f"initial_bytes_to_strip={self.initial_bytes_to_strip}, "
            f"fail_fast={self.fail_fast}, byteorder={self.byteorder!r}, "
            f"resume_after_too_long={self.resume_after_too_long})"
        )


def _as_view(data: Any) -> memoryview:
    """A fresh one-dimensional byte view of a message's readable bytes.

    Always our own view: the sender may release theirs while we hold
    frames cut from it.
    """
    if type(data) is ByteBuf:
        return data.view()
    if type(data) is bytes or type(data) is bytearray:
        return memoryview(data)
    if isinstance(data, memoryview):
        view = memoryview(data)
        if not view.c_contiguous:
            # Strided views are rare enough to pay for a copy.
            return memoryview(view.tobytes())
        if view.format != "B" or view.ndim != 1:
            view = view.cast("B")
        return view
    if isinstance(data, ByteBuf):
        return data.view()
    if isinstance(data, (bytes, bytearray)):
        return memoryview(data)
    raise TypeError(
        f"cannot decode {type(data).__name__}: the frame scanner takes "
        "ByteBuf, bytes, bytearray or memoryview"
    )


class FrameScanner:
    """The framing state of one byte stream; see the module docstring.

    ``feed(data, emit, fail)`` decodes what it can; ``emit(frame)`` gets
    each frame and ``fail(error)`` each framing error. Needing more bytes
    is not an error: ``feed`` just returns, keeping the partial frame.
    """

    __slots__ = (
        "_backlog",
        "_busy",
        "_cumulation",
        "_discard",
        "_failed",
        "_frame_length",
        "_spec",
        "_stopped",
        "_too_long",
    )

    def __init__(self, spec: FrameSpec) -> None:
        if not isinstance(spec, FrameSpec):
            raise TypeError(
                f"spec must be a FrameSpec, not {type(spec).__name__}"
            )
        self._spec = spec
        # The start of one incomplete frame, or None between frames.
        self._cumulation: ByteBuf | None = None
        # Its length once its header is in, else -1.
        self._frame_length = -1
        # Bytes of an oversized frame still to drop as they arrive.
        self._discard = 0
        # Length of that frame, while its error waits for the drop to
        # finish (fail_fast=False); else 0.
        self._too_long = 0
        # Bytes to decode before anything newer: nested feeds, and the
        # rest of a feed that stopped early. None when empty.
        self._backlog: list[memoryview] | None = None
        self._failed = False
        self._stopped = False
        self._busy = False

    # -- state ----------------------------------------------------------------

    @property
    def spec(self) -> FrameSpec:
        return self._spec

    @property
    def failed(self) -> bool:
        """True after a framing error: everything fed is dropped."""
        return self._failed

    @property
    def stopped(self) -> bool:
        return self._stopped

    @property
    def busy(self) -> bool:
        """True while ``feed`` runs (inside ``emit`` or ``fail``)."""
        return self._busy

    @property
    def cumulation(self) -> ByteBuf | None:
        """The partial frame held between reads; None when idle."""
        return self._cumulation

    @property
    def pending_bytes(self) -> int:
        """Bytes held and not yet handed on."""
        count = 0 if self._cumulation is None else len(self._cumulation)
        if self._backlog is not None:
            for chunk in self._backlog:
                count += len(chunk)
        return count

    # -- operations -----------------------------------------------------------

    def feed(self, data: Any, emit: Emit, fail: Fail) -> None:
        """Decode the bytes of ``data``: each complete frame goes to
        ``emit``, a framing error to ``fail``.

        ``data`` (a ByteBuf, bytes, bytearray or memoryview) becomes the
        scanner's: frames are views of it, and an incomplete frame may
        keep it as the cumulation, so the sender must not change it
        afterwards.
        """
        self._feed(data, emit, fail, None)

    def feed_to(self, data: Any, ctx: Any) -> None:
        """Decode into a pipeline: frames go to ``ctx.fire_channel_read``;
        a framing error to ``ctx.fire_exception_caught``, followed by
        ``ctx.close()`` unless the spec resumes after too-long frames
        (the decoder's ``close_on_error=False``)."""
        self._feed(data, ctx.fire_channel_read, None, ctx)

    def stop(self) -> None:
        """Decode nothing more; keep what is left for ``take_remainder``.

        Called from inside ``emit`` (a handler removed the decoder), the
        current ``feed`` returns right after that frame.
        """
        self._stopped = True

    def take_remainder(self) -> ByteBuf | None:
        """Hand over every byte held, as one buffer; None if there are none.

        The scanner is left empty. A failed scanner hands over nothing.
        """
        cumulation, backlog = self._cumulation, self._backlog
        self._reset()
        if self._failed:
            return None
        if backlog:
            if cumulation is None:
                cumulation = ByteBuf(sum(len(chunk) for chunk in backlog))
            for chunk in backlog:
                cumulation.write_bytes(chunk)
        if cumulation is None or not cumulation.is_readable():
            return None
        return cumulation

    def drop_pending(self) -> int:
        """Forget every byte held (the stream ended); return their count."""
        count = self.pending_bytes
        self._reset()
        return count

    # -- decoding -------------------------------------------------------------

    def _feed(
        self, data: Any, emit: Emit, fail: Fail | None, ctx: Any
    ) -> None:
        if self._failed:
            return
        if self._busy or self._stopped or self._backlog is not None:
            self._park(data)
            if self._busy or self._stopped:
                return
            self._busy = True
            try:
                self._drain(emit, fail, ctx)
            finally:
                self._busy = False
            return
        self._busy = True
        try:
            self._decode(data, emit, fail, ctx)
            if self._backlog is not None:
                self._drain(emit, fail, ctx)
        finally:
            self._busy = False

    def _decode(
        self, data: Any, emit: Emit, fail: Fail | None, ctx: Any
    ) -> None:
        view = _as_view(data)
        end = len(view)
        pos = 0
        spec = self._spec
        header_end = spec._header_end
        offset = spec.length_field_offset
        strip = spec.initial_bytes_to_strip
        lo = spec._lo
        raw_min = spec._raw_min
        raw_max = spec._raw_max
        read = spec._read
        try:
            while pos < end:
                # The rare states first: dropping an oversized frame, or
                # completing the frame that the last read left unfinished.
                if self._discard:
                    pos = self._skip(pos, end, fail, ctx)
                    if self._failed:
                        return
                    continue
                if self._cumulation is not None:
                    pos, frame, raw = self._top_up(view, pos, end)
                    if frame is not None:
                        emit(frame)
                        if self._stopped:
                            break
                    elif raw is not None:
                        pos = self._reject(
                            raw, header_end, pos, end, fail, ctx
                        )
                        if self._failed:
                            return
                    continue
                # The likely case: whole frames back to back in ``view``.
                while True:
                    if end - pos < header_end:
                        if pos < end:
                            self._keep(data, view, pos, end, -1)
                        return
                    raw = read(view, pos + offset)[0]
                    if not raw_min <= raw <= raw_max:
                        break
                    length = raw + lo
                    if end - pos < length:
                        self._keep(data, view, pos, end, length)
                        return
                    start = pos + strip
                    pos += length
                    emit(view[start:pos])
                    if self._stopped:
                        break
                if self._stopped:
                    break
                pos = self._reject(raw, 0, pos, end, fail, ctx)
                if self._failed:
                    return
        except BaseException:
            self._save_rest(view, pos, end)
            raise
        if pos < end:
            self._save_rest(view, pos, end)

    def _top_up(
        self, view: memoryview, pos: int, end: int
    ) -> tuple[int, memoryview | None, int | None]:
        """Copy into the cumulation what completes its frame.

        Returns the new position and either the completed frame, or the
        raw length of a header that turned out bad (the cumulation is
        then dropped: its bytes were that header), or neither (all of
        ``view`` was taken and the frame is still incomplete).
        """
        cumulation = self._cumulation
        assert cumulation is not None
        spec = self._spec
        length = self._frame_length
        if length < 0:
            # Not even the header is complete: take just enough of it.
            held = len(cumulation)
            take = min(spec._header_end - held, end - pos)
            cumulation.write_bytes(view[pos : pos + take])
            pos += take
            if held + take < spec._header_end:
                return pos, None, None
            raw = spec._read(cumulation.view(), spec.length_field_offset)[0]
            if not spec._raw_min <= raw <= spec._raw_max:
                self._cumulation = None
                return pos, None, raw
            length = self._frame_length = raw + spec._lo
        held = len(cumulation)
        take = min(length - held, end - pos)
        if take:
            cumulation.write_bytes(view[pos : pos + take])
            pos += take
        if held + take < length:
            return pos, None, None
        self._cumulation = None
        self._frame_length = -1
        strip = spec.initial_bytes_to_strip
        start = cumulation.reader_index + strip
        return pos, cumulation.slice(start, length - strip), None

    def _keep(
        self, data: Any, view: memoryview, pos: int, end: int, length: int
    ) -> None:
        """Hold the start of an incomplete frame until more bytes come.

        A small frame gets a buffer of its full size (``PRESIZE_LIMIT``).
        Otherwise a whole message that is ours to keep becomes the
        cumulation as it is, with no copy; a tail is copied, so that the
        storage of frames already handed on is not held longer than they
        are.
        """
        self._frame_length = length
        if 0 < length <= PRESIZE_LIMIT:
            # Small frame: make room for all of it now, so that the bytes
            # completing it need no reallocation.
            self._cumulation = ByteBuf(length)
            self._cumulation.write_bytes(view[pos:end])
        elif pos == 0 and type(data) is ByteBuf:
            self._cumulation = data
        elif pos == 0 and type(data) is bytearray:
            self._cumulation = ByteBuf.adopt(data)
        else:
            self._cumulation = ByteBuf.wrap(view[pos:end])

    def _reject(
        self,
        raw: int,
        consumed: int,
        pos: int,
        end: int,
        fail: Fail | None,
        ctx: Any,
    ) -> int:
        """Deal with a frame whose length field is unacceptable.

        ``consumed`` bytes of that frame were already taken before
        ``pos``. Returns where decoding goes on.
        """
        spec = self._spec
        length = raw + spec._lo
        if raw < 0:
            error: FrameError = negative_length(raw)
        elif length < spec._header_end:
            error = shorter_than_header(length, spec._header_end)
        elif length > spec.max_frame_length:
            # Well-formed but oversized: its end is known, so its bytes
            # can be dropped as they come without ever being held.
            if not spec.fail_fast:
                self._discard = length - consumed
                self._too_long = length
                return pos
            error = too_long(length, spec.max_frame_length)
            if spec.resume_after_too_long:
                self._discard = length - consumed
                self._signal(error, fail, ctx)
                return pos
        else:
            error = shorter_than_strip(length, spec.initial_bytes_to_strip)
        self._fail(error, fail, ctx)
        return end

    def _skip(self, pos: int, end: int, fail: Fail | None, ctx: Any) -> int:
        """Drop bytes of an oversized frame; report it once it is gone
        if that was postponed (fail_fast=False)."""
        count = min(self._discard, end - pos)
        self._discard -= count
        pos += count
        if self._discard == 0 and self._too_long:
            error = too_long(self._too_long, self._spec.max_frame_length)
            self._too_long = 0
            if self._spec.resume_after_too_long:
                self._signal(error, fail, ctx)
            else:
                self._fail(error, fail, ctx)
                return end
        return pos

    def _fail(self, error: FrameError, fail: Fail | None, ctx: Any) -> None:
        """Give up on the stream: drop all it holds, then report."""
        self._failed = True
        self._reset()
        self._signal(error, fail, ctx)

    def _signal(self, error: FrameError, fail: Fail | None, ctx: Any) -> None:
        if ctx is None:
            assert fail is not None
            fail(error)
            return
        # Into a pipeline: the error is the peer's, so the channel goes
        # (unless the decoder was told otherwise: close_on_error).
        ctx.fire_exception_caught(error)
        if not self._spec.resume_after_too_long:
            ctx.close()

    def _save_rest(self, view: memoryview, pos: int, end: int) -> None:
        """Keep bytes a feed did not get to, ahead of any queued ones."""
        if self._failed or pos >= end:
            return
        rest = view[pos:end]
        if self._backlog is None:
            self._backlog = [rest]
        else:
            self._backlog.insert(0, rest)

    def _park(self, data: Any) -> None:
        view = _as_view(data)
        if self._backlog is None:
            self._backlog = [view]
        else:
            self._backlog.append(view)

    def _drain(self, emit: Emit, fail: Fail | None, ctx: Any) -> None:
        backlog = self._backlog
        while backlog and not (self._stopped or self._failed):
            chunk = backlog.pop(0)
            if not backlog:
                self._backlog = None
            self._decode(chunk, emit, fail, ctx)
            backlog = self._backlog
        if backlog is not None and not backlog:
            self._backlog = None

    def _reset(self) -> None:
        self._cumulation = None
        self._backlog = None
        self._frame_length = -1
        self._discard = 0
        self._too_long = 0

    def __repr__(self) -> str:
        state = (
            "failed"
            if self._failed
            else "stopped"
            if self._stopped
            else f"pending={self.pending_bytes}"
        )
        return f"<FrameScanner {state} {self._spec!r}>"


_BYTES_TYPES = (ByteBuf, bytes, bytearray, memoryview)


def decoder_channel_read(decoder: Any, ctx: Any, msg: Any) -> None:
    """``LengthFieldBasedFrameDecoder.channel_read`` (see ``frame.py``).

    It lives here, next to the scanner, so that the compiled build runs
    the whole read compiled: no Python frame for the handler, and no
    callbacks to bind for each read.
    """
    if type(msg) is ByteBuf or isinstance(msg, _BYTES_TYPES):
        scanner = decoder._scanner
        scanner.feed_to(msg, ctx)
        if scanner._stopped:
            # A frame's handler removed the decoder: pass on the rest.
            decoder._forward_rest(ctx)
    else:
        ctx.fire_channel_read(msg)
