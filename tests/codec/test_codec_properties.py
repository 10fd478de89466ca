"""Property tests: splits do not matter, the two builds agree byte for
byte, and prepender output decodes back to the messages."""

from __future__ import annotations

import itertools
from types import ModuleType
from typing import Any

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from codec import LengthFieldPrepender, _frame_py, _impl
from reactor.buffer import ByteBuf
from reactor.embedded import EmbeddedChannel

SETTINGS = settings(max_examples=200, deadline=None)

FIELD_SIZES = st.sampled_from([1, 2, 3, 4, 8])
BYTE_ORDERS = st.sampled_from(["big", "little"])
CHUNK_KINDS = st.sampled_from(["bytes", "bytearray", "memoryview", "ByteBuf"])


def as_message(data: bytes, kind: str) -> Any:
    """``data`` as a fresh message of the given kind (each scanner owns
    what it is fed, so every run gets its own objects)."""
    if kind == "bytes":
        return bytes(data)
    if kind == "bytearray":
        return bytearray(data)
    if kind == "memoryview":
        return memoryview(bytearray(data))
    buf = ByteBuf.wrap(b"?" * (len(data) % 3) + data)
    buf.skip_bytes(len(data) % 3)
    return buf


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    edges = [0, *points, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(edges)]


@st.composite
def spec_settings(draw: st.DrawFn) -> tuple[Any, ...]:
    size = draw(FIELD_SIZES)
    offset = draw(st.integers(0, 3))
    maximum = draw(st.integers(offset + size, 120))
    adjustment = draw(st.integers(-6, 6))
    strip = draw(st.integers(0, 6))
    return (
        maximum,
        offset,
        size,
        adjustment,
        strip,
        draw(st.booleans()),
        draw(BYTE_ORDERS),
        draw(st.booleans()),
    )


@st.composite
def valid_frame(draw: st.DrawFn, spec: tuple[Any, ...]) -> bytes:
    maximum, offset, size, adjustment, strip, _, order, _ = spec
    header_end = offset + size
    lowest = max(header_end, strip, header_end + adjustment)
    assume(lowest <= maximum)
    length = draw(st.integers(lowest, maximum))
    raw = length - header_end - adjustment
    return (
        draw(st.binary(min_size=offset, max_size=offset))
        + raw.to_bytes(size, order)
        + draw(
            st.binary(
                min_size=length - header_end, max_size=length - header_end
            )
        )
    )


# -- any split of a valid stream gives the same frames ------------------------


@SETTINGS
@given(data=st.data())
def test_any_split_gives_the_same_frames(build: ModuleType, data: Any) -> None:
    spec = data.draw(spec_settings())
    frames = data.draw(st.lists(valid_frame(spec), max_size=8))
    stream = b"".join(frames)
    cuts = data.draw(st.lists(st.integers(0, 10_000), max_size=12))
    scanner = build.FrameScanner(build.FrameSpec(*spec))
    out: list[bytes] = []
    errors: list[Exception] = []
    for chunk in split(stream, cuts):
        message = as_message(chunk, data.draw(CHUNK_KINDS))
        scanner.feed(message, lambda f: out.append(bytes(f)), errors.append)
    strip = spec[4]
    assert errors == []
    assert out == [f[strip:] for f in frames]
    assert scanner.cumulation is None and scanner.pending_bytes == 0


# -- the two builds agree on anything -----------------------------------------


def run(module: ModuleType, spec: tuple[Any, ...], plan: Any) -> list[Any]:
    """Feed ``plan`` to a scanner of ``module``; return all it did."""
    chunks, kinds, stop_after = plan
    scanner = module.FrameScanner(module.FrameSpec(*spec))
    log: list[Any] = []

    def emit(frame: memoryview) -> None:
        log.append(("frame", bytes(frame), frame.format, frame.readonly))
        if stop_after is not None and len(log) == stop_after:
            scanner.stop()

    def fail(error: Exception) -> None:
        log.append(
            (
                "error",
                type(error).__name__,
                str(error),
                getattr(error, "frame_length", "-"),
                getattr(error, "max_frame_length", "-"),
            )
        )

    for chunk, kind in zip(chunks, kinds, strict=True):
        scanner.feed(as_message(chunk, kind), emit, fail)
        cumulation = scanner.cumulation
        log.append(
            (
                "state",
                scanner.failed,
                scanner.stopped,
                scanner.pending_bytes,
                None if cumulation is None else cumulation.capacity,
            )
        )
    rest = scanner.take_remainder()
    log.append(("rest", None if rest is None else rest.to_bytes()))
    return log


@st.composite
def oversized_frame(draw: st.DrawFn, spec: tuple[Any, ...]) -> bytes:
    """A well-formed frame a little over the limit, body included."""
    maximum, offset, size, adjustment, _, _, order, _ = spec
    header_end = offset + size
    length = draw(st.integers(maximum + 1, maximum + 40))
    raw = length - header_end - adjustment
    assume(0 <= raw < 1 << (8 * size - 1))
    return (
        bytes(offset) + raw.to_bytes(size, order) + bytes(length - header_end)
    )


@st.composite
def bad_header(draw: st.DrawFn, spec: tuple[Any, ...]) -> bytes:
    """A header announcing a length no frame can have."""
    _, offset, size, adjustment, strip, _, order, _ = spec
    header_end = offset + size
    if size == 8 and draw(st.booleans()):
        raw = draw(st.integers(-(1 << 63), -1))
        field = raw.to_bytes(8, order, signed=True)
    else:
        raw = draw(st.integers(0, max(header_end, strip) - header_end))
        raw -= adjustment
        assume(0 <= raw < 1 << (8 * size - 1))
        assume(raw + header_end + adjustment < max(header_end, strip))
        field = raw.to_bytes(size, order)
    return bytes(offset) + field


@st.composite
def stream_pieces(draw: st.DrawFn, spec: tuple[Any, ...]) -> bytes:
    piece = st.one_of(
        valid_frame(spec),
        valid_frame(spec),
        oversized_frame(spec),
        bad_header(spec),
        st.binary(max_size=24),
    )
    return b"".join(draw(st.lists(piece, min_size=1, max_size=10)))


@pytest.mark.skipif(
    _impl.IMPLEMENTATION != "compiled", reason="compiled build not in use"
)
@SETTINGS
@given(data=st.data())
def test_compiled_and_pure_agree_on_any_input(data: Any) -> None:
    spec = data.draw(spec_settings())
    pieces = stream_pieces(spec)
    stream = data.draw(
        st.one_of(pieces, pieces, pieces, st.binary(max_size=300))
    )
    chunks = split(stream, data.draw(st.lists(st.integers(0, 400))))
    kinds = [data.draw(CHUNK_KINDS) for _ in chunks]
    stop_after = data.draw(st.one_of(st.none(), st.none(), st.integers(1, 4)))
    plan = (chunks, kinds, stop_after)
    assert run(_impl.scanner, spec, plan) == run(_frame_py, spec, plan)


# -- prepender output decodes back --------------------------------------------


@SETTINGS
@given(
    payloads=st.lists(st.binary(max_size=250), max_size=10),
    size=FIELD_SIZES,
    byteorder=BYTE_ORDERS,
    adjustment=st.integers(0, 3),
    includes=st.booleans(),
    cuts=st.lists(st.integers(0, 5000), max_size=10),
)
def test_prepender_round_trip(
    decoder_class: Any,
    payloads: list[bytes],
    size: int,
    byteorder: str,
    adjustment: int,
    includes: bool,
    cuts: list[int],
) -> None:
    prepender = LengthFieldPrepender(
        size,
        adjustment,
        length_includes_length_field=includes,
        byteorder=byteorder,
    )
    out = EmbeddedChannel(prepender)
    out.write_outbound(*payloads)
    stream = b"".join(bytes(m) for m in out.outbound)
    extra = adjustment + (size if includes else 0)
    decoder = decoder_class(
        1 << 16, 0, size, -extra, size, byteorder=byteorder
    )
    inbound = EmbeddedChannel(decoder)
    for chunk in split(stream, cuts):
        inbound.write_inbound(chunk)
    assert [bytes(m) for m in inbound.inbound] == payloads
