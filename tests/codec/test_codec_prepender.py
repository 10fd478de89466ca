"""LengthFieldPrepender: Netty's prepender tests, limits, output shape."""

from __future__ import annotations

import pytest

from codec import LengthFieldOverflowError, LengthFieldPrepender
from codec.frame import JOIN_LIMIT
from reactor.buffer import ByteBuf
from reactor.embedded import EmbeddedChannel
from reactor.future import Future


def encode(prepender: LengthFieldPrepender, msg: object) -> list[object]:
    ch = EmbeddedChannel(prepender)
    ch.write_outbound(msg)
    out = []
    while (item := ch.read_outbound()) is not None:
        out.append(item)
    return out


def wire(prepender: LengthFieldPrepender, msg: object) -> bytes:
    return b"".join(bytes(part) for part in encode(prepender, msg))


# -- Netty's LengthFieldPrependerTest -----------------------------------------


def test_prepend_length():
    assert wire(LengthFieldPrepender(4), b"A") == b"\x00\x00\x00\x01A"


def test_prepend_length_including_length_field():
    prepender = LengthFieldPrepender(4, length_includes_length_field=True)
    assert wire(prepender, b"A") == b"\x00\x00\x00\x05A"


def test_prepend_adjusted_length():
    assert wire(LengthFieldPrepender(4, -1), b"A") == b"\x00\x00\x00\x00A"


def test_negative_length_is_refused():
    ch = EmbeddedChannel(LengthFieldPrepender(4, -2))
    with pytest.raises(LengthFieldOverflowError, match="cannot prepend"):
        ch.write_outbound(b"A")
    assert ch.read_outbound() is None


def test_prepend_length_little_endian():
    prepender = LengthFieldPrepender(4, byteorder="little")
    assert wire(prepender, b"A") == b"\x01\x00\x00\x00A"


# -- field sizes and limits ---------------------------------------------------


@pytest.mark.parametrize(
    ("size", "limit"),
    [(1, 255), (2, 65535), (3, (1 << 24) - 1), (4, (1 << 32) - 1)],
)
def test_largest_length_of_each_field(size, limit):
    # Checked with an adjustment, so no huge payload is needed.
    prepender = LengthFieldPrepender(size, limit - 1)
    assert wire(prepender, b"x") == limit.to_bytes(size, "big") + b"x"
    with pytest.raises(LengthFieldOverflowError, match=f"0..{limit}"):
        EmbeddedChannel(LengthFieldPrepender(size, limit)).write_outbound(b"x")


def test_eight_byte_field_holds_what_the_decoder_reads_back():
    limit = (1 << 63) - 1
    prepender = LengthFieldPrepender(8, limit - 1)
    assert wire(prepender, b"x") == limit.to_bytes(8, "big") + b"x"
    with pytest.raises(LengthFieldOverflowError):
        EmbeddedChannel(LengthFieldPrepender(8, limit)).write_outbound(b"x")


def test_one_byte_field_refuses_a_long_message():
    ch = EmbeddedChannel(LengthFieldPrepender(1))
    ch.write_outbound(b"y" * 255)
    with pytest.raises(LengthFieldOverflowError) as info:
        ch.write_outbound(b"y" * 256)
    assert str(info.value) == (
        "cannot prepend length 256 to a 256-byte message: a 1-byte length "
        "field holds 0..255 (the message is too long for this prepender, "
        "or length_adjustment makes it negative)"
    )


def test_refusal_fails_the_writes_future():
    ch = EmbeddedChannel(LengthFieldPrepender(1))
    promise = Future()
    ch.pipeline.write(b"z" * 300, promise)
    assert promise.failed()
    assert isinstance(promise.exception(), LengthFieldOverflowError)
    ch.check_exception()  # the future took the error, not the pipeline


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"length_field_length": 5}, ValueError),
        ({"length_field_length": 4, "byteorder": "native"}, ValueError),
        ({"length_adjustment": 1.5}, TypeError),
    ],
)
def test_bad_settings_are_refused(kwargs, error):
    with pytest.raises(error):
        LengthFieldPrepender(**kwargs)


# -- output shape -------------------------------------------------------------


@pytest.mark.parametrize(
    "msg",
    [b"abc", bytearray(b"abc"), memoryview(b"abc"), ByteBuf.wrap(b"abc")],
    ids=["bytes", "bytearray", "memoryview", "ByteBuf"],
)
def test_small_message_goes_out_as_one_joined_bytes(msg):
    (out,) = encode(LengthFieldPrepender(2), msg)
    assert type(out) is bytes
    assert out == b"\x00\x03abc"


def test_large_message_goes_out_as_header_then_the_payload_itself():
    payload = b"p" * (JOIN_LIMIT + 1)
    header, body = encode(LengthFieldPrepender(4), payload)
    assert header == (JOIN_LIMIT + 1).to_bytes(4, "big")
    assert body is payload


def test_large_byte_buf_is_not_copied():
    buf = ByteBuf.wrap(b"q" * (JOIN_LIMIT + 11))
    buf.skip_bytes(10)
    header, body = encode(LengthFieldPrepender(4), buf)
    assert header == (JOIN_LIMIT + 1).to_bytes(4, "big")
    assert isinstance(body, memoryview)
    assert body.obj is buf.view().obj
    assert len(body) == JOIN_LIMIT + 1


def test_future_completes_once_both_parts_are_written():
    ch = EmbeddedChannel(LengthFieldPrepender(4))
    promise = Future()
    ch.pipeline.write(b"w" * (JOIN_LIMIT + 1), promise)
    assert not promise.done()
    ch.pipeline.flush()
    assert promise.succeeded()
    assert len(ch.outbound) == 2


def test_memoryview_of_other_formats_counts_bytes():
    words = memoryview(bytearray(8)).cast("I")
    assert wire(LengthFieldPrepender(1), words) == b"\x08" + bytes(8)


def test_other_messages_pass_through():
    marker = object()
    assert encode(LengthFieldPrepender(4), marker) == [marker]


def test_one_prepender_serves_many_channels():
    prepender = LengthFieldPrepender(2)
    one, two = EmbeddedChannel(prepender), EmbeddedChannel(prepender)
    one.write_outbound(b"1")
    two.write_outbound(b"22")
    assert one.read_outbound() == b"\x00\x011"
    assert two.read_outbound() == b"\x00\x0222"


# -- frame(): framing once for many channels ----------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {"length_field_length": 4},
        {"length_field_length": 2, "byteorder": "little"},
        {"length_field_length": 3, "length_adjustment": 2},
        {"length_field_length": 8, "length_includes_length_field": True},
    ],
)
@pytest.mark.parametrize("size", [0, 1, 64, JOIN_LIMIT, JOIN_LIMIT + 1])
def test_frame_is_what_write_sends(kwargs: dict, size: int) -> None:
    prepender = LengthFieldPrepender(**kwargs)
    payload = bytes(range(256)) * (size // 256) + b"p" * (size % 256)
    assert prepender.frame(payload) == wire(prepender, payload)


def test_frame_refuses_what_write_refuses() -> None:
    with pytest.raises(LengthFieldOverflowError, match="256-byte message"):
        LengthFieldPrepender(1).frame(b"y" * 256)


def test_a_frame_written_from_the_prependers_context_is_not_framed_again() -> (
    None
):
    prepender = LengthFieldPrepender(4)
    ch = EmbeddedChannel(prepender)
    framed = prepender.frame(b"hello")
    context = ch.pipeline.context(prepender)
    assert context is not None
    context.write(framed)
    ch.flush()
    assert bytes(ch.read_outbound()) == b"\x00\x00\x00\x05hello"
    assert ch.read_outbound() is None
