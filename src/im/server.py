"""The composition root: settings in, a running IM server out.

Everything is chosen here and nowhere else: which store (SQLite, or the
in-memory one that is NOT DURABLE), the secret, the use cases and the
per-connection pipeline. The layers below only know their ports.

Stopping (SIGTERM or Ctrl-C) loses nothing that was acknowledged:

1. stop accepting, and stop reading every connection, so no new request
   comes in;
2. wait (up to ``drain_timeout``) for the store to finish what it was
   given: the acks of messages already sent to it go out;
3. tell every session KICKED SERVER_SHUTDOWN, let output drain, close;
4. close the store, which commits and stops its writer.

A message the store had not committed when the process died was never
acked, so its sender still holds it and resends it with the same client
message id when it reconnects: stored once, acked then.
"""

from __future__ import annotations

import gc
import logging
import signal
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from im.application import (
    AcknowledgeDelivery,
    CreateGroup,
    History,
    ManageGroups,
    SendMessage,
    SyncBacklog,
)
from im.config import Settings
from im.domain import GroupStore, IdGenerator, MessageStore
from im.framing import PREPENDER, frame_decoder
from im.infrastructure import (
    CountingIdGenerator,
    InMemoryGroupStore,
    InMemoryMessageStore,
    SystemClock,
)
from im.infrastructure.tokens import load_or_create_secret
from im.interfaces.handlers import (
    ConnectionLog,
    Heartbeat,
    LoginGate,
    ProtocolCodec,
)
from im.interfaces.limits import RatePolicy
from im.interfaces.services import Services
from im.interfaces.sessions import FlushBatcher, SessionRegistry
from im.protocol import ErrorCode, Kicked
from reactor import (
    ChannelOptions,
    EventLoop,
    ServerBootstrap,
    ServerSocketChannel,
    SocketChannel,
    WriteBufferWaterMark,
)
from reactor.handlers.idle import IdleStateHandler

__all__ = [
    "ImServer",
    "Stores",
    "build_services",
    "connection_handlers",
    "open_stores",
]

log = logging.getLogger("im.server")

# See ImServer.listen.
READ_SIZE_PER_TURN = 2048
QUEUED_READ_SIZE = 512

# How often shutdown looks whether the store has finished its queue.
_STORE_POLL = 0.01


@dataclass
class Stores:
    messages: MessageStore
    groups: GroupStore
    ids: IdGenerator
    durable: bool
    # Work handed to the store and not yet completed (0 for memory).
    busy: Callable[[], bool]
    close: Callable[[], None]
    description: str
    # What the store did, for the operator's last log line ("" if nothing
    # worth saying).
    report: Callable[[], str] = lambda: ""


def open_stores(settings: Settings, submit: Callable[..., Any]) -> Stores:
    """The stores the settings ask for; ``submit`` posts a completion to
    the loop thread (the SQLite writer thread uses it)."""
    if settings.store == "memory":
        return Stores(
            InMemoryMessageStore(),
            InMemoryGroupStore(),
            CountingIdGenerator(),
            durable=False,
            busy=lambda: False,
            close=lambda: None,
            description=(
                "in memory, NOT DURABLE: acknowledged messages are lost "
                "when the server stops"
            ),
        )
    from im.infrastructure.sqlite_store import SQLiteStore

    store = SQLiteStore(
        settings.database, submit, synchronous=settings.sqlite_synchronous
    )
    return Stores(
        store.messages,
        store.groups,
        store.id_generator(),
        durable=True,
        busy=store.busy,
        close=store.close,
        description=(
            f"SQLite {settings.database} (durable, "
            f"synchronous={settings.sqlite_synchronous})"
        ),
        report=lambda: f"; the store made {store.statistics()}",
    )


# Allocations between young collections, young collections per middle
# one, middle ones per full one: see tune_garbage_collector.
GC_THRESHOLDS = (50_000, 50, 100)


def tune_garbage_collector() -> None:
    """Make full garbage collections rare: each one is a pause.

    A full collection walks every live container object. A server holds
    many (15,000 sessions of about 30 objects each; the in-memory store,
    every message) and makes about 20 per message, so with CPython's
    defaults (700, 10, 10) a full pass of tens to hundreds of
    milliseconds came every few seconds under load: every connection's
    latency felt it (docs/perf/004-overload.md). ``gc.freeze`` takes
    what exists at start (code, settings) out of every pass; the
    thresholds space the passes out. Most of what a request makes is
    freed by reference counting the moment it is done with, and a closed
    connection leaves only a few objects for the collector (its channel
    and pipeline), so the rarer passes find little and the memory they
    free is small.
    """
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def build_services(
    settings: Settings,
    stores: Stores,
    secret: bytes,
    call_soon: Callable[..., Any],
) -> Services:
    """The use cases on ``stores``, and what the handlers share."""
    registry = SessionRegistry(kick_old=settings.duplicate_login == "kick-old")
    clock = SystemClock()
    m, g, ids = stores.messages, stores.groups, stores.ids
    send = SendMessage(m, g, clock, ids)
    groups = ManageGroups(g, m, clock, ids)
    return Services(
        settings=settings,
        secret=secret,
        clock=clock,
        registry=registry,
        flusher=FlushBatcher(call_soon),
        framing=PREPENDER,
        send=send,
        ack=AcknowledgeDelivery(m, g),
        sync=SyncBacklog(m, g),
        history=History(m, g),
        groups=groups,
        create_group=CreateGroup(groups, send),
        rate_policy=RatePolicy(settings.rate_limit, settings.rate_burst),
    )


def connection_handlers(services: Services) -> list[tuple[str, Any]]:
    """Each connection's pipeline, head to tail, as (name, handler)
    (see im/interfaces/handlers.py).

    Pushes are written from the prepender's context, already framed
    (``Session.send_frame``), so they pass every handler after it: those
    must stay inbound-only, or pushes would skip what they do to writes
    (a test holds this).
    """
    closing = ConnectionLog()
    return [
        # close_on_error is off: ProtocolCodec answers FRAME_TOO_LONG,
        # then closes.
        ("framer", frame_decoder(close_on_error=False)),
        ("prepender", services.framing),
        ("protocol", ProtocolCodec(closing)),
        ("idle", IdleStateHandler(reader=services.settings.idle_timeout)),
        ("heartbeat", Heartbeat(closing)),
        ("login", LoginGate(services, closing)),
    ]


class ImServer:
    """One server loop: listen, serve, stop without losing anything."""

    def __init__(self, settings: Settings, loop: EventLoop | None = None):
        self.settings = settings
        self.loop = loop or EventLoop()
        self.stores = open_stores(settings, self.loop.submit)
        self.services = self._services()
        self.listener: ServerSocketChannel | None = None
        self._stopping = False

    def _services(self) -> Services:
        settings = self.settings
        secret = (
            bytes.fromhex(settings.secret)
            if settings.secret
            else load_or_create_secret(settings.secret_file)
        )
        return build_services(
            settings, self.stores, secret, self.loop.call_soon
        )

    # -- the pipeline ---------------------------------------------------------

    def init_channel(self, channel: SocketChannel) -> None:
        pipeline = channel.pipeline
        for name, handler in connection_handlers(self.services):
            pipeline.add_last(handler, name)

    # -- running --------------------------------------------------------------

    def listen(self) -> tuple[str, int]:
        """Bind; the address actually bound (port 0 picks one)."""
        settings = self.settings
        options = ChannelOptions(
            water_mark=WriteBufferWaterMark(
                settings.low_watermark, settings.high_watermark
            ),
            # One read of at most 2 KiB (about 15 chat messages) per
            # connection per loop turn: a turn is as long as the work
            # its reads bring, so a few flooding clients would otherwise
            # make everyone else wait seconds for their turn. A large
            # frame takes several turns to arrive; a message of a
            # typical size takes one.
            max_read_size=READ_SIZE_PER_TURN,
            max_reads_per_event=1,
            # A client that had all 2 KiB waiting sends faster than it is
            # served: while a crowd of them do, each gets a quarter of
            # that (about four messages) per turn. Turns get shorter
            # under a flood, and a client with one message waits for
            # less of it.
            queued_read_size=QUEUED_READ_SIZE,
        )
        self.listener = (
            ServerBootstrap(self.loop)
            .child_options(options)
            .child_initializer(self.init_channel)
            .bind(settings.host, settings.port)
        )
        host, port = self.listener.local_address[:2]
        return host, port

    def run(self) -> None:
        """Serve until SIGTERM or SIGINT, then stop (see the module)."""
        for signum in (signal.SIGTERM, signal.SIGINT):
            self.loop.add_signal_handler(signum, self.stop)
        tune_garbage_collector()
        try:
            self.loop.run()
        finally:
            self.stores.close()
            self.loop.close()
        # The operator's sign that the stop is complete: the store is
        # closed and nothing more will be written.
        log.info("netim stopped%s", self.stores.report())

    def stop(self) -> None:
        """Begin the shutdown; the loop stops when it is done."""
        if self._stopping:
            return
        self._stopping = True
        log.info("stopping: no new connections or requests")
        if self.listener is not None:
            self.listener.close()
        for session in self.services.registry.sessions():
            session.channel.stop_input()
        deadline = self.loop.time() + self.settings.drain_timeout
        self._after_store_drained(deadline)

    def _after_store_drained(self, deadline: float) -> None:
        if self.stores.busy() and self.loop.time() < deadline:
            self.loop.call_later(
                _STORE_POLL, self._after_store_drained, deadline
            )
            return
        if self.stores.busy():
            log.warning("the store did not finish in time; unacked work")
        for session in self.services.registry.sessions():
            session.close_reason = "server shutdown"
            session.send_packet(
                Kicked(ErrorCode.SERVER_SHUTDOWN, "server shutting down")
            )
        remaining = max(0.0, deadline - self.loop.time())
        # At least a second to drain: a store that used the whole budget
        # must not leave the goodbyes unsent.
        self.loop.shutdown_gracefully(max(remaining, 1.0))
