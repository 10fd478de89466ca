"""Who is online: sessions, the registry of them, and batched flushing.

A ``Session`` is one logged-in device on one connection. The
``SessionRegistry`` maps users to their sessions: a message's pushes go
to the sessions of the users its use case names, and a second login of
the same device is settled here.

Everything here runs on the loop thread, so nothing locks.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Sequence
from typing import Any

from im.domain import DeviceAddress, DeviceId, UserId
from im.protocol import ErrorCode, Kicked, Packet, Serializer, encode
from reactor import ChannelHandlerContext

from .delivery import Delivery

__all__ = ["FlushBatcher", "Session", "SessionRegistry"]

log = logging.getLogger("im.server")


class FlushBatcher:
    """Flushes every channel written to, once, at the end of the turn.

    A read of 16 messages that each push to the same 50 group members
    writes 800 times; flushing per write would cost 800 system calls,
    flushing here costs 50. The loop runs ``call_soon`` callbacks after
    the turn's I/O, which is exactly "once everything this turn had to
    say is queued".
    """

    __slots__ = ("_call_soon", "_dirty", "_scheduled")

    def __init__(self, call_soon: Callable[..., Any]) -> None:
        self._call_soon = call_soon
        self._dirty: dict[Any, None] = {}  # an ordered set of channels
        self._scheduled = False

    def write(self, channel: Any, data: bytes) -> None:
        channel.write(data)
        self.mark(channel)

    def mark(self, channel: Any) -> None:
        """``channel`` was written to some other way: flush it too."""
        self._dirty[channel] = None
        if not self._scheduled:
            self._scheduled = True
            self._call_soon(self._flush_all)

    def _flush_all(self) -> None:
        self._scheduled = False
        dirty, self._dirty = self._dirty, {}
        for channel in dirty:
            channel.flush()


class Session:
    """One logged-in device: its connection and what it has been sent."""

    __slots__ = (
        "_input_holds",
        "_session_number",
        "address",
        "channel",
        "close_reason",
        "delivery",
        "flusher",
        "frame_context",
        "max_pending_output",
        "serializer",
    )

    def __init__(
        self,
        address: DeviceAddress,
        channel: Any,
        serializer: Serializer,
        flusher: FlushBatcher,
        delivery: Delivery,
        frame_context: ChannelHandlerContext,
        max_pending_output: int = 8 * 1024 * 1024,
    ) -> None:
        self.address = address
        self.channel = channel
        self.serializer = serializer
        self.flusher = flusher
        # The context of the pipeline's length prepender: a frame that
        # is already whole is written from there, passing the prepender.
        self.frame_context = frame_context
        self.delivery = delivery
        self.max_pending_output = max_pending_output
        # Random, so that a log line or a client report names exactly
        # one login even when a device logs in many times. Kept as the
        # number (half the memory of its text, per connection).
        self._session_number = secrets.randbits(64)
        # Why reading from the device is paused, as bits (HOLD_*); it is
        # read from again when none is left.
        self._input_holds = 0
        # Why the connection ended, for the "closed" log line; set by
        # whoever closes it on purpose.
        self.close_reason = ""

    @property
    def session_id(self) -> str:
        """The session's id as the protocol carries it: 16 hex digits."""
        return f"{self._session_number:016x}"

    def hold_input(self, reason: int) -> None:
        """Stop reading the device's requests for ``reason`` (HOLD_*)."""
        if not self._input_holds & reason:
            self._input_holds |= reason
            self.channel.auto_read = False

    def release_input(self, reason: int) -> None:
        """``reason`` is gone; read again unless another holds."""
        if self._input_holds & reason:
            self._input_holds &= ~reason
            if not self._input_holds and self.channel.is_open:
                self.channel.auto_read = True

    def is_held(self, reason: int) -> bool:
        return bool(self._input_holds & reason)

    def send(self, data: bytes) -> None:
        """Queue an encoded frame body; flushed at the end of the turn.

        Pushes stop at the high watermark (see delivery.py), but replies
        and backlog pages are what the device asked for; a device that
        asks and never reads is cut off at ``max_pending_output``.
        """
        channel = self.channel
        self.flusher.write(channel, data)
        self._check_output(channel)

    def send_frame(self, frame: bytes) -> None:
        """Queue a whole frame (its length field included), as ``send``
        does a body: for pushes, framed once for every device."""
        channel = self.channel
        self.frame_context.write(frame)
        self.flusher.mark(channel)
        self._check_output(channel)

    def _check_output(self, channel: Any) -> None:
        if channel.pending_output_bytes > self.max_pending_output:
            log.warning(
                "%r %s: %d bytes of output queued; disconnecting",
                channel,
                self.address,
                channel.pending_output_bytes,
            )
            self.kick(ErrorCode.SLOW_CONSUMER, "too much unread output")

    def send_packet(self, packet: Packet, request_id: int = 0) -> None:
        self.send(encode(packet, request_id, self.serializer))

    def kick(self, code: ErrorCode, reason: str) -> None:
        """End the session: KICKED, then a graceful close. When output
        is stuck behind a reader that does not read (a slow consumer),
        the close is immediate and the KICKED, queued behind it, is
        likely never read; the device sees the close, and its messages
        wait in the store for its next login."""
        if not self.close_reason:
            self.close_reason = f"kicked: {code.name.lower()}"
        channel = self.channel
        if channel.is_open:
            channel.write_and_flush(
                encode(Kicked(code, reason), 0, self.serializer)
            )
            channel.close_gracefully()

    def __repr__(self) -> str:
        return f"Session({self.address}, {self.channel!r})"


# Reasons to stop reading from a device (Session.hold_input).
HOLD_UNWRITABLE = 1  # it does not read its replies
HOLD_STORE = 2  # the store has more queued than it should (Admission)


class Admission:
    """Stop reading from senders while the store falls behind.

    A durable store commits at its own pace on its writer thread, and
    the loop reads requests far faster than a disk commits them: under a
    flood, sends queue up in front of the writer and every reply (the
    SERVER_ACK, and so the pushes) waits seconds behind them. Past
    ``high`` sends in flight, each new sender's connection stops being
    read; when the store is back under ``low``, they are read again. The
    flood then waits in the senders' own socket buffers (and, when those
    fill, in the senders), where it costs the server nothing, and
    everyone else's requests stay a short queue away from the disk.

    An in-memory store answers at once: nothing is ever in flight.
    """

    __slots__ = ("_held", "high", "in_flight", "low")

    def __init__(self, high: int = 256, low: int = 64) -> None:
        self.high = high
        self.low = low
        self.in_flight = 0
        self._held: list[Session] = []

    def started(self, session: Session) -> None:
        """``session`` handed a send to the store."""
        self.in_flight += 1
        if self.in_flight >= self.high and not session.is_held(HOLD_STORE):
            session.hold_input(HOLD_STORE)
            self._held.append(session)

    def finished(self) -> None:
        """A send's store operation completed."""
        self.in_flight -= 1
        if self._held and self.in_flight <= self.low:
            held, self._held = self._held, []
            for session in held:
                session.release_input(HOLD_STORE)


class DuplicateLogin(Exception):
    """The device holds a session and the policy keeps the old one."""


class SessionRegistry:
    """The online sessions, by user and device.

    ``kick_old``: a login from a device that already has a session ends
    the older one (KICKED REPLACED) and takes its place; otherwise the
    new login fails and the older session carries on.
    """

    def __init__(self, kick_old: bool = True) -> None:
        self.kick_old = kick_old
        # Each online user's sessions, one per device. A tuple, not a
        # dict by device: a user has a device or two, a scan of two is
        # as quick as a lookup, and a tuple of one costs a connection 48
        # bytes where a dict costs 184.
        self._by_user: dict[UserId, tuple[Session, ...]] = {}

    def __len__(self) -> int:
        return sum(len(sessions) for sessions in self._by_user.values())

    def sessions_of(self, user: UserId) -> tuple[Session, ...]:
        """The user's sessions, one per device online."""
        return self._by_user.get(user, ())

    def online_devices(self, user: UserId) -> Sequence[DeviceId]:
        return tuple(s.address.device for s in self._by_user.get(user, ()))

    def get(self, address: DeviceAddress) -> Session | None:
        for session in self._by_user.get(address.user, ()):
            if session.address.device == address.device:
                return session
        return None

    def sessions(self) -> list[Session]:
        return [s for group in self._by_user.values() for s in group]

    def register(self, session: Session) -> None:
        """Add ``session``, settling a duplicate by the policy.

        Raises DuplicateLogin when the older session stays. The older
        session is unregistered *before* it is kicked, so nothing is
        pushed to it in between and the newer one gets every push from
        now on; what the older one had not acked, the newer one gets in
        its backlog.
        """
        address = session.address
        older = self.get(address)
        if older is not None:
            if not self.kick_old:
                raise DuplicateLogin(str(address))
            self._remove(older)
            log.info(
                "%r %s replaced by a newer login",
                older.channel,
                address,
            )
            older.kick(ErrorCode.REPLACED, "logged in again elsewhere")
        self._by_user[address.user] = (
            *self._by_user.get(address.user, ()),
            session,
        )

    def unregister(self, session: Session) -> None:
        """Remove ``session`` if it is still the device's current one."""
        if self.get(session.address) is session:
            self._remove(session)

    def _remove(self, session: Session) -> None:
        user = session.address.user
        rest = tuple(s for s in self._by_user[user] if s is not session)
        if rest:
            self._by_user[user] = rest
        else:
            del self._by_user[user]
