# Type stub of the compiled scanner (_frame.pyx). Same API as the
# pure-Python twin, _frame_py.py, which documents it.

from collections.abc import Callable
from typing import Any

from reactor.buffer import ByteBuf

from .errors import FrameError

class FrameSpec:
    max_frame_length: int
    length_field_offset: int
    length_field_length: int
    length_adjustment: int
    initial_bytes_to_strip: int
    fail_fast: bool
    resume_after_too_long: bool
    byteorder: str
    def __init__(
        self,
        max_frame_length: int,
        length_field_offset: int,
        length_field_length: int,
        length_adjustment: int = 0,
        initial_bytes_to_strip: int = 0,
        fail_fast: bool = True,
        byteorder: str = "big",
        resume_after_too_long: bool = False,
    ) -> None: ...

class FrameScanner:
    def __init__(self, spec: FrameSpec) -> None: ...
    @property
    def spec(self) -> FrameSpec: ...
    @property
    def failed(self) -> bool: ...
    @property
    def stopped(self) -> bool: ...
    @property
    def busy(self) -> bool: ...
    @property
    def cumulation(self) -> ByteBuf | None: ...
    @property
    def pending_bytes(self) -> int: ...
    def feed(
        self,
        data: Any,
        emit: Callable[[memoryview], object],
        fail: Callable[[FrameError], object],
    ) -> None: ...
    def feed_to(self, data: Any, ctx: Any) -> None: ...
    def stop(self) -> None: ...
    def take_remainder(self) -> ByteBuf | None: ...
    def drop_pending(self) -> int: ...

def decoder_channel_read(decoder: Any, ctx: Any, msg: Any) -> None: ...
