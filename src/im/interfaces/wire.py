"""Between the domain's values and the protocol's packets.

The domain knows nothing of the wire and the protocol nothing of the
domain; this module is the one place where the two meet, so a change of
either shows up here and nowhere else.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Final, TypeVar

from im import protocol
from im.application import HistoryPage, SyncPage
from im.domain import Message, ServerAck
from im.protocol import (
    MAX_BODY_SIZE,
    ChatType,
    EncodeError,
    Packet,
    PacketType,
    Serializer,
    encode_trusted,
    pack_msgpack,
)
from im.protocol.header import encode_header

__all__ = [
    "PushEncoder",
    "encode_ack",
    "encode_history_page",
    "encode_push",
    "encode_sync_page",
    "fit_messages",
    "to_wire_ack",
    "to_wire_message",
]

T = TypeVar("T")

# What one message adds to a page besides its content and ids: msgpack
# array and integer headers (under 60 bytes). JSON spends more on field
# names and base64, hence the factor below; both are upper bounds, and
# ``encode_page`` still halves a page that an estimate let through.
_RECORD_OVERHEAD = 96
_JSON_OVERHEAD = 256


def to_wire_message(message: Message) -> protocol.Message:
    return protocol.Message(
        message_id=message.message_id,
        conversation_id=message.conversation_id.value,
        seq=message.seq,
        chat_type=ChatType(message.chat_type),
        from_user=message.sender.user,
        from_device=message.sender.device,
        to=message.to,
        timestamp=message.timestamp_ms,
        content_type=message.content_type,
        content=message.body,
    )


def to_wire_ack(ack: ServerAck) -> protocol.ServerAck:
    return protocol.ServerAck(
        client_message_id=ack.client_message_id,
        message_id=ack.message_id,
        conversation_id=ack.conversation_id.value,
        seq=ack.seq,
        timestamp=ack.timestamp_ms,
    )


class PushEncoder:
    """Encodes one message's PUSH once per serializer, for a fan-out.

    A group message to 100 online members is one ``encode`` (or two if
    some members speak JSON), framed once by ``frame`` (the connections'
    length prepender), and the same ``bytes`` object is queued on every
    channel.
    """

    __slots__ = ("_framed", "frame", "message")

    def __init__(
        self, message: Message, frame: Callable[[bytes], bytes]
    ) -> None:
        self.message = message
        self.frame = frame
        self._framed: dict[Serializer, bytes] = {}

    def framed_for(self, serializer: Serializer) -> bytes:
        """The whole frame: the PUSH's body behind its length field."""
        data = self._framed.get(serializer)
        if data is None:
            body = encode_push(self.message, serializer)
            data = self._framed[serializer] = self.frame(body)
        return data


# The two packets the server writes for every message, encoded straight
# from the domain's values: the same bytes as building the protocol's
# packet and ``encode_trusted`` (the tests hold them equal), without the
# three intermediate objects. Fields in the protocol's order (Message,
# ServerAck in docs/protocol.md).
_PUSH_HEADER: Final = encode_header(PacketType.PUSH, 0, Serializer.MSGPACK)


def encode_push(message: Message, serializer: Serializer) -> bytes:
    """The frame body of a PUSH of ``message``."""
    if serializer != Serializer.MSGPACK:
        push = protocol.Push(to_wire_message(message))
        return encode_trusted(push, 0, serializer)
    sender = message.sender
    record = [
        message.message_id,
        message.conversation_id.value,
        message.seq,
        message.conversation_id.chat_type,
        sender.user,
        sender.device,
        message.to,
        message.timestamp_ms,
        message.content_type,
        message.body,
    ]
    return _PUSH_HEADER + pack_msgpack([record])


def encode_ack(ack: ServerAck, request_id: int, serializer: int) -> bytes:
    """The frame body of the SERVER_ACK ``ack``, answering ``request_id``."""
    if serializer != Serializer.MSGPACK:
        packet = to_wire_ack(ack)
        return encode_trusted(packet, request_id, Serializer(serializer))
    fields = [
        ack.client_message_id,
        ack.message_id,
        ack.conversation_id.value,
        ack.seq,
        ack.timestamp_ms,
    ]
    header = encode_header(PacketType.SERVER_ACK, request_id, serializer)
    return header + pack_msgpack(fields)


def _estimate(message: Message, serializer: Serializer) -> int:
    ids = (
        len(message.conversation_id.value)
        + len(message.sender.user.encode("utf-8", "surrogatepass"))
        + len(message.sender.device.encode("utf-8", "surrogatepass"))
        + len(message.to.encode("utf-8", "surrogatepass"))
    )
    size = len(message.body) + ids
    if serializer == Serializer.JSON:
        # base64 grows content by 4/3; escapes can grow ids up to 6x.
        return size * 2 + 4 * ids + _JSON_OVERHEAD
    return size + _RECORD_OVERHEAD


def fit_messages(
    messages: Sequence[Message], serializer: Serializer, budget: int
) -> int:
    """How many of ``messages``, from the first, fit ``budget`` bytes.

    At least one, whatever its size: a single message always fits a body
    (content is capped far below MAX_BODY_SIZE), and a page of none would
    make no progress.
    """
    used = 0
    for count, message in enumerate(messages):
        used += _estimate(message, serializer)
        if used > budget and count > 0:
            return count
    return len(messages)


def encode_sync_page(
    page: SyncPage, request_id: int, serializer: Serializer
) -> tuple[bytes, SyncPage]:
    """SYNC_PAGE bytes for the longest prefix of ``page`` that fits
    MAX_BODY_SIZE, and the page actually sent (cut short if it had to
    be, with has_more and the cursor moved to match)."""

    def build(count: int) -> tuple[Packet, SyncPage]:
        sent = page.first(count) if count else page
        wire = tuple(to_wire_message(m) for m in sent.messages)
        return protocol.SyncPage(wire, sent.has_more, sent.next_cursor), sent

    count = fit_messages(page.messages, serializer, _BUDGET)
    return _encode_shrinking(build, count, request_id, serializer)


def encode_history_page(
    page: HistoryPage, request_id: int, serializer: Serializer
) -> bytes:
    """HISTORY_PAGE bytes for the newest messages of ``page`` that fit
    MAX_BODY_SIZE (the older ones left out stay for the next request)."""

    def build(count: int) -> tuple[Packet, HistoryPage]:
        sent = page.newest(count) if count else page
        wire = tuple(to_wire_message(m) for m in sent.messages)
        packet = protocol.HistoryPage(
            sent.conversation_id.value, wire, sent.has_more
        )
        return packet, sent

    newest_first = page.messages[::-1]
    count = fit_messages(newest_first, serializer, _BUDGET)
    return _encode_shrinking(build, count, request_id, serializer)[0]


# Room left in a body for a page's own fields next to its messages.
_BUDGET = MAX_BODY_SIZE - 1024


def _encode_shrinking(
    build: Callable[[int], tuple[Packet, T]],
    count: int,
    request_id: int,
    serializer: Serializer,
) -> tuple[bytes, T]:
    # ``count`` 0 means "no messages to cut" (an empty page).
    while True:
        packet, sent = build(count)
        try:
            return encode_trusted(packet, request_id, serializer), sent
        except EncodeError:
            if count <= 1:
                raise
            count //= 2
