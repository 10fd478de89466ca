"""Fixtures for the codec tests: every test runs once per scanner build.

``build`` is the scanner module under test: the compiled one (when it
loaded, and pure Python was not forced with ``NETIM_PURE_PYTHON=1``) and
the pure-Python twin, always. Handlers are bound to a build by
subclassing with ``implementation`` set, so that both builds run through
the very same handler code.
"""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType
from typing import Any

import pytest

from codec import _frame_py, _impl
from codec.frame import LengthFieldBasedFrameDecoder
from reactor.embedded import EmbeddedChannel
from reactor.pipeline import ChannelHandlerContext, ChannelInboundHandler


def _builds() -> list[Any]:
    builds = [pytest.param(_frame_py, id="python")]
    if _impl.IMPLEMENTATION == "compiled":
        builds.insert(0, pytest.param(_impl.scanner, id="compiled"))
    return builds


# Session-scoped: a build is a module and holds no state, and hypothesis
# tests may use these fixtures.
@pytest.fixture(params=_builds(), scope="session")
def build(request: pytest.FixtureRequest) -> ModuleType:
    module: ModuleType = request.param
    return module


@pytest.fixture(scope="session")
def decoder_class(build: ModuleType) -> type[LengthFieldBasedFrameDecoder]:
    return type(
        f"Decoder_{build.__name__.rsplit('.', 1)[-1]}",
        (LengthFieldBasedFrameDecoder,),
        {"__slots__": (), "implementation": build},
    )


class Recorder(ChannelInboundHandler):
    """The last handler: records what reaches it, in order.

    Frames are kept as ``bytes`` copies (``frames``) and also as the
    objects received (``messages``); errors stop here instead of
    reaching the tail (where ``write_inbound`` would raise them).
    """

    def __init__(self) -> None:
        self.messages: list[Any] = []
        self.errors: list[BaseException] = []
        self.events: list[str] = []

    @property
    def frames(self) -> list[bytes]:
        return [bytes(m) for m in self.messages]

    def channel_read(self, ctx: ChannelHandlerContext, msg: Any) -> None:
        self.messages.append(msg)
        self.events.append("read")

    def channel_read_complete(self, ctx: ChannelHandlerContext) -> None:
        self.events.append("read_complete")

    def channel_inactive(self, ctx: ChannelHandlerContext) -> None:
        self.events.append("inactive")

    def exception_caught(
        self, ctx: ChannelHandlerContext, exc: BaseException
    ) -> None:
        self.errors.append(exc)
        self.events.append(f"error:{type(exc).__name__}")


@pytest.fixture
def recorder_class() -> type[Recorder]:
    return Recorder


Harness = Callable[..., tuple[EmbeddedChannel, Any, Recorder]]


@pytest.fixture
def harness(decoder_class: type[LengthFieldBasedFrameDecoder]) -> Harness:
    """``harness(*decoder_args, **decoder_kwargs)`` gives a channel
    ``decoder -> recorder``, the decoder, and the recorder."""

    def make(
        *args: Any, **kwargs: Any
    ) -> tuple[EmbeddedChannel, Any, Recorder]:
        decoder = decoder_class(*args, **kwargs)
        recorder = Recorder()
        return EmbeddedChannel(decoder, recorder), decoder, recorder

    return make
