"""Frames whatever the handler does with them, once per build.

The compiled scanner re-narrows a frame the handler let go of into the
next frame of the same chunk instead of making a new view (see
``_narrow_again`` in ``_frame.pyx``). These tests hold the frames in every
way a handler can (kept, weakly referenced, released, hashed, sliced,
exported) and check that no frame ever changes once handed on, that each
frame reads, hashes and compares as its own bytes, and that no view of
the fed storage is left once ``feed`` returns, however it returns. The
pure twin makes a new view every time; it must pass them all the same.
"""

from __future__ import annotations

import gc
import struct
import weakref
from types import ModuleType
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

BODIES = [bytes([i]) * (i % 7 + 1) + b"#%d" % i for i in range(40)]
WIRE = b"".join(struct.pack(">I", len(body)) + body for body in BODIES)


def scanner(build: ModuleType, strip: int = 4) -> Any:
    return build.FrameScanner(build.FrameSpec(1024, 0, 4, 0, strip))


def unexpected(error: Exception) -> None:
    raise AssertionError(f"unexpected decoding error: {error!r}")


class Boom(Exception):
    pass


def test_kept_frames_never_change(build: ModuleType) -> None:
    kept: list[memoryview] = []
    seen: list[bytes] = []

    def emit(frame: memoryview) -> None:
        # Everything kept so far still reads as it did when handed on.
        assert [bytes(f) for f in kept] == seen
        kept.append(frame)
        seen.append(bytes(frame))

    scanner(build).feed(WIRE, emit, unexpected)
    assert seen == BODIES
    assert [bytes(f) for f in kept] == BODIES
    assert len({id(f) for f in kept}) == len(BODIES)


def test_frames_kept_now_and_then_never_change(build: ModuleType) -> None:
    kept: dict[int, memoryview] = {}
    count = 0

    def emit(frame: memoryview) -> None:
        nonlocal count
        assert bytes(frame) == BODIES[count]
        if count % 3 == 1:
            kept[count] = frame
        count += 1

    scanner(build).feed(bytearray(WIRE), emit, unexpected)
    assert count == len(BODIES)
    assert {i: bytes(f) for i, f in kept.items()} == {
        i: BODIES[i] for i in range(1, len(BODIES), 3)
    }


def test_a_weak_reference_never_sees_another_frame(
    build: ModuleType,
) -> None:
    refs: list[weakref.ref[memoryview]] = []

    def emit(frame: memoryview) -> None:
        for i, ref in enumerate(refs):
            old = ref()
            assert old is not frame
            assert old is None or bytes(old) == BODIES[i]
        assert bytes(frame) == BODIES[len(refs)]
        refs.append(weakref.ref(frame))

    scanner(build).feed(WIRE, emit, unexpected)
    assert len(refs) == len(BODIES)
    gc.collect()
    assert all(ref() is None for ref in refs)


def test_released_frames(build: ModuleType) -> None:
    received: list[bytes] = []
    released: list[memoryview] = []

    def emit(frame: memoryview) -> None:
        received.append(bytes(frame))  # raises if handed a released view
        frame.release()
        if len(received) % 2:
            released.append(frame)

    storage = bytearray(WIRE)
    scanner(build).feed(storage, emit, unexpected)
    assert received == BODIES
    for frame in released:
        with pytest.raises(ValueError, match="released"):
            bytes(frame)
    storage.append(0)  # nothing exports the storage any more


def test_each_frame_hashes_as_its_own_bytes(build: ModuleType) -> None:
    hashes: list[int] = []

    def emit(frame: memoryview) -> None:
        assert frame.readonly
        hashes.append(hash(frame))
        hashes.append(hash(frame))  # the cached value, this time

    scanner(build).feed(WIRE, emit, unexpected)
    expected = [hash(body) for body in BODIES for _ in range(2)]
    assert hashes == expected


def test_frames_compare_as_their_own_bytes(build: ModuleType) -> None:
    # The same body twice in a row: equal frames, and still not the same
    # object to anyone who keeps both.
    wire = (struct.pack(">I", 3) + b"abc") * 3
    seen: list[memoryview] = []

    def emit(frame: memoryview) -> None:
        assert frame == b"abc"
        if seen:
            assert frame == seen[-1] and frame is not seen[-1]
        seen.append(frame)

    scanner(build).feed(wire, emit, unexpected)
    assert len(seen) == 3


def test_views_derived_from_a_frame_keep_their_bytes(
    build: ModuleType,
) -> None:
    derived: list[tuple[str, Any]] = []

    def emit(frame: memoryview) -> None:
        # Only views made from the frame are kept, never the frame.
        derived.append(("slice", frame[1:]))
        derived.append(("cast", frame.cast("c")))
        derived.append(("view", memoryview(frame)))
        derived.append(("readonly", frame.toreadonly()))

    scanner(build).feed(bytearray(WIRE), emit, unexpected)
    expected = []
    for body in BODIES:
        expected += [
            ("slice", body[1:]),
            ("cast", body),
            ("view", body),
            ("readonly", body),
        ]
    assert [(kind, bytes(view)) for kind, view in derived] == expected


def test_a_buffer_taken_from_a_frame_keeps_its_bytes(
    build: ModuleType,
) -> None:
    # struct.iter_unpack holds a buffer of the frame itself, not the
    # frame object, until it is exhausted.
    pending: list[Any] = []

    def emit(frame: memoryview) -> None:
        pending.append(struct.iter_unpack("B", frame))

    scanner(build).feed(WIRE, emit, unexpected)
    assert [bytes(b for (b,) in it) for it in pending] == BODIES


def test_no_view_of_the_storage_is_left_after_feed(
    build: ModuleType,
) -> None:
    storage = bytearray(WIRE)
    count = 0

    def emit(frame: memoryview) -> None:
        nonlocal count
        count += 1

    sc = scanner(build)
    sc.feed(storage, emit, unexpected)
    assert count == len(BODIES) and sc.pending_bytes == 0
    storage.extend(b"more")  # a live view would make this a BufferError
    del storage[:]


def test_no_view_is_left_after_emit_raises(build: ModuleType) -> None:
    storage = bytearray(WIRE)
    count = 0

    def emit(frame: memoryview) -> None:
        nonlocal count
        count += 1
        if count == 5:
            raise Boom

    sc = scanner(build)
    try:
        sc.feed(storage, emit, unexpected)
    except Boom:
        pass
    else:
        raise AssertionError("emit's error was not raised")
    # The scanner kept the undecoded rest (as a view), as documented;
    # once it forgets it, nothing refers to the storage.
    assert sc.drop_pending() == len(WIRE) - sum(
        4 + len(body) for body in BODIES[:5]
    )
    storage.extend(b"more")


def test_no_view_is_left_after_stop(build: ModuleType) -> None:
    storage = bytearray(WIRE)
    sc = scanner(build)
    received: list[bytes] = []

    def emit(frame: memoryview) -> None:
        received.append(bytes(frame))
        if len(received) == 3:
            sc.stop()

    sc.feed(storage, emit, unexpected)
    assert received == BODIES[:3]
    rest = sc.take_remainder()
    assert rest is not None
    assert rest.to_bytes() == WIRE[sum(4 + len(b) for b in BODIES[:3]) :]
    del rest
    storage.extend(b"more")


def test_frames_of_a_nested_feed(build: ModuleType) -> None:
    # A feed from inside emit is queued and decoded after the current
    # bytes; its frames come from other storage.
    sc = scanner(build)
    first = bytearray(WIRE)
    second = bytearray(WIRE)
    received: list[bytes] = []
    kept: list[memoryview] = []

    def emit(frame: memoryview) -> None:
        received.append(bytes(frame))
        if len(received) == 2:
            sc.feed(second, emit, unexpected)
            kept.append(frame)
        if len(received) == len(BODIES) + 3:
            kept.append(frame)

    sc.feed(first, emit, unexpected)
    assert received == BODIES + BODIES
    assert [bytes(f) for f in kept] == [BODIES[1], BODIES[2]]
    assert kept[0].obj is first and kept[1].obj is second
    kept.clear()
    first.extend(b"more")
    second.extend(b"more")


# -- any handler, on random input ---------------------------------------------

ACTIONS = st.sampled_from(["drop", "keep", "weakref", "release", "hash"])


@settings(max_examples=200, deadline=None)
@given(
    bodies=st.lists(st.binary(max_size=40), max_size=30),
    actions=st.lists(ACTIONS, min_size=1, max_size=30),
    strip=st.sampled_from([0, 2, 4]),
    cut=st.integers(0, 2000),
)
def test_any_handler_sees_its_own_frames(
    build: ModuleType,
    bodies: list[bytes],
    actions: list[str],
    strip: int,
    cut: int,
) -> None:
    wire = b"".join(struct.pack(">I", len(b) + 4) + b for b in bodies)
    expected = [(struct.pack(">I", len(b) + 4) + b)[strip:] for b in bodies]
    cut %= len(wire) + 1
    sc = build.FrameScanner(build.FrameSpec(1024, 0, 4, -4, strip))
    kept: list[tuple[int, memoryview]] = []
    refs: list[tuple[int, weakref.ref[memoryview]]] = []
    received: list[bytes] = []

    def emit(frame: memoryview) -> None:
        index = len(received)
        received.append(bytes(frame))
        action = actions[index % len(actions)]
        if action == "keep":
            kept.append((index, frame))
        elif action == "weakref":
            refs.append((index, weakref.ref(frame)))
        elif action == "release":
            frame.release()
        elif action == "hash" and frame.readonly:
            assert hash(frame) == hash(expected[index])
        elif action == "hash":
            with pytest.raises(ValueError, match="writable"):
                hash(frame)
        for i, old in kept:
            assert bytes(old) == expected[i]
        for i, ref in refs:
            view = ref()
            assert view is None or bytes(view) == expected[i]

    # A read-only chunk, then a writable one.
    storage = bytearray(wire[cut:])
    sc.feed(wire[:cut], emit, unexpected)
    sc.feed(storage, emit, unexpected)
    assert received == expected
    assert [bytes(f) for _, f in kept] == [expected[i] for i, _ in kept]
    assert sc.pending_bytes == 0
    kept.clear()
    storage.extend(b"more")  # no view of it is left
