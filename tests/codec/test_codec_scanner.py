"""The frame scanner on its own (no pipeline), once per build: settings,
re-entrancy, stopping, failures of ``emit``, and what frames are."""

from __future__ import annotations

import struct

import pytest

from codec import CorruptedFrameError, TooLongFrameError, _frame_py, _impl
from reactor.buffer import ByteBuf


def frame4(body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + body


def scanner(build, *args, **kwargs):
    return build.FrameScanner(build.FrameSpec(*args, **kwargs))


class Sink:
    """Collects what a scanner hands out."""

    def __init__(self) -> None:
        self.frames: list[memoryview] = []
        self.errors: list[Exception] = []

    def emit(self, frame: memoryview) -> None:
        self.frames.append(frame)

    def fail(self, error: Exception) -> None:
        self.errors.append(error)

    @property
    def data(self) -> list[bytes]:
        return [bytes(f) for f in self.frames]


# -- settings -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "kwargs", "error", "message"),
    [
        ((100, 0, 5), {}, ValueError, "must be 1, 2, 3, 4 or 8, got 5"),
        ((0, 0, 4), {}, ValueError, "max_frame_length must be > 0"),
        ((100, -1, 4), {}, ValueError, "length_field_offset must be >= 0"),
        ((100, 0, 4, 0, -1), {}, ValueError, "initial_bytes_to_strip"),
        ((10, 8, 4), {}, ValueError, "must be <= max_frame_length"),
        ((100, 0, 4), {"byteorder": "middle"}, ValueError, "byteorder"),
        ((100.0, 0, 4), {}, TypeError, "max_frame_length must be an int"),
        ((True, 0, 4), {}, TypeError, "not bool"),
        ((1 << 62, 0, 4), {}, ValueError, "out of range"),
    ],
)
def test_bad_settings_are_refused(build, args, kwargs, error, message):
    with pytest.raises(error, match=message):
        build.FrameSpec(*args, **kwargs)


def test_spec_reports_its_settings(build):
    spec = build.FrameSpec(100, 1, 2, -3, 3, False, "little", True)
    assert (
        spec.max_frame_length,
        spec.length_field_offset,
        spec.length_field_length,
        spec.length_adjustment,
        spec.initial_bytes_to_strip,
        spec.fail_fast,
        spec.byteorder,
        spec.resume_after_too_long,
    ) == (100, 1, 2, -3, 3, False, "little", True)
    assert repr(spec) == repr(
        _frame_py.FrameSpec(100, 1, 2, -3, 3, False, "little", True)
    )


def test_scanner_needs_a_spec_of_its_own_build(build):
    with pytest.raises(TypeError):
        build.FrameScanner(object())


def test_unsupported_data_is_refused(build):
    sc = scanner(build, 100, 0, 1)
    with pytest.raises(TypeError, match="cannot decode str"):
        sc.feed("text", Sink().emit, Sink().fail)
    assert not sc.busy


# -- plain decoding -----------------------------------------------------------


def test_need_more_data_is_just_a_return(build):
    sc = scanner(build, 100, 0, 4, 0, 4)
    sink = Sink()
    sc.feed(b"\x00\x00", sink.emit, sink.fail)
    assert (sink.frames, sink.errors, sc.pending_bytes) == ([], [], 2)
    sc.feed(b"\x00\x01x", sink.emit, sink.fail)
    assert sink.data == [b"x"]
    assert sc.cumulation is None and sc.pending_bytes == 0


def test_failed_scanner_drops_everything(build):
    sc = scanner(build, 10, 0, 1)
    sink = Sink()
    sc.feed(b"\x20" + b"\x01" * 10, sink.emit, sink.fail)
    assert sc.failed
    sc.feed(b"\x01\x01", sink.emit, sink.fail)
    assert sink.frames == [] and len(sink.errors) == 1
    assert sc.pending_bytes == 0
    assert sc.take_remainder() is None


def test_drop_pending_counts_what_it_forgets(build):
    sc = scanner(build, 100, 0, 4, 0, 4)
    sc.feed(frame4(b"abc")[:6], Sink().emit, Sink().fail)
    assert sc.drop_pending() == 6
    assert sc.cumulation is None and sc.pending_bytes == 0


# -- re-entrancy, stopping, and failing callbacks -----------------------------


def test_nested_feed_is_queued_behind_the_current_bytes(build):
    sc = scanner(build, 100, 0, 1, 0, 1)
    sink = Sink()

    def emit(frame: memoryview) -> None:
        if not sink.frames:
            sc.feed(b"y\x01z", emit, sink.fail)
        sink.emit(frame)

    sc.feed(b"\x01a\x02x", emit, sink.fail)
    assert sink.data == [b"a", b"xy", b"z"]
    assert not sc.busy and sc.pending_bytes == 0


def test_stop_inside_emit_keeps_the_rest(build):
    sc = scanner(build, 100, 0, 1, 0, 1)
    sink = Sink()

    def emit(frame: memoryview) -> None:
        sink.emit(frame)
        sc.feed(b"\x01q", emit, sink.fail)  # parked behind the rest
        sc.stop()

    sc.feed(b"\x01a\x01b\x02c", emit, sink.fail)
    assert sink.data == [b"a"]
    assert sc.stopped
    assert sc.pending_bytes == 6
    rest = sc.take_remainder()
    assert isinstance(rest, ByteBuf)
    assert rest.to_bytes() == b"\x01b\x02c\x01q"
    assert sc.pending_bytes == 0


def test_take_remainder_joins_cumulation_and_queued_bytes(build):
    sc = scanner(build, 100, 0, 1, 0, 1)
    sink = Sink()
    sc.feed(b"\x05ab", sink.emit, sink.fail)
    sc.stop()
    sc.feed(b"cd", sink.emit, sink.fail)
    assert sc.take_remainder().to_bytes() == b"\x05abcd"
    assert sc.take_remainder() is None


class Boom(Exception):
    pass


def test_emit_raising_keeps_the_undecoded_bytes(build):
    sc = scanner(build, 100, 0, 1, 0, 1)
    sink = Sink()
    calls = 0

    def emit(frame: memoryview) -> None:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise Boom
        sink.emit(frame)

    with pytest.raises(Boom):
        sc.feed(b"\x01a\x01b\x01c\x02d", emit, sink.fail)
    assert not sc.busy
    assert sc.pending_bytes == 4  # b"\x01c\x02d"; "b" was handed out
    sc.feed(b"e", emit, sink.fail)
    assert sink.data == [b"a", b"c", b"de"]


def test_emit_raising_on_a_completed_cumulation(build):
    sc = scanner(build, 100, 0, 1, 0, 1)
    sink = Sink()
    sc.feed(b"\x02a", sink.emit, sink.fail)

    def emit(frame: memoryview) -> None:
        raise Boom

    with pytest.raises(Boom):
        sc.feed(b"b\x01c", emit, sink.fail)
    sc.feed(b"", sink.emit, sink.fail)
    assert sink.data == [b"c"]


def test_fail_raising_while_resuming_keeps_alignment(build):
    sc = scanner(build, 4, 0, 1, 0, 1, resume_after_too_long=True)
    sink = Sink()

    def fail(error: Exception) -> None:
        raise Boom

    with pytest.raises(Boom):
        sc.feed(b"\x06abcdef\x01z", sink.emit, fail)
    sc.feed(b"", sink.emit, sink.fail)
    assert sink.data == [b"z"]


# -- errors -------------------------------------------------------------------


def test_too_long_header_completed_in_the_cumulation(build):
    sc = scanner(build, 10, 1, 2, 0, 0)
    sink = Sink()
    sc.feed(b"\xff\x00", sink.emit, sink.fail)
    sc.feed(b"\x64", sink.emit, sink.fail)
    (error,) = sink.errors
    assert isinstance(error, TooLongFrameError)
    assert error.frame_length == 103


def test_resume_after_too_long_header_in_the_cumulation(build):
    sc = scanner(build, 10, 0, 2, 0, 2, resume_after_too_long=True)
    sink = Sink()
    sc.feed(b"\x00", sink.emit, sink.fail)
    sc.feed(b"\x0c" + b"x" * 12 + b"\x00\x01k", sink.emit, sink.fail)
    assert [type(e) for e in sink.errors] == [TooLongFrameError]
    assert sink.data == [b"k"]


def test_corrupted_header_completed_in_the_cumulation(build):
    sc = scanner(build, 10, 0, 2, -4, 0)
    sink = Sink()
    sc.feed(b"\x00", sink.emit, sink.fail)
    sc.feed(b"\x01" + b"rest", sink.emit, sink.fail)
    (error,) = sink.errors
    assert isinstance(error, CorruptedFrameError)
    assert error.frame_length == -1
    assert sc.failed and sc.pending_bytes == 0


# -- what a frame is ----------------------------------------------------------


def test_frames_are_exactly_like_slices(build):
    storage = bytearray(frame4(b"hello") + frame4(b"") + frame4(b"w"))
    sc = scanner(build, 100, 0, 4, 0, 2)
    sink = Sink()
    sc.feed(storage, sink.emit, sink.fail)
    base = memoryview(storage)
    slices = [base[2:9], base[11:13], base[15:18]]
    for frame, expected in zip(sink.frames, slices, strict=True):
        assert type(frame) is memoryview
        assert frame.obj is storage
        assert frame == expected and bytes(frame) == bytes(expected)
        for attribute in (
            "format",
            "itemsize",
            "ndim",
            "shape",
            "strides",
            "suboffsets",
            "readonly",
            "nbytes",
            "c_contiguous",
            "f_contiguous",
            "contiguous",
        ):
            assert getattr(frame, attribute) == getattr(expected, attribute)
        assert frame.tolist() == expected.tolist()
        assert frame[1:] == expected[1:]


def test_frames_hash_like_slices_of_bytes(build):
    wire = frame4(b"abc")
    sc = scanner(build, 100, 0, 4, 0, 4)
    sink = Sink()
    sc.feed(wire, sink.emit, sink.fail)
    assert hash(sink.frames[0]) == hash(b"abc")


def test_frames_pin_their_storage_until_released(build):
    storage = bytearray(frame4(b"abc"))
    sc = scanner(build, 100, 0, 4, 0, 4)
    sink = Sink()
    sc.feed(storage, sink.emit, sink.fail)
    with pytest.raises(BufferError):
        storage.append(0)  # a live frame holds the storage still
    sink.frames[0].release()
    storage.append(0)  # released: nothing exports the storage any more
    sink.frames.clear()


def test_compiled_and_pure_modules_are_the_expected_ones():
    assert _frame_py.__name__ == "codec._frame_py"
    if _impl.IMPLEMENTATION == "compiled":
        assert _impl.scanner.__name__ == "codec._frame"
        assert _impl.scanner.__file__.endswith((".so", ".pyd"))
