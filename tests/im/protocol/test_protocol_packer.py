"""``pack_msgpack``: msgpack.packb's bytes, from one reused Packer per
thread."""

from __future__ import annotations

import threading
from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from im.protocol import pack_msgpack

# What the protocol's records hold: integers, text, bytes, flags, nil,
# and arrays of them.
scalars = (
    st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.text()
    | st.binary()
    | st.booleans()
    | st.none()
)
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=5))


@settings(max_examples=200, deadline=None)
@given(values)
def test_the_bytes_are_packb_s(value: Any) -> None:
    assert pack_msgpack(value) == msgpack.packb(value, use_bin_type=True)


def test_a_failed_pack_leaves_nothing_for_the_next() -> None:
    with pytest.raises(TypeError):
        pack_msgpack([1, "half written", object()])
    assert pack_msgpack([2]) == msgpack.packb([2], use_bin_type=True)


def test_threads_packing_at_once_each_get_their_own_bytes() -> None:
    # Each thread packs into its own Packer; none sees another's bytes.
    errors: list[str] = []
    start = threading.Barrier(4)

    def pack_many(tag: int) -> None:
        start.wait()
        for n in range(2000):
            value = [tag, n, b"x" * (tag * 10), "t" * n]
            if msgpack.unpackb(pack_msgpack(value)) != value:
                errors.append(f"thread {tag}, value {n}")
                return

    threads = [threading.Thread(target=pack_many, args=(t,)) for t in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
