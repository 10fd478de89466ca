"""What the handlers of every connection share: the use cases, the
online sessions, the settings. One instance per server loop."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from codec import LengthFieldPrepender
from im.application import (
    AcknowledgeDelivery,
    CreateGroup,
    History,
    ManageGroups,
    SendMessage,
    SyncBacklog,
)
from im.config import Settings
from im.domain import Clock, Message, UserId

from .limits import RatePolicy
from .sessions import Admission, FlushBatcher, SessionRegistry
from .wire import PushEncoder

__all__ = ["Services"]


@dataclass(eq=False)
class Services:
    settings: Settings
    secret: bytes
    clock: Clock
    registry: SessionRegistry
    flusher: FlushBatcher
    # The length prepender every connection's pipeline shares: a push
    # for many devices is framed once by it (see PushEncoder).
    framing: LengthFieldPrepender
    send: SendMessage
    ack: AcknowledgeDelivery
    sync: SyncBacklog
    history: History
    groups: ManageGroups
    create_group: CreateGroup
    # Requests per second per connection (each has its own bucket).
    rate_policy: RatePolicy
    # Reading stops from senders while the store is behind.
    admission: Admission = field(default_factory=Admission)
    # Counters for the statistics line and the tests.
    pushes: int = field(default=0)

    def fan_out(
        self,
        message: Message,
        users: Iterable[UserId],
        *,
        sending_device_too: bool = False,
    ) -> None:
        """Push a stored message to every device of ``users`` online
        here, except the one that sent it (it has its SERVER_ACK) unless
        ``sending_device_too`` (a message the server wrote in its name).

        Encoded once (per serializer in use), whatever the number of
        recipients. An offline device needs nothing now: the message is
        in its backlog.
        """
        encoder = PushEncoder(message, self.framing.frame)
        sessions_of = self.registry.sessions_of
        sender = message.sender
        sender_user = sender.user
        skipped = None if sending_device_too else sender.device
        pushed = 0
        for user in users:
            own = user == sender_user
            for session in sessions_of(user):
                if own and session.address.device == skipped:
                    continue  # the sending device has its ack
                session.delivery.push(encoder)
                pushed += 1
        self.pushes += pushed
