"""LengthFieldBasedFrameDecoder in a pipeline, once per scanner build.

Ports of Netty's decoder tests (the Javadoc layouts, too-long recovery,
removal forwarding the rest, re-entrant reads), plus what netim adds:
errors judged at the header, closing, and nothing decoded after an error.
"""

from __future__ import annotations

import array
import logging
import struct
import sys

import pytest

from codec import (
    CorruptedFrameError,
    FrameError,
    TooLongFrameError,
)
from codec._params import PRESIZE_LIMIT
from reactor.buffer import ByteBuf
from reactor.embedded import EmbeddedChannel
from reactor.future import Future
from reactor.pipeline import (
    ChannelHandlerContext,
    ChannelInboundHandler,
    ChannelOutboundHandler,
)

BODY = b"HELLO, WORLD"


def frame4(body: bytes) -> bytes:
    """A frame with a 4-byte big-endian length of the body."""
    return struct.pack(">I", len(body)) + body


# -- the seven layouts of Netty's Javadoc -------------------------------------

LAYOUTS = [
    # (decoder args, wire bytes, expected frame)
    ((0, 2, 0, 0), b"\x00\x0c" + BODY, b"\x00\x0c" + BODY),
    ((0, 2, 0, 2), b"\x00\x0c" + BODY, BODY),
    ((0, 2, -2, 0), b"\x00\x0e" + BODY, b"\x00\x0e" + BODY),
    (
        (2, 3, 0, 0),
        b"\xca\xfe\x00\x00\x0c" + BODY,
        b"\xca\xfe\x00\x00\x0c" + BODY,
    ),
    (
        (0, 3, 2, 0),
        b"\x00\x00\x0c\xca\xfe" + BODY,
        b"\x00\x00\x0c\xca\xfe" + BODY,
    ),
    ((1, 2, 1, 3), b"\xca\x00\x0c\xfe" + BODY, b"\xfe" + BODY),
    ((1, 2, -3, 3), b"\xca\x00\x10\xfe" + BODY, b"\xfe" + BODY),
]


@pytest.mark.parametrize(("args", "wire", "expected"), LAYOUTS)
def test_javadoc_layouts_whole(harness, args, wire, expected):
    ch, _, rec = harness(100, *args)
    ch.write_inbound(wire)
    assert rec.frames == [expected]


@pytest.mark.parametrize(("args", "wire", "expected"), LAYOUTS)
def test_javadoc_layouts_byte_by_byte(harness, args, wire, expected):
    ch, decoder, rec = harness(100, *args)
    for i in range(len(wire)):
        ch.write_inbound(wire[i : i + 1])
    assert rec.frames == [expected]
    assert decoder.cumulation is None


# -- field sizes and byte order -----------------------------------------------


@pytest.mark.parametrize("size", [1, 2, 3, 4, 8])
@pytest.mark.parametrize("byteorder", ["big", "little"])
def test_every_field_size_and_byte_order(harness, size, byteorder):
    ch, _, rec = harness(1000, 0, size, 0, size, byteorder=byteorder)
    bodies = [b"", b"a", b"xyz" * 20]
    wire = b"".join(len(b).to_bytes(size, byteorder) + b for b in bodies)
    ch.write_inbound(wire)
    assert rec.frames == bodies


@pytest.mark.parametrize("size", [1, 2, 3, 4])
@pytest.mark.parametrize("byteorder", ["big", "little"])
def test_short_fields_are_unsigned(harness, size, byteorder):
    # The largest value of the field, read back through the error
    # (no need to send gigabytes to see how it was parsed).
    raw = (1 << (8 * size)) - 1
    ch, _, rec = harness(100, 0, size, 0, 0, byteorder=byteorder)
    ch.write_inbound(raw.to_bytes(size, byteorder))
    (error,) = rec.errors
    assert isinstance(error, TooLongFrameError)
    assert error.frame_length == raw + size


def test_eight_byte_field_is_signed(harness):
    ch, _, rec = harness(100, 0, 8, 0, 0)
    ch.write_inbound(struct.pack(">q", (1 << 63) - 1))
    (error,) = rec.errors
    assert isinstance(error, TooLongFrameError)
    assert error.frame_length == (1 << 63) - 1 + 8


def test_eight_byte_length_beyond_64_bits_after_adjustment(harness):
    ch, _, rec = harness(100, 0, 8, 1 << 40, 0)
    ch.write_inbound(struct.pack(">q", (1 << 63) - 1))
    (error,) = rec.errors
    assert isinstance(error, TooLongFrameError)
    assert error.frame_length == (1 << 63) - 1 + 8 + (1 << 40)


@pytest.mark.parametrize("byteorder", ["big", "little"])
def test_negative_eight_byte_length_is_corrupted(harness, byteorder):
    ch, decoder, rec = harness(100, 0, 8, 0, 0, byteorder=byteorder)
    ch.write_inbound((-5).to_bytes(8, byteorder, signed=True) + b"x" * 20)
    (error,) = rec.errors
    assert isinstance(error, CorruptedFrameError)
    assert str(error) == (
        "peer sent a negative 8-byte length field (-5); the stream is "
        "corrupted"
    )
    assert error.frame_length is None
    assert decoder.failed
    assert rec.frames == []


# -- sizes, batches, splits ---------------------------------------------------


def test_exactly_max_frame_length_is_accepted(harness):
    ch, _, rec = harness(14, 0, 2, 0, 0)
    ch.write_inbound(b"\x00\x0c" + BODY)
    assert rec.frames == [b"\x00\x0c" + BODY]
    assert rec.errors == []


def test_one_byte_over_max_frame_length_is_too_long(harness):
    ch, _, rec = harness(13, 0, 2, 0, 0)
    ch.write_inbound(b"\x00\x0c")
    (error,) = rec.errors
    assert isinstance(error, TooLongFrameError)
    assert (error.frame_length, error.max_frame_length) == (14, 13)
    assert str(error) == (
        "peer announced a frame of 14 bytes, more than max_frame_length=13"
    )


def test_many_frames_in_one_read_come_out_in_order(harness):
    ch, decoder, rec = harness(1024, 0, 4, 0, 4)
    bodies = [bytes([i]) * (i % 7) for i in range(50)]
    ch.write_inbound(b"".join(frame4(b) for b in bodies))
    assert rec.frames == bodies
    assert rec.events == ["read"] * 50 + ["read_complete"]
    assert decoder.cumulation is None


def test_zero_length_body_is_a_frame(harness):
    ch, _, rec = harness(1024, 0, 4, 0, 0)
    ch.write_inbound(frame4(b"") + frame4(b""))
    assert rec.frames == [b"\x00\x00\x00\x00"] * 2


def test_length_field_split_across_reads(harness):
    ch, decoder, rec = harness(1024, 0, 4, 0, 4)
    wire = frame4(b"abc") + frame4(b"defg")
    ch.write_inbound(wire[:2])
    assert decoder.pending_bytes == 2
    ch.write_inbound(wire[2:9])
    assert rec.frames == [b"abc"]
    ch.write_inbound(wire[9:])
    assert rec.frames == [b"abc", b"defg"]
    assert decoder.cumulation is None


def test_body_trickling_in(harness):
    ch, decoder, rec = harness(1024, 0, 4, 0, 4)
    body = bytes(range(200))
    wire = frame4(body)
    ch.write_inbound(wire[:10])
    for i in range(10, len(wire) - 1, 17):
        ch.write_inbound(wire[i : min(i + 17, len(wire) - 1)])
        assert rec.frames == []
    assert decoder.pending_bytes == len(wire) - 1
    ch.write_inbound(wire[-1:] + frame4(b"next"))
    assert rec.frames == [body, b"next"]


def test_frames_before_and_after_a_split_frame(harness):
    ch, _, rec = harness(1024, 0, 4, 0, 4)
    wire = frame4(b"one") + frame4(b"two") + frame4(b"three")
    cut = len(frame4(b"one")) + 5
    ch.write_inbound(wire[:cut], wire[cut:])
    assert rec.frames == [b"one", b"two", b"three"]


def test_big_frame_in_many_reads_larger_than_presize(harness):
    ch, _, rec = harness(1 << 20, 0, 4, 0, 4)
    body = bytes(range(256)) * 64  # 16 KiB, beyond the presize limit
    wire = frame4(body)
    for i in range(0, len(wire), 1000):
        ch.write_inbound(ByteBuf.wrap(wire[i : i + 1000]))
    assert rec.frames == [body]


# -- message types ------------------------------------------------------------


def test_accepts_every_bytes_like_message(harness):
    ch, _, rec = harness(1024, 0, 2, 0, 2)
    buf = ByteBuf.wrap(b"junk" + b"\x00\x01d")
    buf.skip_bytes(4)
    ch.write_inbound(
        b"\x00\x01a",
        bytearray(b"\x00\x01b"),
        memoryview(b"\x00\x01c"),
        buf,
    )
    assert rec.frames == [b"a", b"b", b"c", b"d"]


def test_memoryview_of_other_formats_is_read_as_bytes(harness):
    ch, _, rec = harness(1024, 0, 2, 0, 2)
    words = array.array("H", [0, 0])
    struct.pack_into(">HH", words, 0, 2, 0x4142)
    strided = memoryview(b"\x00-\x01-z")[::2]
    ch.write_inbound(memoryview(words), strided)
    assert rec.frames == [b"AB", b"z"]
    assert all(m.format == "B" and m.ndim == 1 for m in rec.messages)


def test_other_messages_pass_through(harness):
    ch, _, rec = harness(1024, 0, 2, 0, 2)
    marker = object()
    ch.write_inbound(b"\x00\x02h", marker, b"i")
    assert rec.messages[0] is marker
    assert bytes(rec.messages[1]) == b"hi"
    assert len(rec.messages) == 2


# -- zero copy and memory -----------------------------------------------------


def test_frames_are_views_of_the_received_bytes(harness):
    ch, _, rec = harness(1024, 0, 4, 0, 4)
    wire = frame4(b"abc") + frame4(b"de")
    ch.write_inbound(wire)
    for frame in rec.messages:
        assert isinstance(frame, memoryview)
        assert frame.obj is wire
        assert frame.readonly
    buf = ByteBuf.wrap(wire)
    storage = buf.view().obj
    ch.write_inbound(buf)
    assert all(m.obj is storage for m in rec.messages[2:])


def test_frames_keep_their_bytes_while_later_reads_arrive(harness):
    ch, _, rec = harness(1 << 16, 0, 4, 0, 4)
    wire = frame4(b"A" * 100) + frame4(b"B" * 100) + frame4(b"C" * 3000)
    ch.write_inbound(bytearray(wire[:50]))
    ch.write_inbound(bytearray(wire[50:150]))
    ch.write_inbound(bytearray(wire[150:]))
    held = rec.messages[:]
    ch.write_inbound(bytearray(frame4(b"D" * 10)))
    assert [bytes(m) for m in held] == [b"A" * 100, b"B" * 100, b"C" * 3000]


def test_idle_decoder_holds_no_buffer(harness):
    ch, decoder, rec = harness(1024, 0, 4, 0, 4)
    ch.write_inbound(frame4(b"abc")[:5])
    assert decoder.cumulation is not None
    ch.write_inbound(frame4(b"abc")[5:])
    assert rec.frames == [b"abc"]
    assert decoder.cumulation is None
    assert decoder.pending_bytes == 0
    assert not hasattr(decoder, "__dict__")
    scanner = decoder._scanner
    assert not hasattr(scanner, "__dict__")
    # Handler and scanner together: a few machine words each.
    assert sys.getsizeof(decoder) + sys.getsizeof(scanner) <= 256


def test_settings_are_shared_between_decoders(decoder_class):
    one = decoder_class(1024, 0, 4, 0, 4)
    two = decoder_class(1024, 0, 4, 0, 4)
    assert one._scanner.spec is two._scanner.spec
    assert one._scanner is not two._scanner


def test_whole_partial_message_is_adopted_not_copied(harness):
    ch, decoder, _ = harness(1 << 20, 0, 4, 0, 4)
    buf = ByteBuf.wrap(frame4(b"x" * (PRESIZE_LIMIT * 2))[:100])
    ch.write_inbound(buf)
    assert decoder.cumulation is buf


def test_small_partial_frame_gets_a_buffer_of_its_size(harness):
    ch, decoder, _ = harness(1 << 20, 0, 4, 0, 4)
    ch.write_inbound(frame4(b"x" * 100)[:10])
    assert decoder.cumulation.capacity == 104
    assert decoder.pending_bytes == 10


# -- errors are judged at the header ------------------------------------------


def test_too_long_is_rejected_from_the_header_alone(harness):
    ch, decoder, rec = harness(1024, 0, 4, 0, 4)
    ch.write_inbound(b"\x00\x10\x00\x00")  # announces 1 MiB; no body sent
    (error,) = rec.errors
    assert isinstance(error, TooLongFrameError)
    assert isinstance(error, FrameError) and isinstance(error, ValueError)
    assert error.frame_length == 0x100000 + 4
    assert decoder.cumulation is None and decoder.pending_bytes == 0


def test_too_long_header_split_over_reads(harness):
    ch, decoder, rec = harness(1024, 0, 4, 0, 4)
    ch.write_inbound(b"\x00\x10")
    assert rec.errors == []
    ch.write_inbound(b"\x00\x00")
    assert isinstance(rec.errors[0], TooLongFrameError)
    assert decoder.cumulation is None


def test_without_a_later_handler_the_error_reaches_write_inbound(
    decoder_class,
):
    ch = EmbeddedChannel(decoder_class(1024, 0, 4, 0, 4))
    with pytest.raises(TooLongFrameError):
        ch.write_inbound(b"\xff\xff\xff\xff")
    assert not ch.is_open


def test_shorter_than_header_is_corrupted(harness):
    ch, _, rec = harness(1024, 0, 4, -10, 0)
    ch.write_inbound(b"\x00\x00\x00\x05")
    (error,) = rec.errors
    assert isinstance(error, CorruptedFrameError)
    assert error.frame_length == -1
    assert str(error) == (
        "peer announced a frame of -1 bytes, shorter than the 4 bytes up "
        "to the end of its length field; the stream is corrupted"
    )


def test_fewer_bytes_than_strip_is_corrupted_at_the_header(harness):
    ch, _, rec = harness(1024, 0, 2, -2, 6)
    ch.write_inbound(b"\x00\x04")  # a 4-byte frame, 6 bytes to strip
    (error,) = rec.errors
    assert isinstance(error, CorruptedFrameError)
    assert error.frame_length == 4
    assert "initial_bytes_to_strip=6" in str(error)


def test_frames_before_an_error_are_delivered_first(harness):
    ch, _, rec = harness(64, 0, 4, 0, 4)
    ch.write_inbound(frame4(b"ok") + b"\x00\x00\x10\x00" + frame4(b"lost"))
    assert rec.events[:2] == ["read", "error:TooLongFrameError"]
    assert rec.frames == [b"ok"]


# -- after an error: close, and decode nothing more ---------------------------


class HoldClose(ChannelOutboundHandler):
    """Swallows close requests: a channel whose close is slow."""

    def __init__(self) -> None:
        self.closes = 0

    def close(
        self, ctx: ChannelHandlerContext, promise: Future | None
    ) -> None:
        self.closes += 1


def test_error_closes_the_channel(harness):
    ch, _, rec = harness(16, 0, 4, 0, 4)
    ch.write_inbound(b"\x00\x00\x01\x00")
    assert not ch.is_open
    ch.run_pending_tasks()
    assert rec.events == [
        "error:TooLongFrameError",
        "read_complete",
        "inactive",
    ]


def test_nothing_is_decoded_after_an_error_in_the_same_write(harness):
    ch, decoder, rec = harness(16, 0, 4, 0, 4)
    ch.write_inbound(b"\x00\x00\x01\x00", frame4(b"a"), frame4(b"b"))
    assert rec.frames == []
    assert len(rec.errors) == 1
    assert decoder.failed and decoder.pending_bytes == 0


@pytest.mark.parametrize(
    "bad",
    [b"\x00\x00\x01\x00", b"\xff\xff\xff\xff\xff\xff\xff\xff"],
    ids=["too-long", "corrupted"],
)
def test_nothing_is_decoded_after_an_error_while_close_is_slow(
    decoder_class, recorder_class, bad
):
    hold = HoldClose()
    decoder = decoder_class(16, 0, len(bad), 0, len(bad))
    rec = recorder_class()
    ch = EmbeddedChannel(hold, decoder, rec)
    ch.write_inbound(bad)
    assert hold.closes == 1
    assert ch.is_open
    for _ in range(3):
        ch.write_inbound(frame4(b"a") * 3, bytearray(b"\x00\x00\x00\x01b"))
    assert rec.frames == []
    assert len(rec.errors) == 1
    assert hold.closes == 1
    assert decoder.pending_bytes == 0 and decoder.cumulation is None


def test_close_on_error_false_keeps_the_channel_open(harness):
    ch, decoder, rec = harness(16, 0, 4, 0, 4, close_on_error=False)
    assert not decoder.close_on_error
    ch.write_inbound(b"\x00\x00\x01\x00")
    assert ch.is_open
    assert isinstance(rec.errors[0], TooLongFrameError)


def test_corrupted_stream_is_never_resumed(harness):
    ch, decoder, rec = harness(16, 0, 4, -8, 0, close_on_error=False)
    ch.write_inbound(b"\x00\x00\x00\x01" + frame4(b"a"))
    ch.write_inbound(b"\x00\x00\x00\x09" + b"x" * 5)
    assert ch.is_open
    assert [type(e) for e in rec.errors] == [CorruptedFrameError]
    assert rec.frames == []
    assert decoder.failed


# -- Netty's too-long recovery tests (close_on_error=False) -------------------


def netty_discard_input() -> bytes:
    return b"\x00\x00\x00\x20" + bytes(32) + b"\x00\x00\x00\x01a"


def test_discard_too_long_frame_whole_buffer(harness):
    # Netty's testDiscardTooLongFrame1. Netty hands out the trailing frame
    # only at end of input; netim decodes it at once.
    ch, _, rec = harness(16, 0, 4, 0, 0, close_on_error=False)
    ch.write_inbound(netty_discard_input())
    assert rec.events[:2] == ["error:TooLongFrameError", "read"]
    assert rec.frames == [b"\x00\x00\x00\x01a"]
    assert not ch.finish()


def test_discard_too_long_frame_split(harness):
    # Netty's testDiscardTooLongFrame2: the error comes with the header.
    ch, _, rec = harness(16, 0, 4, 0, 0, close_on_error=False)
    data = netty_discard_input()
    ch.write_inbound(data[:14])
    assert [type(e) for e in rec.errors] == [TooLongFrameError]
    assert rec.frames == []
    ch.write_inbound(data[14:])
    assert rec.frames == [b"\x00\x00\x00\x01a"]
    assert len(rec.errors) == 1


def test_fail_slow_too_long_frame_recovery(harness):
    # Netty's testFailSlowTooLongFrameRecovery.
    ch, _, rec = harness(5, 0, 4, 0, 4, fail_fast=False, close_on_error=False)
    for round_ in range(2):
        ch.write_inbound(b"\x00\x00\x00\x02")
        assert len(rec.errors) == round_
        ch.write_inbound(b"\x00\x00")
        assert len(rec.errors) == round_ + 1
        assert isinstance(rec.errors[-1], TooLongFrameError)
        ch.write_inbound(b"\x00\x00\x00\x01A")
        assert rec.frames == [b"A"] * (round_ + 1)


def test_fail_fast_too_long_frame_recovery(harness):
    # Netty's testFailFastTooLongFrameRecovery.
    ch, _, rec = harness(5, 0, 4, 0, 4, close_on_error=False)
    for round_ in range(2):
        ch.write_inbound(b"\x00\x00\x00\x02")
        assert len(rec.errors) == round_ + 1
        ch.write_inbound(b"\x00\x00" + b"\x00\x00\x00\x01A")
        assert rec.frames == [b"A"] * (round_ + 1)


def test_fail_slow_with_close_waits_for_the_body_then_closes(harness):
    ch, decoder, rec = harness(5, 0, 4, 0, 4, fail_fast=False)
    ch.write_inbound(b"\x00\x00\x00\x02")
    assert rec.errors == [] and ch.is_open
    assert decoder.pending_bytes == 0  # the oversized bytes are not kept
    ch.write_inbound(b"\x00", b"\x00" + b"\x00\x00\x00\x01A")
    assert [type(e) for e in rec.errors] == [TooLongFrameError]
    assert rec.frames == []
    assert not ch.is_open


def test_too_long_frames_back_to_back_are_each_reported(harness):
    ch, _, rec = harness(5, 0, 1, 0, 1, close_on_error=False)
    ch.write_inbound(b"\x09" + b"x" * 9 + b"\x01A" + b"\x08" + b"y" * 8)
    assert [type(e) for e in rec.errors] == [TooLongFrameError] * 2
    assert rec.frames == [b"A"]


# -- end of input and removal -------------------------------------------------


def test_partial_frame_is_dropped_when_the_channel_goes_inactive(
    harness, caplog
):
    ch, decoder, rec = harness(1024, 0, 4, 0, 4)
    ch.write_inbound(frame4(b"abcdef")[:7])
    with caplog.at_level(logging.DEBUG, logger="codec.frame"):
        assert not ch.finish()
    assert decoder.cumulation is None and decoder.pending_bytes == 0
    assert rec.events[-1] == "inactive"
    assert rec.messages == []
    assert "7 bytes dropped" in caplog.text


def test_removal_forwards_the_partial_frame(harness):
    ch, decoder, rec = harness(1024, 0, 4, 0, 4)
    wire = frame4(b"abcdef")
    ch.write_inbound(wire[:7])
    ch.pipeline.remove(decoder)
    (rest,) = rec.messages
    assert isinstance(rest, ByteBuf)
    assert rest.to_bytes() == wire[:7]
    assert rec.events == ["read_complete", "read", "read_complete"]
    ch.write_inbound(wire[7:])
    assert rec.frames[1:] == [wire[7:]]


def test_removal_when_idle_forwards_nothing(harness):
    ch, decoder, rec = harness(1024, 0, 4, 0, 4)
    ch.write_inbound(frame4(b"a"))
    ch.pipeline.remove(decoder)
    assert rec.frames == [b"a"]
    assert rec.events == ["read", "read_complete"]


class RemoveDecoderAfter(ChannelInboundHandler):
    """Removes the decoder once it has seen ``count`` frames (Netty's
    testRemoveWhileInCallDecode / testDisorder)."""

    def __init__(self, decoder: object, count: int) -> None:
        self.decoder = decoder
        self.count = count

    def channel_read(self, ctx: ChannelHandlerContext, msg: object) -> None:
        self.count -= 1
        if self.count == 0:
            ctx.pipeline.remove(self.decoder)  # type: ignore[arg-type]
        ctx.fire_channel_read(msg)


@pytest.mark.parametrize("after", [1, 2, 4])
def test_removal_from_inside_a_frame_forwards_the_rest_in_order(
    decoder_class, recorder_class, after
):
    decoder = decoder_class(1024, 0, 1, 0, 1)
    rec = recorder_class()
    ch = EmbeddedChannel(decoder, RemoveDecoderAfter(decoder, after), rec)
    wire = b"".join(b"\x01" + bytes([i]) for i in range(1, 6)) + b"\x03ab"
    ch.write_inbound(wire)
    frames, rest = rec.messages[:after], rec.messages[after:]
    assert [bytes(f) for f in frames] == [
        bytes([i]) for i in range(1, 1 + after)
    ]
    assert len(rest) == 1 and isinstance(rest[0], ByteBuf)
    assert rest[0].to_bytes() == wire[2 * after :]
    assert not ch.finish()


def test_removal_from_inside_a_completed_cumulation(
    decoder_class, recorder_class
):
    decoder = decoder_class(1024, 0, 1, 0, 1)
    rec = recorder_class()
    ch = EmbeddedChannel(decoder, RemoveDecoderAfter(decoder, 1), rec)
    ch.write_inbound(b"\x03a")
    ch.write_inbound(b"bc\x01d\x02")
    assert rec.frames == [b"abc", b"\x01d\x02"]
    assert isinstance(rec.messages[1], ByteBuf)


def test_decoder_can_be_added_again_after_removal(harness):
    ch, decoder, rec = harness(1024, 0, 1, 0, 1)
    ch.write_inbound(b"\x02a")
    ch.pipeline.remove(decoder)
    ch2 = EmbeddedChannel(decoder, type(rec)())
    ch2.write_inbound(b"\x01z")
    assert ch2.pipeline.last().frames == [b"z"]


class FeedMoreOnFirstFrame(ChannelInboundHandler):
    """Sends more bytes into the pipeline from inside a frame (Netty's
    reentrantReadSafety)."""

    def __init__(self, more: bytes) -> None:
        self.more: bytes | None = more

    def channel_read(self, ctx: ChannelHandlerContext, msg: object) -> None:
        more, self.more = self.more, None
        if more is not None:
            ctx.pipeline.fire_channel_read(more)
        ctx.fire_channel_read(msg)


def test_nested_reads_are_decoded_after_the_current_one(
    decoder_class, recorder_class
):
    decoder = decoder_class(1024, 0, 1, 0, 1)
    rec = recorder_class()
    nested = b"\x01x\x01y"
    ch = EmbeddedChannel(decoder, FeedMoreOnFirstFrame(nested), rec)
    ch.write_inbound(b"\x01a\x01b")
    assert rec.frames == [b"a", b"b", b"x", b"y"]
    assert decoder.pending_bytes == 0


def test_nested_read_continues_the_stream_where_it_stopped(
    decoder_class, recorder_class
):
    # The nested bytes come after all of the current read's bytes, so
    # they complete its last, partial frame.
    decoder = decoder_class(1024, 0, 1, 0, 1)
    rec = recorder_class()
    ch = EmbeddedChannel(decoder, FeedMoreOnFirstFrame(b"c\x01d\x01"), rec)
    ch.write_inbound(b"\x01a\x02b")
    assert rec.frames == [b"a", b"bc", b"d"]
    assert decoder.pending_bytes == 1
