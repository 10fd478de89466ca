"""FrameReader and the length prefix: any split of a valid stream gives
the same frames, and a length over the limit is refused as soon as it is
read."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from im.protocol import (
    MAX_FRAME_SIZE,
    ContentType,
    ErrorCode,
    FrameReader,
    FrameTooLongError,
    Login,
    Ping,
    SendToUser,
    add_length_prefix,
    decode,
    encode,
    encode_frame,
)

SETTINGS = settings(max_examples=60, deadline=None)


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({cut % (len(data) + 1) for cut in cuts})
    edges = [0, *points, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(edges)]


@SETTINGS
@given(
    bodies=st.lists(st.binary(max_size=300), max_size=6),
    cuts=st.lists(st.integers(min_value=0), max_size=20),
    kind=st.sampled_from([bytes, bytearray, memoryview]),
)
def test_any_split_gives_the_same_frames(
    bodies: list[bytes], cuts: list[int], kind: type
) -> None:
    stream = b"".join(add_length_prefix(body) for body in bodies)
    reader = FrameReader()
    frames = []
    for chunk in split(stream, cuts):
        frames += reader.feed(kind(chunk))
    assert frames == bodies
    assert reader.buffered == 0


def test_a_byte_at_a_time() -> None:
    packets = [
        Login("token", "phone", "netim/0.1"),
        Ping(),
        SendToUser("c-1", "bob", ContentType.TEXT, "hi 😀".encode()),
    ]
    stream = b"".join(encode_frame(p, i) for i, p in enumerate(packets))
    reader = FrameReader()
    frames = [
        f for i in range(len(stream)) for f in reader.feed(stream[i:][:1])
    ]
    assert [decode(frame)[1] for frame in frames] == packets


def test_an_unfinished_frame_waits() -> None:
    reader = FrameReader()
    data = encode_frame(Ping())
    assert reader.feed(data[:3]) == []
    assert reader.feed(data[3:-1]) == []
    assert reader.buffered == len(data) - 1
    assert reader.feed(data[-1:]) == [encode(Ping())]
    assert reader.buffered == 0


def test_too_long_is_refused_at_the_length() -> None:
    reader = FrameReader(max_frame_size=10)
    assert reader.feed(b"\x00\x00\x00\x0a" + bytes(10)) == [bytes(10)]
    # Only the four length bytes: no need to wait for the frame.
    with pytest.raises(FrameTooLongError) as info:
        reader.feed(b"\x00\x00\x00\x0b")
    assert (info.value.code, info.value.close) == (
        ErrorCode.FRAME_TOO_LONG,
        True,
    )


def test_a_failed_reader_stays_failed() -> None:
    reader = FrameReader(max_frame_size=10)
    with pytest.raises(FrameTooLongError):
        reader.feed(b"\xff\xff\xff\xff")
    with pytest.raises(FrameTooLongError):
        reader.feed(add_length_prefix(b"fine"))


@pytest.mark.parametrize(
    "junk",
    [
        b"GET / HTTP/1.1\r\nHost: chat.example\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03",  # a TLS hello
    ],
    ids=["http", "tls"],
)
def test_junk_is_refused_by_its_first_four_bytes(junk: bytes) -> None:
    # "GET " read as a length is 1.2 GB: refused before any buffering.
    with pytest.raises(FrameTooLongError):
        FrameReader().feed(junk[:4])


def test_the_default_limit_is_the_largest_frame() -> None:
    reader = FrameReader()
    assert reader.max_frame_size == MAX_FRAME_SIZE
    body = bytes(MAX_FRAME_SIZE)
    assert reader.feed(add_length_prefix(body)) == [body]
    with pytest.raises(FrameTooLongError):
        reader.feed((MAX_FRAME_SIZE + 1).to_bytes(4, "big"))


@pytest.mark.parametrize("size", [0, -1, 2**32])
def test_a_limit_outside_the_length_field(size: int) -> None:
    with pytest.raises(ValueError, match="max_frame_size"):
        FrameReader(size)


def test_the_prefix_counts_the_body_only() -> None:
    assert add_length_prefix(b"") == b"\x00\x00\x00\x00"
    assert add_length_prefix(b"abc") == b"\x00\x00\x00\x03abc"
    data = encode(Ping())
    assert encode_frame(Ping()) == len(data).to_bytes(4, "big") + data
