"""Field kinds and record schemas: what a valid field value is, and how it
travels under each serializer.

A packet (or a record inside one, such as a message) is a frozen
dataclass whose fields are annotated ``Annotated[type, kind]``. The type
is for readers and for mypy; the kind is for the wire: it checks a value
and converts it. ``schema_of`` reads a class's kinds once.

Under msgpack a record is an array of its field values in declaration
order: no names, because a push is written for every recipient and names
would be paid for on every one. Under JSON a record is an object keyed by
field name, because JSON is there for people to read. Bytes are msgpack
``bin``, and base64 text under JSON, which has no bytes.

Checks are the same in both directions, so that what we write is exactly
what we accept: a kind raises ``FieldError`` and the codec turns it into
an ``EncodeError`` (our packet) or a ``ProtocolError`` (the peer's).
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import enum
import operator
import typing
from collections.abc import Callable
from typing import Any

from .errors import ErrorCode

__all__ = [
    "Binary",
    "Boolean",
    "FieldError",
    "Kind",
    "ListOf",
    "OneOf",
    "RecordOf",
    "Schema",
    "String",
    "Unsigned",
    "schema_of",
]


class FieldError(Exception):
    """A value does not fit its field. ``code`` is the error code a peer
    would get for it; ``path`` leads from the packet to the field."""

    def __init__(
        self, code: ErrorCode, message: str, path: tuple[str, ...] = ()
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.path = list(path)

    @property
    def where(self) -> str:
        """The path as written in messages: ``messages[2].content``."""
        return "".join(
            step if step.startswith("[") else "." + step for step in self.path
        ).lstrip(".")


def _malformed(message: str) -> FieldError:
    return FieldError(ErrorCode.MALFORMED_BODY, message)


# Types named as a peer sees them on the wire, not as Python calls them.
_WIRE_NAMES: dict[type, str] = {
    list: "array",
    dict: "object",
    type(None): "nil",
}


def _type_name(value: object) -> str:
    return _WIRE_NAMES.get(type(value), type(value).__name__)


def _each(
    convert: Callable[[Any, bool], Any], values: Any, as_json: bool
) -> list[Any]:
    """``convert`` applied to each value, errors marked with the index."""
    converted = []
    for index, value in enumerate(values):
        try:
            converted.append(convert(value, as_json))
        except FieldError as exc:
            exc.path.insert(0, f"[{index}]")
            raise
    return converted


class Kind:
    """How one field is checked and written; a subclass per wire type."""

    __slots__ = ()

    def dump(self, value: Any, as_json: bool) -> Any:
        """``value`` checked and ready for the serializer."""
        raise NotImplementedError

    def load(self, value: Any, as_json: bool) -> Any:
        """A value from the serializer, checked and made Python's."""
        raise NotImplementedError

    def as_is_test(self, value: str) -> str | None:
        """Python source of a test that is True exactly when ``load``
        (msgpack) would return the variable ``value`` itself, unchanged;
        None when no cheap test exists. It only decides the fast path: a
        False sends the value to ``load``, which takes it or words the
        error."""
        return None


class Unsigned(Kind):
    """An integer from 0 to 2**bits - 1 (seqs, ids, times, codes)."""

    __slots__ = ("bits",)

    def __init__(self, bits: int) -> None:
        self.bits = bits

    def dump(self, value: Any, as_json: bool) -> int:
        return self._check(value)

    def load(self, value: Any, as_json: bool) -> int:
        return self._check(value)

    def as_is_test(self, value: str) -> str:
        # 0 <= v < 2**bits is the bit_length test of _check, in one step.
        return f"type({value}) is int and 0 <= {value} < {1 << self.bits}"

    def _check(self, value: Any) -> int:
        # bool is an int to Python, not to msgpack or JSON.
        if isinstance(value, bool) or not isinstance(value, int):
            raise _malformed(f"expected an integer, got {_type_name(value)}")
        if value < 0 or value.bit_length() > self.bits:
            raise _malformed(f"{value} is outside 0..2**{self.bits}-1")
        return int(value)  # an IntEnum member becomes a plain int


_ENUM_NUMBER = Unsigned(32)


class OneOf(Kind):
    """One of the values of an ``IntEnum``; any other number is refused."""

    __slots__ = ("enum",)

    def __init__(self, enum_class: type[enum.IntEnum]) -> None:
        self.enum = enum_class

    def dump(self, value: Any, as_json: bool) -> int:
        return int(self.load(value, as_json))

    def load(self, value: Any, as_json: bool) -> enum.IntEnum:
        number = _ENUM_NUMBER.load(value, as_json)
        try:
            return self.enum(number)
        except ValueError:
            allowed = ", ".join(str(int(m)) for m in self.enum)
            raise _malformed(
                f"{number} is not a {self.enum.__name__} ({allowed})"
            ) from None


class String(Kind):
    """Unicode text of at most ``max_length`` characters.

    Anything a Python ``str`` holds is fine except lone surrogates, which
    UTF-8 cannot carry (JSON can smuggle them in as ``\\ud800``).
    """

    __slots__ = ("max_length",)

    def __init__(self, max_length: int) -> None:
        self.max_length = max_length

    def dump(self, value: Any, as_json: bool) -> str:
        return self._check(value)

    def load(self, value: Any, as_json: bool) -> str:
        return self._check(value)

    def as_is_test(self, value: str) -> str:
        # msgpack's strings are UTF-8 already; only ASCII is taken here,
        # the rest goes by ``_check`` (which also tests for surrogates).
        return (
            f"type({value}) is str and len({value}) <= {self.max_length}"
            f" and {value}.isascii()"
        )

    def _check(self, value: Any) -> str:
        if not isinstance(value, str):
            raise _malformed(f"expected a string, got {_type_name(value)}")
        if len(value) > self.max_length:
            raise _malformed(
                f"string of {len(value)} characters, more than "
                f"{self.max_length}"
            )
        if not value.isascii():
            _require_utf8(value)
        return value


def _require_utf8(text: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise FieldError(
            ErrorCode.INVALID_TEXT,
            f"string holds a lone surrogate at character {exc.start}, "
            "which is not UTF-8",
        ) from None


class Binary(Kind):
    """Bytes of at most ``max_size``, kept byte for byte. Used for message
    content, so too many is ``CONTENT_TOO_LARGE``."""

    __slots__ = ("max_size",)

    def __init__(self, max_size: int) -> None:
        self.max_size = max_size

    def dump(self, value: Any, as_json: bool) -> bytes | str:
        if not isinstance(value, bytes):
            raise _malformed(f"expected bytes, got {_type_name(value)}")
        self._check_size(value)
        return base64.b64encode(value).decode("ascii") if as_json else value

    def as_is_test(self, value: str) -> str:
        return f"type({value}) is bytes and len({value}) <= {self.max_size}"

    def load(self, value: Any, as_json: bool) -> bytes:
        data = _from_base64(value) if as_json else value
        if not isinstance(data, bytes):
            raise _malformed(f"expected bytes, got {_type_name(value)}")
        self._check_size(data)
        return data

    def _check_size(self, data: bytes) -> None:
        if len(data) > self.max_size:
            raise FieldError(
                ErrorCode.CONTENT_TOO_LARGE,
                f"{len(data)} bytes, more than {self.max_size}",
            )


def _from_base64(value: Any) -> bytes:
    if not isinstance(value, str):
        raise _malformed(f"expected base64 text, got {_type_name(value)}")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise _malformed("not valid base64 text") from None


class Boolean(Kind):
    """True or false."""

    __slots__ = ()

    def dump(self, value: Any, as_json: bool) -> bool:
        return self.load(value, as_json)

    def as_is_test(self, value: str) -> str:
        return f"type({value}) is bool"

    def load(self, value: Any, as_json: bool) -> bool:
        if not isinstance(value, bool):
            raise _malformed(f"expected a boolean, got {_type_name(value)}")
        return value


class ListOf(Kind):
    """A tuple of at most ``max_items`` values of one kind; an array on
    the wire."""

    __slots__ = ("item", "max_items")

    def __init__(self, item: Kind, max_items: int) -> None:
        self.item = item
        self.max_items = max_items

    def dump(self, value: Any, as_json: bool) -> list[Any]:
        # A list is as good as a tuple here: both write as an array.
        if not isinstance(value, tuple | list):
            raise _malformed(f"expected a tuple, got {_type_name(value)}")
        return _each(self.item.dump, self._counted(value), as_json)

    def load(self, value: Any, as_json: bool) -> tuple[Any, ...]:
        if not isinstance(value, list):
            raise _malformed(f"expected an array, got {_type_name(value)}")
        return tuple(_each(self.item.load, self._counted(value), as_json))

    def _counted(self, items: Any) -> Any:
        if len(items) > self.max_items:
            raise _malformed(f"{len(items)} items, more than {self.max_items}")
        return items


class RecordOf(Kind):
    """A nested record (a dataclass with its own schema)."""

    __slots__ = ("cls",)

    def __init__(self, cls: type) -> None:
        self.cls = cls

    def dump(self, value: Any, as_json: bool) -> Any:
        if not isinstance(value, self.cls):
            raise _malformed(
                f"expected a {self.cls.__name__}, got {_type_name(value)}"
            )
        return schema_of(self.cls).dump(value, as_json)

    def load(self, value: Any, as_json: bool) -> Any:
        return schema_of(self.cls).load(value, as_json)


class Schema:
    """The fields of one record class, in order, with their kinds.

    A class may define ``_validate(self)``, raising ``FieldError``, for
    rules that span fields (text content must be UTF-8); it runs after
    every field passed its own check.
    """

    __slots__ = ("_as_is", "_values", "cls", "fields", "names", "validate")

    def __init__(self, cls: type, fields: list[tuple[str, Kind]]) -> None:
        self.cls = cls
        self.fields = tuple(fields)
        self.names = tuple(name for name, _ in fields)
        self.validate: Callable[[Any], None] | None = getattr(
            cls, "_validate", None
        )
        self._values: Callable[[Any], Any] | None = None
        self._as_is: Callable[[Any], Any] | None = None

    def values(self, record: Any) -> Any:
        """The record as msgpack writes it, *without* the checks: the
        same array ``dump`` makes of a valid record, built in C where it
        can be (``attrgetter``). Only for records whose every value has
        passed the checks already; see ``encode_trusted``."""
        values = self._values
        if values is None:
            values = self._values = _values_of(self)
        return values(record)

    def dump(self, record: Any, as_json: bool) -> list[Any] | dict[str, Any]:
        values = [
            self._field(kind.dump, name, getattr(record, name), as_json)
            for name, kind in self.fields
        ]
        if self.validate is not None:
            self.validate(record)
        if as_json:
            return dict(zip(self.names, values, strict=True))
        return values

    def load(self, wire: Any, as_json: bool) -> Any:
        if not as_json:
            # The common case first: a msgpack array whose every value
            # is already what its field takes, unchanged. Anything else
            # (or a record with nested fields) goes the long way below,
            # which also words the error.
            as_is = self._as_is
            if as_is is None:
                as_is = self._as_is = _as_is_loader(self)
            record = as_is(wire)
            if record is not None:
                if self.validate is not None:
                    self.validate(record)
                return record
        return self.load_checked(wire, as_json)

    def load_checked(self, wire: Any, as_json: bool) -> Any:
        """``load`` without the fast path: every field by its kind."""
        pairs = zip(self.fields, self._unpack(wire, as_json), strict=True)
        values = [
            self._field(kind.load, name, value, as_json)
            for (name, kind), value in pairs
        ]
        record = self.cls(*values)
        if self.validate is not None:
            self.validate(record)
        return record

    @staticmethod
    def _field(
        convert: Callable[[Any, bool], Any],
        name: str,
        value: Any,
        as_json: bool,
    ) -> Any:
        try:
            return convert(value, as_json)
        except FieldError as exc:
            exc.path.insert(0, name)
            raise

    def _unpack(self, wire: Any, as_json: bool) -> list[Any]:
        """The wire's field values in declaration order, exactly as many
        as there are fields (none missing, none extra)."""
        if as_json:
            return self._from_object(wire)
        if not isinstance(wire, list):
            raise _malformed(f"expected an array, got {_type_name(wire)}")
        if len(wire) != len(self.names):
            raise _malformed(
                f"expected {len(self.names)} fields, got {len(wire)}"
            )
        return wire

    def _from_object(self, wire: Any) -> list[Any]:
        if not isinstance(wire, dict):
            raise _malformed(f"expected an object, got {_type_name(wire)}")
        missing = [name for name in self.names if name not in wire]
        extra = sorted(set(wire) - set(self.names))
        if missing or extra:
            raise _malformed(
                f"fields missing: {missing or 'none'}; "
                f"unknown: {extra or 'none'}"
            )
        return [wire[name] for name in self.names]


def _no_fast_path(wire: Any) -> None:
    return None


def _as_is_loader(schema: Schema) -> Callable[[Any], Any]:
    """The fast path of ``Schema.load`` for one record class: given a
    msgpack value, the record made of it when every field's value is
    one the slow path would take as it is, else None.

    Only for records of flat fields (integers, strings, bytes, flags);
    any other record gets a loader that always says None. The fields'
    tests are written into one generated function, as ``dataclasses``
    writes ``__init__``: one call per packet, where a test function per
    field cost a call each (measured: 1.7 us for SEND_TO_USER's four
    fields, against 0.6 us generated).
    """
    tests = []
    for index, (_, kind) in enumerate(schema.fields):
        test = kind.as_is_test(f"v{index}")
        if test is None:
            return _no_fast_path
        tests.append(f"({test})")
    values = ", ".join(f"v{index}" for index in range(len(tests)))
    # "v0, = wire" unpacks a one-field record like the others; a record
    # without fields has nothing to unpack and nothing to test.
    unpack = f"    {values}, = wire\n" if tests else ""
    source = (
        "def load(wire):\n"
        f"    if type(wire) is not list or len(wire) != {len(tests)}:\n"
        "        return None\n"
        f"{unpack}"
        f"    if {' and '.join(tests) or 'True'}:\n"
        f"        return cls({values})\n"
        "    return None\n"
    )
    namespace: dict[str, Any] = {"cls": schema.cls}
    exec(source, namespace)  # the source is built from our own kinds only
    loader: Callable[[Any], Any] = namespace["load"]
    return loader


def _each_values(
    values: Callable[[Any], Any],
) -> Callable[[Any], list[Any]]:
    return lambda items: [values(item) for item in items]


def _values_of(schema: Schema) -> Callable[[Any], Any]:
    """``Schema.values`` for one record class.

    Scalars (integers, enum members, which msgpack writes as integers,
    strings, bytes, flags, lists of strings) go as they are. A nested
    record, or a list of records, is converted in turn.
    """
    nested: dict[int, Callable[[Any], Any]] = {}
    for index, (_, kind) in enumerate(schema.fields):
        if isinstance(kind, RecordOf):
            nested[index] = schema_of(kind.cls).values
        elif isinstance(kind, ListOf) and isinstance(kind.item, RecordOf):
            nested[index] = _each_values(schema_of(kind.item.cls).values)
    names = schema.names
    if not names:
        return lambda record: ()
    getter = operator.attrgetter(*names)
    if len(names) == 1:
        only = nested.get(0)
        if only is None:
            return lambda record: (getter(record),)
        return lambda record: (only(getter(record)),)
    if not nested:
        return getter

    def values(record: Any) -> list[Any]:
        items = list(getter(record))
        for index, convert in nested.items():
            items[index] = convert(items[index])
        return items

    return values


_schemas: dict[type, Schema] = {}


def schema_of(cls: type) -> Schema:
    """The schema of a record class, read from its annotations once."""
    schema = _schemas.get(cls)
    if schema is None:
        schema = _schemas[cls] = _read_schema(cls)
    return schema


def _read_schema(cls: type) -> Schema:
    hints = typing.get_type_hints(cls, include_extras=True)
    return Schema(
        cls,
        [
            (field.name, _kind_in(hints[field.name], cls, field.name))
            for field in dataclasses.fields(cls)
        ],
    )


def _kind_in(hint: Any, cls: type, name: str) -> Kind:
    for extra in getattr(hint, "__metadata__", ()):
        if isinstance(extra, Kind):
            return extra
    # Our bug, found at import: every field must say how it travels.
    raise TypeError(
        f"{cls.__name__}.{name} has no wire kind; annotate it as "
        "Annotated[type, Kind(...)]"
    )
