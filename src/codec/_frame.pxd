# The contract of the compiled frame scanner (logic in _frame.pyx; the
# pure-Python twin is _frame_py.py). Field meanings are documented on the
# twin's classes, which hold the same state under the same names.

from libc.stdint cimport int64_t, uint64_t


cdef class FrameSpec:
    cdef readonly Py_ssize_t max_frame_length
    cdef readonly Py_ssize_t length_field_offset
    cdef readonly Py_ssize_t length_field_length
    cdef readonly Py_ssize_t length_adjustment
    cdef readonly Py_ssize_t initial_bytes_to_strip
    cdef readonly bint fail_fast
    cdef readonly bint resume_after_too_long
    cdef readonly object byteorder
    cdef bint _big
    cdef Py_ssize_t _header_end
    cdef Py_ssize_t _lo
    cdef int64_t _raw_min
    cdef int64_t _raw_max


cdef class FrameScanner:
    cdef FrameSpec _spec
    cdef object _cumulation
    cdef list _backlog
    cdef Py_ssize_t _frame_length
    # Lengths of oversized frames can exceed 2**63 (an 8-byte field plus
    # a positive adjustment), so these two are unsigned.
    cdef uint64_t _discard
    cdef uint64_t _too_long
    cdef bint _failed
    cdef bint _stopped
    cdef bint _busy

    cdef int _feed(
        self, object data, object emit, object fail, object ctx) except -1
    cdef int _decode(
        self, object data, object emit, object fail, object ctx) except -1
    cdef object _top_up(
        self, object view, Py_ssize_t* pos, Py_ssize_t end,
        int64_t* raw, bint* bad)
    cdef int _keep(
        self, object data, object view, Py_ssize_t pos, Py_ssize_t end,
        Py_ssize_t length) except -1
    cdef Py_ssize_t _reject(
        self, int64_t raw, Py_ssize_t consumed, Py_ssize_t pos,
        Py_ssize_t end, object fail, object ctx) except -1
    cdef Py_ssize_t _skip(
        self, Py_ssize_t pos, Py_ssize_t end, object fail,
        object ctx) except -1
    cdef int _fail(self, object error, object fail, object ctx) except -1
    cdef int _signal(self, object error, object fail, object ctx) except -1
    cdef int _save_rest(
        self, object view, Py_ssize_t pos, Py_ssize_t end) except -1
    cdef int _park(self, object data) except -1
    cdef int _drain(self, object emit, object fail, object ctx) except -1
    cdef void _reset(self) noexcept
