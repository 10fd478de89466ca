"""What the handlers of every connection share: the use cases, the
online sessions, the settings. One instance per server loop."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from im.application import (
    AcknowledgeDelivery,
    History,
    ManageGroups,
    SendMessage,
    SyncBacklog,
)
from im.config import Settings
from im.domain import Clock, DeviceAddress, Message

from .sessions import FlushBatcher, SessionRegistry
from .wire import PushEncoder

__all__ = ["Services"]


@dataclass(eq=False)
class Services:
    settings: Settings
    secret: bytes
    clock: Clock
    registry: SessionRegistry
    flusher: FlushBatcher
    send: SendMessage
    ack: AcknowledgeDelivery
    sync: SyncBacklog
    history: History
    groups: ManageGroups
    # Counters for the statistics line and the tests.
    pushes: int = field(default=0)

    def fan_out(
        self, message: Message, recipients: Iterable[DeviceAddress]
    ) -> None:
        """Push a stored message to each recipient device online here.

        Encoded once (per serializer in use), whatever the number of
        recipients. A device that went offline since the use case
        looked is simply skipped: the message is in its backlog.
        """
        encoder = PushEncoder(message)
        registry = self.registry
        for address in recipients:
            session = registry.get(address)
            if session is not None:
                session.delivery.push(encoder)
                self.pushes += 1
