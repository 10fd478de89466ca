"""netim's reactor: Netty's programming model on a hand-written epoll loop.

The pieces, from the bottom up:

* ``EventLoop`` (loop.py): one thread, one epoll, timers, a thread-safe
  ``submit``.
* ``ByteBuf`` (buffer.py): bytes with reader and writer indexes.
* ``SocketChannel`` / ``ServerSocketChannel`` (channel.py): sockets with
  Netty's lifecycle events.
* ``ChannelPipeline`` and the handler bases (pipeline.py): how events
  travel through the handlers of one channel.
* ``OutboundBuffer`` (outbound.py): write, flush, watermarks.
* ``ServerBootstrap`` / ``Bootstrap`` (bootstrap.py): servers and clients.
* ``EmbeddedChannel`` (embedded.py): handlers tested without sockets.
* ``IdleStateHandler`` (handlers/idle.py): reader/writer idle events.
"""

from .bootstrap import Bootstrap, ServerBootstrap, serve_in_workers
from .buffer import ByteBuf
from .channel import (
    Channel,
    ChannelOptions,
    InputShutdownEvent,
    ServerSocketChannel,
    SocketChannel,
)
from .embedded import EmbeddedChannel
from .future import Future
from .loop import EventLoop
from .outbound import ChannelClosedError, WriteBufferWaterMark
from .pipeline import (
    ChannelDuplexHandler,
    ChannelHandler,
    ChannelHandlerContext,
    ChannelInboundHandler,
    ChannelOutboundHandler,
    ChannelPipeline,
    PipelineError,
)

__all__ = [
    "Bootstrap",
    "ByteBuf",
    "Channel",
    "ChannelClosedError",
    "ChannelDuplexHandler",
    "ChannelHandler",
    "ChannelHandlerContext",
    "ChannelInboundHandler",
    "ChannelOptions",
    "ChannelOutboundHandler",
    "ChannelPipeline",
    "EmbeddedChannel",
    "EventLoop",
    "Future",
    "InputShutdownEvent",
    "PipelineError",
    "ServerBootstrap",
    "ServerSocketChannel",
    "SocketChannel",
    "WriteBufferWaterMark",
    "serve_in_workers",
]
