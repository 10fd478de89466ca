# cython: language_level=3, boundscheck=False, wraparound=False
# cython: cdivision=True, auto_pickle=False
"""The frame scanner, compiled: the hot path of every connection.

Same classes, same behaviour and same method order as the pure-Python
twin ``_frame_py.py``, whose docstrings explain the design (cumulation of
at most one partial frame, errors judged at the header, re-entrancy).
This file only adds what makes it fast:

* The length field is read through a raw pointer into the received
  storage, not through ``struct``.
* Frames are made by ``_subview`` instead of slicing. Slicing a
  memoryview from C builds two ints and a slice object and parses them
  back, about 200 ns a frame; ``_subview`` clones the base view (one
  allocation, registered with the exporter like any slice) and narrows
  its window, about 60 ns. The result is an ordinary memoryview, equal in
  every respect to the slice (same ``obj``, format ``B``, one dimension,
  contiguous, same read-only flag), which the tests check.
* Within one decoded chunk, a frame that the handler let go of is not
  freed: the next frame re-narrows that same object (``_narrow_again``).
  That saves the allocation, most of a frame's cost: the scan of 64-byte
  frames that are dropped takes a third of the time
  (docs/perf/002-frame-view-reuse.md). Only a view that nobody else can
  reach is reused, so from outside frames behave as before;
  ``_narrow_again`` says why that is safe.
* The decode loop calls ``emit`` for each frame itself, so a batch of
  frames costs one Python call into the scanner, not one per frame; and
  the decoder's ``channel_read`` (``decoder_channel_read``) is compiled
  too, so a read that carries one frame pays no Python frame of ours.
"""

from cpython.buffer cimport Py_buffer
from cpython.memoryview cimport (
    PyMemoryView_FromObject,
    PyMemoryView_GET_BUFFER,
)
from cpython.ref cimport PyObject, _Py_REFCNT
from libc.stdint cimport int64_t, uint64_t

from reactor.buffer import ByteBuf

from .errors import (
    negative_length,
    shorter_than_header,
    shorter_than_strip,
    too_long,
)
from ._params import PRESIZE_LIMIT, check_decoder

__all__ = ["FrameScanner", "FrameSpec", "decoder_channel_read"]

cdef object _ByteBuf = ByteBuf


cdef inline int64_t _read_length(
    const unsigned char* p, Py_ssize_t size, bint big
) noexcept nogil:
    # 1 to 4 byte fields are unsigned, an 8-byte field is signed (Netty's
    # rule); the cast below gives exactly that.
    cdef uint64_t value = 0
    cdef Py_ssize_t i
    if big:
        if size == 4:  # the usual layout: spell it out for the compiler
            return <int64_t>(
                (<uint64_t>p[0] << 24) | (<uint64_t>p[1] << 16)
                | (<uint64_t>p[2] << 8) | <uint64_t>p[3]
            )
        for i in range(size):
            value = (value << 8) | p[i]
    else:
        i = size
        while i > 0:
            i -= 1
            value = (value << 8) | p[i]
    return <int64_t>value


cdef inline object _subview(object view, Py_ssize_t start, Py_ssize_t length):
    # ``view`` is flat bytes (see _as_view), so narrowing the window is
    # moving the start and setting the one dimension; flags, strides and
    # format stay valid. The clone shares the exporter's managed buffer,
    # so the storage lives as long as the frame does.
    cdef object sub = PyMemoryView_FromObject(view)
    cdef Py_buffer* buf = PyMemoryView_GET_BUFFER(sub)
    buf.buf = <char*>buf.buf + start
    buf.len = length
    buf.shape[0] = length
    return sub


cdef extern from "Python.h":
    # The memoryview object as CPython lays it out, naming only the fields
    # read or written below: the C compiler takes their offsets from
    # CPython's own header, so nothing here assumes a layout.
    ctypedef struct _PyManagedBufferObject:
        pass

    ctypedef struct PyMemoryViewObject:
        _PyManagedBufferObject* mbuf  # the exporter's buffer, shared
        Py_hash_t hash  # cached hash of a read-only view; -1: not yet
        int flags
        Py_ssize_t exports  # buffers taken from this view itself
        Py_buffer view  # this view's own window
        PyObject* weakreflist

    int _Py_MEMORYVIEW_RELEASED


cdef extern from *:
    """
    #ifdef Py_GIL_DISABLED
    #define NETIM_REUSE_FRAMES 0
    #else
    #define NETIM_REUSE_FRAMES 1
    #endif
    """
    bint NETIM_REUSE_FRAMES


cdef inline bint _narrow_again(
    PyObject* frame, PyObject* base, Py_ssize_t start, Py_ssize_t length
) noexcept:
    # Turn ``frame``, a view that ``_subview`` made from ``base`` and that
    # has been handed on, into the view of base[start:start + length], if
    # nobody can tell; else return False and change nothing. CPython's own
    # iterators do the same with their result tuple (zip, enumerate,
    # dict.items(): a tuple given out and dropped is filled again for the
    # next item).
    #
    # Why nobody can tell:
    # * A reference count of 1 is our own reference: the handler kept
    #   nothing, neither the frame nor a buffer taken from it (such a
    #   buffer refers to the frame too; ``exports`` is checked as well).
    #   Views derived from the frame (slices, casts, ``memoryview(frame)``)
    #   copy its window when they are made and refer to the shared
    #   managed buffer, not to the frame, so they keep what they saw.
    # * A weak reference would reach the object without counting: a frame
    #   that has any is never reused.
    # * A released frame (``frame.release()``) stays released.
    # * A read-only view caches its hash; it is reset, so the new window
    #   hashes its own bytes.
    # * The frame must share ``base``'s managed buffer, so it already pins
    #   the storage that the new window points into, and its format,
    #   item size, strides, read-only flag and ``obj`` are already those
    #   of ``base``. Narrowing a flat view changes only its start, length
    #   and shape, and leaves it contiguous (the flags stay right).
    # * Nothing runs between the check and the change: the GIL is held
    #   and no Python code is called. Builds without a GIL skip reuse.
    # The caller drops its last frame when it returns, on every path, so
    # no view outlives the decoding of the chunk and the storage is free
    # to be resized or released afterwards.
    cdef PyMemoryViewObject* mv = <PyMemoryViewObject*>frame
    cdef PyMemoryViewObject* of = <PyMemoryViewObject*>base
    if (
        not NETIM_REUSE_FRAMES
        or _Py_REFCNT(frame) != 1
        or mv.weakreflist != NULL
        or mv.exports != 0
        or mv.flags & _Py_MEMORYVIEW_RELEASED
        or mv.mbuf != of.mbuf
    ):
        return False
    mv.view.buf = <char*>of.view.buf + start
    mv.view.len = length
    mv.view.shape[0] = length
    mv.hash = -1
    return True


cdef inline bint _is_flat(object view):
    cdef Py_buffer* buf = PyMemoryView_GET_BUFFER(view)
    if buf.ndim != 1 or buf.itemsize != 1:
        return False
    if buf.strides != NULL and buf.strides[0] != 1:
        return False
    return buf.format == NULL or (buf.format[0] == b"B" and buf.format[1] == 0)


cdef class FrameSpec:
    """How frames are laid out; see the twin in ``_frame_py.py``."""

    def __init__(
        self,
        max_frame_length,
        length_field_offset,
        length_field_length,
        length_adjustment=0,
        initial_bytes_to_strip=0,
        fail_fast=True,
        byteorder="big",
        resume_after_too_long=False,
    ):
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
        self._big = byteorder == "big"
        self._header_end = offset + size
        self._lo = self._header_end + adjustment
        self._raw_min = max(self._header_end, strip) - self._lo
        self._raw_max = maximum - self._lo

    def __repr__(self):
        return (
            f"FrameSpec(max_frame_length={self.max_frame_length}, "
            f"length_field_offset={self.length_field_offset}, "
            f"length_field_length={self.length_field_length}, "
            f"length_adjustment={self.length_adjustment}, "
            f"initial_bytes_to_strip={self.initial_bytes_to_strip}, "
            f"fail_fast={self.fail_fast}, byteorder={self.byteorder!r}, "
            f"resume_after_too_long={self.resume_after_too_long})"
        )


cdef object _as_view(object data):
    cdef type kind = type(data)
    cdef object view
    # The likely message first: what a socket channel fires.
    if kind is _ByteBuf:
        view = data.view()
    elif kind is bytes or kind is bytearray:
        return PyMemoryView_FromObject(data)
    elif isinstance(data, memoryview):
        view = PyMemoryView_FromObject(data)
        if not view.c_contiguous:
            return PyMemoryView_FromObject(view.tobytes())
        if view.format != "B" or view.ndim != 1:
            view = view.cast("B")
        return view
    elif isinstance(data, _ByteBuf):
        view = data.view()
    elif isinstance(data, (bytes, bytearray)):
        return PyMemoryView_FromObject(data)
    else:
        raise TypeError(
            f"cannot decode {type(data).__name__}: the frame scanner takes "
            "ByteBuf, bytes, bytearray or memoryview"
        )
    if not _is_flat(view):
        # ByteBuf.view() gives flat bytes today; _subview relies on it.
        raise TypeError("ByteBuf.view() did not return a flat byte view")
    return view


cdef class FrameScanner:
    """The framing state of one byte stream; see the twin."""

    def __init__(self, FrameSpec spec not None):
        self._spec = spec
        self._cumulation = None
        self._frame_length = -1
        self._discard = 0
        self._too_long = 0
        self._backlog = None
        self._failed = False
        self._stopped = False
        self._busy = False

    # -- state --------------------------------------------------------------

    @property
    def spec(self):
        return self._spec

    @property
    def failed(self):
        return self._failed

    @property
    def stopped(self):
        return self._stopped

    @property
    def busy(self):
        return self._busy

    @property
    def cumulation(self):
        return self._cumulation

    @property
    def pending_bytes(self):
        cdef Py_ssize_t count = (
            0 if self._cumulation is None else len(self._cumulation)
        )
        if self._backlog is not None:
            for chunk in self._backlog:
                count += len(chunk)
        return count

    # -- operations -----------------------------------------------------------

    def feed(self, data, emit, fail):
        self._feed(data, emit, fail, None)

    def feed_to(self, data, ctx):
        self._feed(data, ctx.fire_channel_read, None, ctx)

    def stop(self):
        self._stopped = True

    def take_remainder(self):
        cumulation, backlog = self._cumulation, self._backlog
        self._reset()
        if self._failed:
            return None
        if backlog:
            if cumulation is None:
                cumulation = _ByteBuf(sum([len(chunk) for chunk in backlog]))
            for chunk in backlog:
                cumulation.write_bytes(chunk)
        if cumulation is None or not cumulation.is_readable():
            return None
        return cumulation

    def drop_pending(self):
        count = self.pending_bytes
        self._reset()
        return count

    # -- decoding -------------------------------------------------------------

    cdef int _feed(
        self, object data, object emit, object fail, object ctx
    ) except -1:
        if self._failed:
            return 0
        if self._busy or self._stopped or self._backlog is not None:
            self._park(data)
            if self._busy or self._stopped:
                return 0
            self._busy = True
            try:
                self._drain(emit, fail, ctx)
            finally:
                self._busy = False
            return 0
        self._busy = True
        try:
            self._decode(data, emit, fail, ctx)
            if self._backlog is not None:
                self._drain(emit, fail, ctx)
        finally:
            self._busy = False
        return 0

    cdef int _decode(
        self, object data, object emit, object fail, object ctx
    ) except -1:
        cdef object view = _as_view(data)
        cdef Py_buffer* buf = PyMemoryView_GET_BUFFER(view)
        cdef const unsigned char* p = <const unsigned char*>buf.buf
        cdef Py_ssize_t end = buf.len
        cdef Py_ssize_t pos = 0
        cdef Py_ssize_t length, start
        cdef FrameSpec spec = self._spec
        cdef Py_ssize_t header_end = spec._header_end
        cdef Py_ssize_t offset = spec.length_field_offset
        cdef Py_ssize_t size = spec.length_field_length
        cdef Py_ssize_t strip = spec.initial_bytes_to_strip
        cdef Py_ssize_t lo = spec._lo
        cdef int64_t raw_min = spec._raw_min
        cdef int64_t raw_max = spec._raw_max
        cdef int64_t raw = 0
        cdef bint big = spec._big
        cdef bint bad
        cdef object frame
        # The frame last made below; re-narrowed for the next one when the
        # handler let it go (``_narrow_again``). A local, so it is dropped
        # whichever way this function ends.
        cdef object spare = None
        # ``p`` stays valid throughout: ``view`` pins the storage, which
        # can then be neither resized nor freed.
        try:
            while pos < end:
                # The rare states first: dropping an oversized frame, or
                # completing the frame that the last read left unfinished.
                if self._discard:
                    pos = self._skip(pos, end, fail, ctx)
                    if self._failed:
                        return 0
                    continue
                if self._cumulation is not None:
                    bad = False
                    frame = self._top_up(view, &pos, end, &raw, &bad)
                    if frame is not None:
                        emit(frame)
                        if self._stopped:
                            break
                    elif bad:
                        pos = self._reject(
                            raw, header_end, pos, end, fail, ctx
                        )
                        if self._failed:
                            return 0
                    continue
                # The likely case: whole frames back to back in ``view``.
                while True:
                    if end - pos < header_end:
                        if pos < end:
                            self._keep(data, view, pos, end, -1)
                        return 0
                    raw = _read_length(p + pos + offset, size, big)
                    if raw < raw_min or raw > raw_max:
                        break
                    length = <Py_ssize_t>(raw + lo)
                    if end - pos < length:
                        self._keep(data, view, pos, end, length)
                        return 0
                    start = pos + strip
                    pos += length
                    if spare is None or not _narrow_again(
                        <PyObject*>spare, <PyObject*>view, start, pos - start
                    ):
                        spare = _subview(view, start, pos - start)
                    emit(spare)
                    if self._stopped:
                        break
                if self._stopped:
                    break
                pos = self._reject(raw, 0, pos, end, fail, ctx)
                if self._failed:
                    return 0
        except BaseException:
            self._save_rest(view, pos, end)
            raise
        if pos < end:
            self._save_rest(view, pos, end)
        return 0

    cdef object _top_up(
        self, object view, Py_ssize_t* pos, Py_ssize_t end,
        int64_t* raw, bint* bad
    ):
        cdef object cumulation = self._cumulation
        cdef FrameSpec spec = self._spec
        cdef Py_ssize_t length = self._frame_length
        cdef Py_ssize_t held, take, start
        cdef object header
        if length < 0:
            # Not even the header is complete: take just enough of it.
            held = len(cumulation)
            take = min(spec._header_end - held, end - pos[0])
            cumulation.write_bytes(_subview(view, pos[0], take))
            pos[0] += take
            if held + take < spec._header_end:
                return None
            header = cumulation.view()
            raw[0] = _read_length(
                <const unsigned char*>PyMemoryView_GET_BUFFER(header).buf
                + spec.length_field_offset,
                spec.length_field_length,
                spec._big,
            )
            header = None  # unpin the storage before it grows
            if raw[0] < spec._raw_min or raw[0] > spec._raw_max:
                self._cumulation = None
                bad[0] = True
                return None
            length = self._frame_length = <Py_ssize_t>(raw[0] + spec._lo)
        held = len(cumulation)
        take = min(length - held, end - pos[0])
        if take:
            cumulation.write_bytes(_subview(view, pos[0], take))
            pos[0] += take
        if held + take < length:
            return None
        self._cumulation = None
        self._frame_length = -1
        start = cumulation.reader_index + spec.initial_bytes_to_strip
        return cumulation.slice(start, length - spec.initial_bytes_to_strip)

    cdef int _keep(
        self, object data, object view, Py_ssize_t pos, Py_ssize_t end,
        Py_ssize_t length
    ) except -1:
        self._frame_length = length
        if 0 < length <= PRESIZE_LIMIT:
            self._cumulation = _ByteBuf(length)
            self._cumulation.write_bytes(_subview(view, pos, end - pos))
        elif pos == 0 and type(data) is _ByteBuf:
            self._cumulation = data
        elif pos == 0 and type(data) is bytearray:
            self._cumulation = _ByteBuf.adopt(data)
        else:
            self._cumulation = _ByteBuf.wrap(_subview(view, pos, end - pos))
        return 0

    cdef Py_ssize_t _reject(
        self, int64_t raw, Py_ssize_t consumed, Py_ssize_t pos,
        Py_ssize_t end, object fail, object ctx
    ) except -1:
        cdef FrameSpec spec = self._spec
        # In Python ints: raw + adjustment may not fit in 64 bits.
        cdef object raw_value = raw
        cdef object length = raw_value + spec._lo
        if raw < 0:
            error = negative_length(raw_value)
        elif length < spec._header_end:
            error = shorter_than_header(length, spec._header_end)
        elif length > spec.max_frame_length:
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

    cdef Py_ssize_t _skip(
        self, Py_ssize_t pos, Py_ssize_t end, object fail, object ctx
    ) except -1:
        cdef uint64_t count = <uint64_t>(end - pos)
        if self._discard < count:
            count = self._discard
        self._discard -= count
        pos += <Py_ssize_t>count
        if self._discard == 0 and self._too_long:
            error = too_long(self._too_long, self._spec.max_frame_length)
            self._too_long = 0
            if self._spec.resume_after_too_long:
                self._signal(error, fail, ctx)
            else:
                self._fail(error, fail, ctx)
                return end
        return pos

    cdef int _fail(self, object error, object fail, object ctx) except -1:
        self._failed = True
        self._reset()
        self._signal(error, fail, ctx)
        return 0

    cdef int _signal(self, object error, object fail, object ctx) except -1:
        if ctx is None:
            fail(error)
            return 0
        ctx.fire_exception_caught(error)
        if not self._spec.resume_after_too_long:
            ctx.close()
        return 0

    cdef int _save_rest(
        self, object view, Py_ssize_t pos, Py_ssize_t end
    ) except -1:
        if self._failed or pos >= end:
            return 0
        rest = _subview(view, pos, end - pos)
        if self._backlog is None:
            self._backlog = [rest]
        else:
            self._backlog.insert(0, rest)
        return 0

    cdef int _park(self, object data) except -1:
        view = _as_view(data)
        if self._backlog is None:
            self._backlog = [view]
        else:
            self._backlog.append(view)
        return 0

    cdef int _drain(self, object emit, object fail, object ctx) except -1:
        cdef list backlog = self._backlog
        while backlog and not (self._stopped or self._failed):
            chunk = backlog.pop(0)
            if not backlog:
                self._backlog = None
            self._decode(chunk, emit, fail, ctx)
            backlog = self._backlog
        if backlog is not None and not backlog:
            self._backlog = None
        return 0

    cdef void _reset(self) noexcept:
        self._cumulation = None
        self._backlog = None
        self._frame_length = -1
        self._discard = 0
        self._too_long = 0

    def __repr__(self):
        if self._failed:
            state = "failed"
        elif self._stopped:
            state = "stopped"
        else:
            state = f"pending={self.pending_bytes}"
        return f"<FrameScanner {state} {self._spec!r}>"


cdef tuple _BYTES_TYPES = (ByteBuf, bytes, bytearray, memoryview)


def decoder_channel_read(decoder, ctx, msg):
    """``LengthFieldBasedFrameDecoder.channel_read``; see the twin."""
    cdef type kind = type(msg)
    cdef FrameScanner scanner
    if (
        kind is _ByteBuf or kind is bytes or kind is bytearray
        or isinstance(msg, _BYTES_TYPES)
    ):
        scanner = decoder._scanner
        scanner._feed(msg, ctx.fire_channel_read, None, ctx)
        if scanner._stopped:
            decoder._forward_rest(ctx)
    else:
        ctx.fire_channel_read(msg)
