"""The fixed numbers of the wire format: magic, version, serializers,
sizes, and the limits every peer enforces.

Each limit is a hard cap, checked on both sides: an encoder refuses to
write past it (our bug) and a decoder refuses to read past it (the peer's
fault). The comments say why each value is what it is.
"""

from __future__ import annotations

import enum
from typing import Final

__all__ = [
    "HEADER_SIZE",
    "JSON",
    "LENGTH_PREFIX_SIZE",
    "MAGIC",
    "MAX_BODY_SIZE",
    "MAX_CONTENT_SIZE",
    "MAX_FRAME_SIZE",
    "MAX_ID_LENGTH",
    "MAX_LIST_ITEMS",
    "MAX_TEXT_LENGTH",
    "MAX_TOKEN_LENGTH",
    "MSGPACK",
    "VERSION",
    "Serializer",
]

# 0xC1 can appear neither in UTF-8 text nor in msgpack data, so no text
# protocol (HTTP, SMTP, a telnet session) and no stray msgpack can start
# a frame body with it; "N" is for netim.
MAGIC: Final = b"\xc1N"

#: The one version this code speaks. See docs/protocol.md, "Versioning".
VERSION: Final = 1


class Serializer(enum.IntEnum):
    """How a packet body is written; the id travels in every header."""

    #: Compact and fast: fields as a positional array. The default.
    MSGPACK = 1
    #: For debugging with eyes and ``nc``: fields as a named object.
    JSON = 2


#: magic (2) + version (1) + serializer (1) + packet type (2)
#: + request id (4); see ``header.py`` for the layout.
HEADER_SIZE: Final = 10

#: The big-endian length in front of every frame body on a TCP stream.
LENGTH_PREFIX_SIZE: Final = 4

# Bounds what one peer makes us buffer and parse in one go (a 256 KiB
# msgpack body decodes in well under a millisecond), while a page of
# synced messages still holds several messages of the largest size.
MAX_BODY_SIZE: Final = 256 * 1024

#: The largest frame body (header included, length prefix excluded).
#: The reactor's frame decoder counts the prefix too, so it is set up as
#: ``LengthFieldBasedFrameDecoder(MAX_FRAME_SIZE + 4, 0, 4, 0, 4)``
#: (``im.framing.frame_decoder``).
MAX_FRAME_SIZE: Final = HEADER_SIZE + MAX_BODY_SIZE

# One message's content. A product rule more than a safety one: it
# bounds what a user can make the server store and fan out per message,
# and keeps a message of the largest size (base64-inflated under JSON,
# too) well inside one body.
MAX_CONTENT_SIZE: Final = 64 * 1024

# Ids (users, devices, groups, conversations, client message ids) are
# short keys; 64 characters hold a UUID with a prefix and then some.
MAX_ID_LENGTH: Final = 64

# HMAC tokens are a few hundred characters; a JWT with claims stays well
# below this.
MAX_TOKEN_LENGTH: Final = 2048

#: Human-readable text: reasons, error texts, group names, cursors.
MAX_TEXT_LENGTH: Final = 1024

# Items in one list: members of a group, cursors in a sync request,
# messages in a page. 2,000 is the group size cap the server starts
# with; a member list of 2,000 ASCII ids of full length takes about
# 130 KiB, inside one body. (The body cap still applies: long non-ASCII
# ids, or many large messages, fill a body first.)
MAX_LIST_ITEMS: Final = 2000

#: Shorthands for the ``serializer`` argument of ``encode``.
MSGPACK: Final = Serializer.MSGPACK
JSON: Final = Serializer.JSON
