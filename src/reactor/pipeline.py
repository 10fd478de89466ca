"""The channel pipeline: a chain of handlers that events travel through.

Every channel owns one pipeline, a doubly linked list of contexts::

    head <-> ctx(decoder) <-> ctx(business) <-> ... <-> tail

Inbound events (bytes read, channel became active, an error...) enter at
the head and travel towards the tail. Outbound operations (write, flush,
close, read) start at the tail, or at the context that issued them, and
travel towards the head, which performs them on the transport.

Where an operation starts matters, as in Netty: ``channel.write()`` starts
at the tail and passes every outbound handler, while ``ctx.write()`` starts
just before ``ctx`` and skips the outbound handlers added after it.

Two details keep dispatch cheap:

* **Skip masks.** For each handler class we compute once which callbacks
  it really overrides. An event jumps over contexts whose handler would
  only pass it on, so a pipeline of five handlers costs one Python call
  per handler that cares, not five.
* **Removal in flight.** A removed context keeps its links, so an event
  that is inside it when it is removed still finds its way onwards; its
  mask is cleared so no new event enters it.

Errors follow Netty: an exception raised by an inbound callback goes to
the *same* handler's ``exception_caught``; one raised by an outbound
callback fails that operation's future (or, when the caller passed no
future, becomes an ``exception_caught`` event). An exception that reaches
the tail is logged once, naming the channel, and the loop carries on.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Final

from .future import Future

if TYPE_CHECKING:
    from .channel import Channel

__all__ = [
    "ChannelDuplexHandler",
    "ChannelHandler",
    "ChannelHandlerContext",
    "ChannelInboundHandler",
    "ChannelOutboundHandler",
    "ChannelPipeline",
    "PipelineError",
]

_log = logging.getLogger("reactor.pipeline")

# -- skip masks ---------------------------------------------------------------

M_REGISTERED: Final = 1 << 0
M_UNREGISTERED: Final = 1 << 1
M_ACTIVE: Final = 1 << 2
M_INACTIVE: Final = 1 << 3
M_READ: Final = 1 << 4
M_READ_COMPLETE: Final = 1 << 5
M_USER_EVENT: Final = 1 << 6
M_WRITABILITY: Final = 1 << 7
M_EXCEPTION: Final = 1 << 8
M_OUT_READ: Final = 1 << 9
M_WRITE: Final = 1 << 10
M_FLUSH: Final = 1 << 11
M_CLOSE: Final = 1 << 12
# Only the head has this bit: it marks where operations reach the transport.
M_TRANSPORT: Final = 1 << 13
M_ALL_INBOUND: Final = (1 << 9) - 1
M_ALL_OUTBOUND: Final = M_OUT_READ | M_WRITE | M_FLUSH | M_CLOSE

_INBOUND_METHODS: Final = (
    ("channel_registered", M_REGISTERED),
    ("channel_unregistered", M_UNREGISTERED),
    ("channel_active", M_ACTIVE),
    ("channel_inactive", M_INACTIVE),
    ("channel_read", M_READ),
    ("channel_read_complete", M_READ_COMPLETE),
    ("user_event_triggered", M_USER_EVENT),
    ("channel_writability_changed", M_WRITABILITY),
    ("exception_caught", M_EXCEPTION),
)
_OUTBOUND_METHODS: Final = (
    ("read", M_OUT_READ),
    ("write", M_WRITE),
    ("flush", M_FLUSH),
    ("close", M_CLOSE),
)


class PipelineError(Exception):
    """Our misuse of the pipeline: a duplicate name, a missing handler."""


# -- handler base classes -----------------------------------------------------


class ChannelHandler:
    """Base of all handlers.

    A handler instance belongs to one pipeline unless its class sets
    ``sharable = True`` (and then it must keep no per-channel state).
    """

    # A slot, so that handlers which declare __slots__ stay dict-free
    # (one handler per connection adds up at 10,000 connections).
    __slots__ = ("_in_pipeline",)
    _in_pipeline: bool

    sharable: bool = False

    def handler_added(self, ctx: ChannelHandlerContext) -> None:
        """Called once the handler is in the pipeline."""

    def handler_removed(self, ctx: ChannelHandlerContext) -> None:
        """Called once the handler has left the pipeline."""


class ChannelInboundHandler(ChannelHandler):
    """Receives inbound events; every default passes the event on."""

    __slots__ = ()

    def channel_registered(self, ctx: ChannelHandlerContext) -> None:
        ctx.fire_channel_registered()

    def channel_unregistered(self, ctx: ChannelHandlerContext) -> None:
        ctx.fire_channel_unregistered()

    def channel_active(self, ctx: ChannelHandlerContext) -> None:
        ctx.fire_channel_active()

    def channel_inactive(self, ctx: ChannelHandlerContext) -> None:
        ctx.fire_channel_inactive()

    def channel_read(self, ctx: ChannelHandlerContext, msg: Any) -> None:
        ctx.fire_channel_read(msg)

    def channel_read_complete(self, ctx: ChannelHandlerContext) -> None:
        ctx.fire_channel_read_complete()

    def user_event_triggered(
        self, ctx: ChannelHandlerContext, event: object
    ) -> None:
        ctx.fire_user_event_triggered(event)

    def channel_writability_changed(self, ctx: ChannelHandlerContext) -> None:
        ctx.fire_channel_writability_changed()

    def exception_caught(
        self, ctx: ChannelHandlerContext, exc: BaseException
    ) -> None:
        ctx.fire_exception_caught(exc)


class ChannelOutboundHandler(ChannelHandler):
    """Intercepts outbound operations; every default passes it on."""

    __slots__ = ()

    def read(self, ctx: ChannelHandlerContext) -> None:
        ctx.read()

    def write(
        self, ctx: ChannelHandlerContext, msg: Any, promise: Future | None
    ) -> None:
        ctx.write(msg, promise)

    def flush(self, ctx: ChannelHandlerContext) -> None:
        ctx.flush()

    def close(
        self, ctx: ChannelHandlerContext, promise: Future | None
    ) -> None:
        ctx.close(promise)


class ChannelDuplexHandler(ChannelInboundHandler, ChannelOutboundHandler):
    """Both inbound and outbound."""

    __slots__ = ()


_PASS_THROUGH: Final = {
    name: getattr(ChannelInboundHandler, name) for name, _ in _INBOUND_METHODS
} | {
    name: getattr(ChannelOutboundHandler, name)
    for name, _ in _OUTBOUND_METHODS
}
_mask_cache: dict[type, int] = {}


def handler_mask(cls: type) -> int:
    """Which callbacks ``cls`` really implements (not mere pass-throughs)."""
    mask = _mask_cache.get(cls)
    if mask is None:
        mask = 0
        for name, bit in _INBOUND_METHODS + _OUTBOUND_METHODS:
            method = getattr(cls, name, None)
            if method is not None and method is not _PASS_THROUGH[name]:
                mask |= bit
        _mask_cache[cls] = mask
    return mask


# -- contexts -----------------------------------------------------------------


class ChannelHandlerContext:
    """A handler's place in one pipeline, and its way to reach neighbours.

    ``fire_*`` methods pass an inbound event to the next interested
    handler towards the tail; ``write``, ``flush``, ``close`` and ``read``
    pass an outbound operation to the next interested handler towards
    the head.
    """

    __slots__ = (
        "_mask",
        "channel",
        "handler",
        "name",
        "next",
        "pipeline",
        "prev",
    )

    def __init__(
        self, pipeline: ChannelPipeline, name: str, handler: ChannelHandler
    ) -> None:
        self.pipeline = pipeline
        self.channel = pipeline.channel
        self.name = name
        self.handler = handler
        # The mask stays 0 (no event enters) until the context is linked.
        self._mask = 0
        self.prev: ChannelHandlerContext = self
        self.next: ChannelHandlerContext = self

    @property
    def removed(self) -> bool:
        """Whether the handler has left (or never joined) the pipeline."""
        return self.pipeline.context(self.name) is not self

    @property
    def loop(self) -> Any:
        return self.channel.loop

    # The fire_* methods below are written out one by one on purpose: a
    # shared helper taking the method name would add a call and a getattr
    # to every event.

    # -- inbound --------------------------------------------------------------

    def fire_channel_registered(self) -> None:
        ctx = self._next_inbound(M_REGISTERED)
        try:
            ctx.handler.channel_registered(ctx)  # type: ignore[attr-defined]
        except Exception as exc:
            ctx._inbound_failed(exc)

    def fire_channel_unregistered(self) -> None:
        ctx = self._next_inbound(M_UNREGISTERED)
        try:
            ctx.handler.channel_unregistered(ctx)  # type: ignore[attr-defined]
        except Exception as exc:
            ctx._inbound_failed(exc)

    def fire_channel_active(self) -> None:
        ctx = self._next_inbound(M_ACTIVE)
        try:
            ctx.handler.channel_active(ctx)  # type: ignore[attr-defined]
        except Exception as exc:
            ctx._inbound_failed(exc)

    def fire_channel_inactive(self) -> None:
        ctx = self._next_inbound(M_INACTIVE)
        try:
            ctx.handler.channel_inactive(ctx)  # type: ignore[attr-defined]
        except Exception as exc:
            ctx._inbound_failed(exc)

    def fire_channel_read(self, msg: Any) -> None:
        ctx = self.next
        while not ctx._mask & M_READ:
            ctx = ctx.next
        try:
            ctx.handler.channel_read(ctx, msg)  # type: ignore[attr-defined]
        except Exception as exc:
            ctx._inbound_failed(exc)

    def fire_channel_read_complete(self) -> None:
        ctx = self._next_inbound(M_READ_COMPLETE)
        try:
            ctx.handler.channel_read_complete(ctx)  # type: ignore[attr-defined]
        except Exception as exc:
            ctx._inbound_failed(exc)

    def fire_user_event_triggered(self, event: object) -> None:
        ctx = self._next_inbound(M_USER_EVENT)
        try:
            ctx.handler.user_event_triggered(ctx, event)  # type: ignore[attr-defined]
        except Exception as exc:
            ctx._inbound_failed(exc)

    def fire_channel_writability_changed(self) -> None:
        ctx = self._next_inbound(M_WRITABILITY)
        try:
            ctx.handler.channel_writability_changed(ctx)  # type: ignore[attr-defined]
        except Exception as exc:
            ctx._inbound_failed(exc)

    def fire_exception_caught(self, exc: BaseException) -> None:
        ctx = self._next_inbound(M_EXCEPTION)
        ctx._invoke_exception_caught(exc)

    def _next_inbound(self, bit: int) -> ChannelHandlerContext:
        ctx = self.next
        while not ctx._mask & bit:
            ctx = ctx.next
        return ctx

    def _inbound_failed(self, exc: Exception) -> None:
        # Netty's rule: an inbound callback's error goes to the same
        # handler's exception_caught, which may handle or forward it.
        self._invoke_exception_caught(exc)

    def _invoke_exception_caught(self, exc: BaseException) -> None:
        if not self._mask & M_EXCEPTION:
            self.fire_exception_caught(exc)
            return
        try:
            self.handler.exception_caught(self, exc)  # type: ignore[attr-defined]
        except Exception:
            # Forwarding this to exception_caught again could loop forever.
            _log.exception(
                "%r: exception_caught of %s raised while handling %r",
                self.channel,
                self.name,
                exc,
            )

    # -- outbound -------------------------------------------------------------

    def write(self, msg: Any, promise: Future | None = None) -> None:
        ctx = self.prev
        while not ctx._mask & M_WRITE:
            ctx = ctx.prev
        try:
            if ctx._mask & M_TRANSPORT:
                # The head's write is "queue in the outbound buffer"; doing
                # it here saves a call on the path every message takes.
                out = self.channel._outbound
                if out is not None:
                    out.add(msg, promise)
                    return
            ctx.handler.write(ctx, msg, promise)  # type: ignore[attr-defined]
        except Exception as exc:
            ctx._outbound_failed(exc, promise)

    def flush(self) -> None:
        ctx = self._next_outbound(M_FLUSH)
        try:
            if ctx._mask & M_TRANSPORT:
                self.channel._flush_outbound()  # the head's flush, inline
            else:
                ctx.handler.flush(ctx)  # type: ignore[attr-defined]
        except Exception as exc:
            ctx._outbound_failed(exc, None)

    def write_and_flush(self, msg: Any, promise: Future | None = None) -> None:
        self.write(msg, promise)
        self.flush()

    def close(self, promise: Future | None = None) -> Future:
        """Close the channel; the returned future completes when closed."""
        if promise is None:
            promise = Future()
        ctx = self._next_outbound(M_CLOSE)
        try:
            ctx.handler.close(ctx, promise)  # type: ignore[attr-defined]
        except Exception as exc:
            ctx._outbound_failed(exc, promise)
        return promise

    def read(self) -> None:
        """Ask for one more batch of reads (what matters when auto-read
        is off; with auto-read on the channel reads anyway)."""
        ctx = self._next_outbound(M_OUT_READ)
        try:
            ctx.handler.read(ctx)  # type: ignore[attr-defined]
        except Exception as exc:
            ctx._outbound_failed(exc, None)

    def _next_outbound(self, bit: int) -> ChannelHandlerContext:
        ctx = self.prev
        while not ctx._mask & bit:
            ctx = ctx.prev
        return ctx

    def _outbound_failed(self, exc: Exception, promise: Future | None) -> None:
        if promise is not None and promise.try_set_exception(exc):
            return
        self.pipeline.fire_exception_caught(exc)

    def __repr__(self) -> str:
        return f"<ChannelHandlerContext {self.name} of {self.channel!r}>"


class _HeadHandler(ChannelDuplexHandler):
    """Sits at the head: performs outbound operations on the transport."""

    sharable = True

    def channel_active(self, ctx: ChannelHandlerContext) -> None:
        ctx.fire_channel_active()
        channel = ctx.channel
        if channel.auto_read:
            channel.read()

    def read(self, ctx: ChannelHandlerContext) -> None:
        ctx.channel._begin_read()

    def write(
        self, ctx: ChannelHandlerContext, msg: Any, promise: Future | None
    ) -> None:
        out = ctx.channel._outbound
        if out is not None:
            out.add(msg, promise)
        else:
            ctx.channel._write_after_close(msg, promise)

    def flush(self, ctx: ChannelHandlerContext) -> None:
        ctx.channel._flush_outbound()

    def close(
        self, ctx: ChannelHandlerContext, promise: Future | None
    ) -> None:
        ctx.channel._close_transport(promise)


class _TailHandler(ChannelInboundHandler):
    """Sits at the tail: the sink for events no handler consumed."""

    sharable = True

    def channel_registered(self, ctx: ChannelHandlerContext) -> None:
        pass

    def channel_unregistered(self, ctx: ChannelHandlerContext) -> None:
        pass

    def channel_active(self, ctx: ChannelHandlerContext) -> None:
        pass

    def channel_inactive(self, ctx: ChannelHandlerContext) -> None:
        pass

    def channel_read(self, ctx: ChannelHandlerContext, msg: Any) -> None:
        if not ctx.channel._unhandled_message(msg):
            _log.debug("%r: no handler consumed %r", ctx.channel, type(msg))

    def channel_read_complete(self, ctx: ChannelHandlerContext) -> None:
        pass

    def user_event_triggered(
        self, ctx: ChannelHandlerContext, event: object
    ) -> None:
        pass

    def channel_writability_changed(self, ctx: ChannelHandlerContext) -> None:
        pass

    def exception_caught(
        self, ctx: ChannelHandlerContext, exc: BaseException
    ) -> None:
        if ctx.channel._unhandled_exception(exc):
            return
        _log.warning(
            "%r: an exception reached the end of the pipeline; no handler "
            "dealt with it",
            ctx.channel,
            exc_info=exc,
        )


_HEAD = _HeadHandler()
_TAIL = _TailHandler()


# -- the pipeline -------------------------------------------------------------


class ChannelPipeline:
    """The handlers of one channel, in order, with ways to change them.

    Handlers may be added, removed or replaced at any time on the loop's
    thread, including from inside a handler while an event is travelling.
    ``handler_added`` runs as soon as a handler is linked in, so events
    fired from inside it already reach it.
    """

    # No name index: pipelines hold a handful of handlers, a walk finds a
    # name as fast as a dict would, and a dict per connection would cost
    # about 180 bytes of every idle connection's memory.
    __slots__ = ("channel", "head", "tail")

    def __init__(self, channel: Channel) -> None:
        self.channel = channel
        self.head = ChannelHandlerContext(self, "head", _HEAD)
        self.tail = ChannelHandlerContext(self, "tail", _TAIL)
        self.head._mask = M_ALL_OUTBOUND | M_ALL_INBOUND | M_TRANSPORT
        self.tail._mask = M_ALL_INBOUND
        self.head.next = self.tail
        self.tail.prev = self.head
        self.head.prev = self.head
        self.tail.next = self.tail

    # -- changing the chain ---------------------------------------------------

    def add_last(
        self, handler: ChannelHandler, name: str | None = None
    ) -> ChannelPipeline:
        self._insert(self.tail.prev, handler, name)
        return self

    def add_first(
        self, handler: ChannelHandler, name: str | None = None
    ) -> ChannelPipeline:
        self._insert(self.head, handler, name)
        return self

    def add_before(
        self, base: str, handler: ChannelHandler, name: str | None = None
    ) -> ChannelPipeline:
        self._insert(self._context_or_raise(base).prev, handler, name)
        return self

    def add_after(
        self, base: str, handler: ChannelHandler, name: str | None = None
    ) -> ChannelPipeline:
        self._insert(self._context_or_raise(base), handler, name)
        return self

    def remove(self, handler: ChannelHandler | str) -> ChannelHandler:
        ctx = self._context_or_raise(handler)
        self._unlink(ctx)
        self._call_removed(ctx)
        return ctx.handler

    def replace(
        self,
        old: ChannelHandler | str,
        new: ChannelHandler,
        name: str | None = None,
    ) -> ChannelHandler:
        """Put ``new`` where ``old`` was; ``old`` is removed."""
        old_ctx = self._context_or_raise(old)
        self._unlink(old_ctx)
        # Added before the old one's removal callback, as Netty does, so
        # that a handler forwarding buffered data on removal finds its
        # successor in place.
        self._insert(old_ctx.prev, new, name or old_ctx.name)
        # Events the old handler fires from handler_removed (a decoder
        # forwarding its leftover bytes) must reach its successor.
        new_ctx = old_ctx.prev.next
        old_ctx.prev = old_ctx.next = new_ctx
        self._call_removed(old_ctx)
        return old_ctx.handler

    def _insert(
        self,
        after: ChannelHandlerContext,
        handler: ChannelHandler,
        name: str | None,
    ) -> None:
        if not handler.sharable and getattr(handler, "_in_pipeline", False):
            raise PipelineError(
                f"{type(handler).__name__} is not sharable and is already "
                "in a pipeline; create a new instance per channel"
            )
        name = name or self._generate_name(handler)
        if self._find_name(name) is not None:
            raise PipelineError(f"duplicate handler name {name!r}")
        ctx = ChannelHandlerContext(self, name, handler)
        if not handler.sharable:
            handler._in_pipeline = True
        ctx.prev, ctx.next = after, after.next
        after.next.prev = ctx
        after.next = ctx
        ctx._mask = handler_mask(type(handler))
        try:
            handler.handler_added(ctx)
        except Exception as exc:
            self._unlink(ctx)
            self.fire_exception_caught(
                PipelineError(f"handler_added of {name!r} raised: {exc!r}")
            )

    def _unlink(self, ctx: ChannelHandlerContext) -> None:
        if ctx is self.head or ctx is self.tail:
            raise PipelineError("head and tail cannot be removed")
        if self._find_name(ctx.name) is not ctx:
            raise PipelineError(f"{ctx.name!r} is not in this pipeline")
        ctx.prev.next = ctx.next
        ctx.next.prev = ctx.prev
        # ctx keeps its own links so an event inside it can move on.
        ctx._mask = 0
        ctx.handler._in_pipeline = False

    def _call_removed(self, ctx: ChannelHandlerContext) -> None:
        try:
            ctx.handler.handler_removed(ctx)
        except Exception as exc:
            self.fire_exception_caught(exc)

    def _generate_name(self, handler: ChannelHandler) -> str:
        base = type(handler).__name__
        n = 0
        while self._find_name(f"{base}#{n}") is not None:
            n += 1
        return f"{base}#{n}"

    def _find_name(self, name: str) -> ChannelHandlerContext | None:
        for ctx in self._contexts():
            if ctx.name == name:
                return ctx
        return None

    def destroy(self) -> None:
        """Remove every handler, tail side first (after the channel closed)."""
        ctx = self.tail.prev
        while ctx is not self.head:
            prev = ctx.prev
            self._unlink(ctx)
            self._call_removed(ctx)
            ctx = prev

    # -- looking up -----------------------------------------------------------

    def context(
        self, handler: ChannelHandler | str | type
    ) -> ChannelHandlerContext | None:
        """The context of a handler given by name, instance or class."""
        if isinstance(handler, str):
            return self._find_name(handler)
        for ctx in self._contexts():
            if ctx.handler is handler or (
                isinstance(handler, type) and isinstance(ctx.handler, handler)
            ):
                return ctx
        return None

    def get(self, name: str) -> ChannelHandler | None:
        ctx = self.context(name)
        return ctx.handler if ctx else None

    def names(self) -> list[str]:
        return [ctx.name for ctx in self._contexts()]

    def handlers(self) -> list[ChannelHandler]:
        return [ctx.handler for ctx in self._contexts()]

    def first(self) -> ChannelHandler | None:
        ctx = self.head.next
        return None if ctx is self.tail else ctx.handler

    def last(self) -> ChannelHandler | None:
        ctx = self.tail.prev
        return None if ctx is self.head else ctx.handler

    def _contexts(self) -> Iterator[ChannelHandlerContext]:
        ctx = self.head.next
        while ctx is not self.tail:
            yield ctx
            ctx = ctx.next

    def __iter__(self) -> Iterator[tuple[str, ChannelHandler]]:
        return ((ctx.name, ctx.handler) for ctx in self._contexts())

    def _context_or_raise(
        self, handler: ChannelHandler | str | type
    ) -> ChannelHandlerContext:
        ctx = self.context(handler)
        if ctx is None:
            raise PipelineError(f"no handler {handler!r} in the pipeline")
        return ctx

    # -- events entering at the ends ------------------------------------------

    def fire_channel_registered(self) -> None:
        self.head.fire_channel_registered()

    def fire_channel_unregistered(self) -> None:
        self.head.fire_channel_unregistered()

    def fire_channel_active(self) -> None:
        _HEAD.channel_active(self.head)

    def fire_channel_inactive(self) -> None:
        self.head.fire_channel_inactive()

    def fire_channel_read(self, msg: Any) -> None:
        self.head.fire_channel_read(msg)

    def fire_channel_read_complete(self) -> None:
        self.head.fire_channel_read_complete()

    def fire_user_event_triggered(self, event: object) -> None:
        self.head.fire_user_event_triggered(event)

    def fire_channel_writability_changed(self) -> None:
        self.head.fire_channel_writability_changed()

    def fire_exception_caught(self, exc: BaseException) -> None:
        self.head.fire_exception_caught(exc)

    def write(self, msg: Any, promise: Future | None = None) -> None:
        self.tail.write(msg, promise)

    def flush(self) -> None:
        self.tail.flush()

    def write_and_flush(self, msg: Any, promise: Future | None = None) -> None:
        self.tail.write(msg, promise)
        self.tail.flush()

    def close(self, promise: Future | None = None) -> Future:
        return self.tail.close(promise)

    def read(self) -> None:
        self.tail.read()

    def __repr__(self) -> str:
        return f"<ChannelPipeline {self.names()} of {self.channel!r}>"
