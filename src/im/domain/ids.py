"""Identities: who sends, from where, and in which conversation.

User, device and group ids are opaque strings chosen by the server (a
user id comes from the login token), so they are ``NewType``s over
``str``: the type checker keeps them apart at no cost per message.

A conversation id is a value object because it has structure: it is
either *direct* (two users) or *group* (one group). On the wire it is a
string of at most 64 characters (the protocol's ``MAX_ID_LENGTH``):

- ``g:<group id>`` for a group;
- ``d:<40 hex digits>`` for two users: a BLAKE2b digest of the two user
  ids, sorted and length-prefixed. Sorting makes alice->bob and
  bob->alice one conversation; the prefix keeps ("ab", "c") apart from
  ("a", "bc"); the digest keeps the id short whatever the user ids'
  length. The cost: a direct id cannot be read back into its users, so
  the message store remembers who takes part in each one.
"""

from __future__ import annotations

import enum
import functools
import hashlib
from dataclasses import dataclass
from typing import NewType

from im.records import fast_init

from .errors import InvalidArgument

UserId = NewType("UserId", str)
DeviceId = NewType("DeviceId", str)
GroupId = NewType("GroupId", str)

# The wire's limit for an id (the protocol's MAX_ID_LENGTH).
MAX_CONVERSATION_ID_LENGTH = 64
_DIRECT_PREFIX = "d:"
_GROUP_PREFIX = "g:"
# 20 bytes = 160 bits: collisions are out of reach for any user count we
# could store, and "d:" plus 40 hex digits stays under 64 characters.
_DIRECT_DIGEST_SIZE = 20


class ChatType(enum.IntEnum):
    """What a conversation's other end is; the values match the wire."""

    DIRECT = 1
    GROUP = 2


@fast_init
@dataclass(frozen=True, slots=True)
class DeviceAddress:
    """One device of one user: the unit that holds a session and acks."""

    user: UserId
    device: DeviceId

    def __str__(self) -> str:
        return f"{self.user}/{self.device}"


@fast_init
@dataclass(frozen=True, slots=True, order=True)
class ConversationId:
    """The id of one ordered log of messages (see the module docstring).

    Ordered by its text, which is the order sync walks conversations in.
    """

    value: str

    # Written out rather than generated: a conversation id is a dict key
    # on every message's path, and the generated methods build a tuple
    # of the fields at each call.
    def __hash__(self) -> int:
        return hash(self.value)

    def __eq__(self, other: object) -> bool:
        if type(other) is ConversationId:
            return self.value == other.value
        return NotImplemented

    @classmethod
    def direct(cls, a: UserId, b: UserId) -> ConversationId:
        """The one conversation between ``a`` and ``b``, either way round."""
        return _direct(a, b)

    @classmethod
    def for_group(cls, group: GroupId) -> ConversationId:
        return _for_group(group)

    @classmethod
    def parse(cls, text: str) -> ConversationId:
        """Read an id that came from a client; refuse what we never made."""
        if text.startswith(_GROUP_PREFIX):
            if len(_GROUP_PREFIX) < len(text) <= MAX_CONVERSATION_ID_LENGTH:
                return cls(text)
            raise InvalidArgument(f"not a conversation id: {text[:80]!r}")
        return _parse_direct(text)

    @property
    def chat_type(self) -> ChatType:
        if self.value.startswith(_GROUP_PREFIX):
            return ChatType.GROUP
        return ChatType.DIRECT

    @property
    def group(self) -> GroupId | None:
        """The group this conversation belongs to, or None if direct."""
        if self.value.startswith(_GROUP_PREFIX):
            return GroupId(self.value[len(_GROUP_PREFIX) :])
        return None

    def __str__(self) -> str:
        return self.value


# One object per busy group, as for direct ids below: the dicts keyed by
# conversation on a message's path then find the very object they hold,
# which skips the comparison (a Python-level __eq__) on each look-up.
@functools.lru_cache(maxsize=1 << 16)
def _for_group(group: GroupId) -> ConversationId:
    return ConversationId(_GROUP_PREFIX + group)


# Every delivery ack names its conversation as text, and a device acks
# the same few conversations over and over: the direct ids read recently
# are kept, so a repeat costs one look-up instead of checking 40 digits
# and making a new object. A text that raises is not cached, and every
# cached one is exactly 42 characters, so a client that sends made-up
# ids can crowd out others but cannot make the cache grow past a few MB.
@functools.lru_cache(maxsize=1 << 16)
def _parse_direct(text: str) -> ConversationId:
    if text.startswith(_DIRECT_PREFIX):
        digits = text[len(_DIRECT_PREFIX) :]
        if len(digits) == 2 * _DIRECT_DIGEST_SIZE and _HEX.issuperset(digits):
            return ConversationId(text)
    raise InvalidArgument(f"not a conversation id: {text[:80]!r}")


_HEX = frozenset("0123456789abcdef")


# Every direct message asks for its conversation's id, and people write
# to the same few people: the ids of recently met pairs are kept (the
# digest and the object cost about 1.5 us, a hit a tenth of that).
@functools.lru_cache(maxsize=1 << 16)
def _direct(a: UserId, b: UserId) -> ConversationId:
    first, second = sorted((a, b))
    digest = hashlib.blake2b(digest_size=_DIRECT_DIGEST_SIZE)
    for user in (first, second):
        raw = user.encode("utf-8", "surrogatepass")
        digest.update(len(raw).to_bytes(4, "big"))
        digest.update(raw)
    return ConversationId(_DIRECT_PREFIX + digest.hexdigest())
