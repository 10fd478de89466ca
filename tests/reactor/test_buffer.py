"""ByteBuf: indexes, integers, views, compaction; the adaptive read size."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reactor.buffer import AdaptiveReadSize, ByteBuf


def test_write_then_read_integers_both_byte_orders():
    buf = ByteBuf(4)
    buf.write_u8(0xAB)
    buf.write_u16(0x0102)
    buf.write_u16_le(0x0102)
    buf.write_u32(0xDEADBEEF)
    buf.write_u32_le(0xDEADBEEF)
    buf.write_i32(-2)
    buf.write_u64(2**63 + 5)
    buf.write_u64_le(7)
    buf.write_i64(-9)
    assert buf.read_u8() == 0xAB
    assert buf.read_u16() == 0x0102
    assert buf.read_u16_le() == 0x0102
    assert buf.read_u32() == 0xDEADBEEF
    assert buf.read_u32_le() == 0xDEADBEEF
    assert buf.read_i32() == -2
    assert buf.read_u64() == 2**63 + 5
    assert buf.read_u64_le() == 7
    assert buf.read_i64() == -9
    assert not buf.is_readable()


def test_byte_layout_is_what_the_wire_expects():
    buf = ByteBuf()
    buf.write_u32(1)
    buf.write_u16_le(1)
    assert buf.to_bytes() == b"\x00\x00\x00\x01\x01\x00"


def test_reading_past_the_writer_index_raises_and_moves_nothing():
    buf = ByteBuf.wrap(b"\x00\x01")
    with pytest.raises(IndexError):
        buf.read_u32()
    assert buf.reader_index == 0
    assert buf.read_u16() == 1


def test_get_and_set_are_absolute():
    buf = ByteBuf.wrap(b"\x00\x00\x00\x00\x00")
    buf.set_uint(1, 3, 0x010203)
    assert buf.get_uint(1, 3) == 0x010203
    assert buf.get_uint(1, 3, big_endian=False) == 0x030201
    assert buf.get_u8(3) == 3
    assert buf.reader_index == 0 and buf.writer_index == 5


def test_slices_are_zero_copy_views():
    buf = ByteBuf.wrap(b"hello world")
    view = buf.slice(6, 5)
    assert bytes(view) == b"world"
    assert view.obj is buf._data  # shares storage, no copy
    assert buf.read_slice(5).tobytes() == b"hello"
    assert buf.reader_index == 5


def test_growing_while_a_view_lives_keeps_the_view_intact():
    buf = ByteBuf(8)
    buf.write_bytes(b"abcdefgh")
    frame = buf.read_slice(4)
    buf.write_bytes(b"x" * 100)  # must grow; the bytearray is exported
    assert bytes(frame) == b"abcd"
    assert buf.to_bytes() == b"efgh" + b"x" * 100


def test_compaction_while_a_view_lives_keeps_the_view_intact():
    buf = ByteBuf(16)
    buf.write_bytes(b"0123456789abcdef")
    frame = buf.read_slice(12)
    buf.discard_read_bytes()
    assert bytes(frame) == b"0123456789ab"
    assert buf.to_bytes() == b"cdef"
    assert buf.reader_index == 0


def test_compaction_in_place_when_no_view_lives():
    buf = ByteBuf(16)
    buf.write_bytes(b"0123456789abcdef")
    buf.skip_bytes(12)
    storage = buf._data
    buf.discard_read_bytes()
    assert buf._data is storage
    assert buf.to_bytes() == b"cdef"


def test_discard_some_read_bytes_only_moves_past_half():
    buf = ByteBuf(16)
    buf.write_bytes(b"0123456789abcdef")
    buf.skip_bytes(4)
    buf.discard_some_read_bytes()
    assert buf.reader_index == 4  # not worth a move yet
    buf.skip_bytes(6)
    buf.discard_some_read_bytes()
    assert buf.reader_index == 0 and buf.to_bytes() == b"abcdef"
    buf.skip_bytes(6)
    buf.discard_some_read_bytes()
    assert buf.reader_index == buf.writer_index == 0


def test_writable_view_then_advance_like_recv_into():
    buf = ByteBuf(4)
    view = buf.writable_view(10)
    view[:3] = b"abc"
    del view
    buf.advance_writer(3)
    assert buf.to_bytes() == b"abc"
    with pytest.raises(IndexError):
        buf.advance_writer(buf.writable_bytes() + 1)


def test_index_setters_validate():
    buf = ByteBuf.wrap(b"abc")
    with pytest.raises(IndexError):
        buf.reader_index = 4
    with pytest.raises(IndexError):
        buf.writer_index = 100
    buf.reader_index = 2
    assert buf.read_bytes(1) == b"c"


@given(st.lists(st.binary(max_size=300), max_size=30))
def test_any_sequence_of_writes_reads_back_the_same(chunks):
    buf = ByteBuf(1)
    for chunk in chunks:
        buf.write_bytes(chunk)
        if buf.readable_bytes() > 50:
            buf.skip_bytes(0)
            buf.discard_some_read_bytes()
    assert buf.to_bytes() == b"".join(chunks)


def test_adaptive_read_size_grows_fast_and_shrinks_slowly():
    size = AdaptiveReadSize(minimum=64, initial=1024, maximum=65536)
    assert size.guess == 1024
    size.record(1024)  # a full read: jump four steps
    assert size.guess == 16384
    size.record(100)  # one small read: not yet
    assert size.guess == 16384
    size.record(100)  # the second in a row: one step down
    assert size.guess == 8192
    for _ in range(10):
        size.record(65536)
    assert size.guess == 65536  # capped


def test_adaptive_read_size_rejects_inconsistent_bounds():
    with pytest.raises(ValueError):
        AdaptiveReadSize(minimum=4096, initial=1024)


def test_reusing_emptied_storage_never_changes_a_live_view():
    for empty in ("clear", "discard_read_bytes", "discard_some_read_bytes"):
        buf = ByteBuf(16)
        buf.write_bytes(b"original")
        view = buf.read_slice(8)  # everything read, the view lives on
        getattr(buf, empty)()
        buf.write_bytes(b"OVERWRT!")
        assert bytes(view) == b"original", empty
        assert buf.to_bytes() == b"OVERWRT!"
