"""Hypothesis strategies for packets, built from each field's wire kind.

Every packet class gets a strategy without a line written for it: the
kinds in its annotations say what values are valid, and each kind maps
to a strategy that mixes ordinary values with the edges (empty, the
largest allowed, emoji and other non-ASCII text, the largest integers).
Lists are kept short so that a page of largest-size messages still fits
one body.
"""

from __future__ import annotations

import dataclasses
import typing
from typing import Any

from hypothesis import strategies as st

from im.protocol import MAX_CONTENT_SIZE, ContentType
from im.protocol._schema import (
    Binary,
    Boolean,
    Kind,
    ListOf,
    OneOf,
    RecordOf,
    String,
    Unsigned,
)

# Text that UTF-8 can carry (no lone surrogates), and awkward samples.
CHARACTERS = st.characters(codec="utf-8")
AWKWARD_TEXT = st.sampled_from(
    [
        "😀",
        "\U0001f469\u200d\U0001f469\u200d\U0001f467",  # a family, joined
        "你好世界",
        "e\u0301",  # e and a combining acute accent
        "\x00",
        "שלום",  # right to left
        "a b\tc\n",
    ]
)

# Edge contents: empty, the largest allowed, bytes that are not UTF-8.
LARGEST_TEXT = "😀" * (MAX_CONTENT_SIZE // 4)
EDGE_BINARY = st.sampled_from(
    [b"", b"\x00" * MAX_CONTENT_SIZE, b"\xff\xfe\xc0\x80", bytes(range(256))]
)
# Numbers a content type may have: ours, and one this version lacks.
CONTENT_TYPES = st.sampled_from([ContentType.TEXT, ContentType.BINARY, 77])


def texts(max_length: int) -> st.SearchStrategy[str]:
    # Every string field allows 64 characters or more, more than any
    # of the short samples have.
    return st.one_of(
        st.text(CHARACTERS, max_size=12),
        AWKWARD_TEXT,
        st.just(""),
        st.just("😀" * max_length),  # the most characters and bytes
    )


def binaries(max_size: int) -> st.SearchStrategy[bytes]:
    return st.one_of(
        st.binary(max_size=min(max_size, 64)),
        EDGE_BINARY.filter(lambda data: len(data) <= max_size),
    )


def unsigned(bits: int) -> st.SearchStrategy[int]:
    largest = (1 << bits) - 1
    return st.one_of(st.integers(0, largest), st.sampled_from([0, 1, largest]))


def for_kind(kind: Kind) -> st.SearchStrategy[Any]:
    """Valid values for a field of ``kind``."""
    if isinstance(kind, Unsigned):
        return unsigned(kind.bits)
    if isinstance(kind, String):
        return texts(kind.max_length)
    if isinstance(kind, Binary):
        return binaries(kind.max_size)
    if isinstance(kind, Boolean):
        return st.booleans()
    if isinstance(kind, OneOf):
        return st.sampled_from(list(kind.enum))
    if isinstance(kind, ListOf):
        items = st.lists(for_kind(kind.item), max_size=2)
        return items.map(tuple)
    if isinstance(kind, RecordOf):
        return records(kind.cls)
    raise TypeError(f"no strategy for {kind!r}")


@st.composite
def _content(draw: st.DrawFn) -> tuple[int, bytes]:
    """A content type and content that agree: TEXT content is UTF-8."""
    content_type = draw(CONTENT_TYPES)
    if content_type == ContentType.TEXT:
        text = draw(st.one_of(texts(64), st.just(LARGEST_TEXT)))
        return content_type, text.encode("utf-8")
    return content_type, draw(binaries(MAX_CONTENT_SIZE))


def kinds_of(cls: type) -> dict[str, Kind]:
    """Field name -> wire kind, read from the annotations."""
    hints = typing.get_type_hints(cls, include_extras=True)
    kinds = {}
    for field in dataclasses.fields(cls):
        (kind,) = [
            extra
            for extra in hints[field.name].__metadata__
            if isinstance(extra, Kind)
        ]
        kinds[field.name] = kind
    return kinds


def records(cls: type) -> st.SearchStrategy[Any]:
    """Valid instances of a packet or record class."""
    fields = {name: for_kind(kind) for name, kind in kinds_of(cls).items()}
    if "content" not in fields:
        return st.builds(cls, **fields)
    del fields["content_type"], fields["content"]

    def build(content: tuple[int, bytes], **values: Any) -> Any:
        return cls(content_type=content[0], content=content[1], **values)

    return st.builds(build, _content(), **fields)


request_ids = unsigned(32)
