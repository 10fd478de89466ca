"""OutboundBuffer: flush regions, partial writes, futures, watermarks."""

import pytest

from reactor.buffer import ByteBuf
from reactor.future import Future
from reactor.outbound import (
    IOV_MAX,
    OutboundBuffer,
    WriteBufferWaterMark,
)


def make(low=100, high=200):
    changes = []
    out = OutboundBuffer(
        lambda: changes.append(out.unwritable), WriteBufferWaterMark(low, high)
    )
    return out, changes


def test_write_queues_and_flush_marks_ready():
    out, _ = make()
    out.add(b"abc", None)
    out.add(ByteBuf.wrap(b"de"), None)
    assert out.flushed == 0
    out.add_flush()
    assert out.flushed == 2 and out.flushed_bytes == 5
    out.add(b"late", None)  # written after the flush: not ready yet
    assert [bytes(b) for b in out.flushed_buffers(1 << 20)] == [b"abc", b"de"]


def test_partial_write_resumes_mid_entry():
    out, _ = make()
    for chunk in (b"abc", b"defg", b"hi"):
        out.add(chunk, None)
    out.add_flush()
    out.remove_bytes(5)  # abc + de
    assert out.flushed == 2 and out.head_offset == 2
    assert [bytes(b) for b in out.flushed_buffers(1 << 20)] == [b"fg", b"hi"]
    out.remove_bytes(4)
    assert out.is_empty() and out.pending == 0


def test_futures_complete_when_their_last_byte_left():
    out, _ = make()
    first, second = Future(), Future()
    out.add(b"abc", first)
    out.add(b"", None)
    out.add(b"de", second)
    out.add_flush()
    out.remove_bytes(2)
    assert not first.done()
    out.remove_bytes(1)
    assert first.succeeded() and not second.done()
    out.remove_bytes(2)
    assert second.succeeded()


def test_fail_all_fails_waiting_futures_and_frees_everything():
    out, _ = make()
    waiting = Future()
    out.add(b"x" * 50, waiting)
    out.add_flush()
    out.add(b"y", None)
    out.fail_all(ConnectionResetError("peer reset"))
    assert isinstance(waiting.exception(), ConnectionResetError)
    assert out.is_empty() and out.pending == 0


def test_watermarks_flip_writability_once_each_way():
    out, changes = make(low=100, high=200)
    out.add(b"x" * 100, None)  # 100 + overhead
    assert changes == []
    out.add(b"x" * 100, None)  # above high: unwritable
    assert changes == [True]
    out.add(b"x" * 100, None)  # still above: no second event
    assert changes == [True]
    out.add_flush()
    out.remove_bytes(250)
    assert changes == [True]  # pending still above low
    out.remove_bytes(50)
    assert changes == [True, False]


def test_empty_writes_complete_in_order_once_retired():
    out, _ = make()
    first, after_abc = Future(), Future()
    out.add(b"", first)
    out.add(b"abc", None)
    out.add(memoryview(b""), after_abc)
    out.add_flush()
    out.remove_bytes(0)  # what the channel does when nothing was sent
    assert first.succeeded() and not after_abc.done()
    out.remove_bytes(3)
    assert after_abc.succeeded()
    assert out.is_empty() and out.pending == 0


def test_only_empty_writes_offer_nothing():
    out, _ = make()
    done = Future()
    out.add(b"", done)
    out.add_flush()
    _, offered = out.gather(1 << 20)
    assert offered == 0
    out.remove_bytes(0)
    assert done.succeeded() and out.is_empty()


def test_gathering_write_respects_iov_max_and_byte_cap():
    out, _ = make(high=1 << 30)
    for _ in range(IOV_MAX + 10):
        out.add(b"ab", None)
    out.add_flush()
    assert len(out.flushed_buffers(1 << 30)) == IOV_MAX
    assert len(out.flushed_buffers(7)) == 4  # stops once 7 bytes reached
    assert len(out.flushed_buffers(0)) == 1  # always makes progress


def test_unsupported_message_type_is_refused_clearly():
    out, _ = make()
    with pytest.raises(TypeError, match="cannot write int"):
        out.add(42, None)


def test_water_mark_validation():
    with pytest.raises(ValueError):
        WriteBufferWaterMark(low=10, high=5)
