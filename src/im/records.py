"""Frozen records that are cheap to build: ``@fast_init``.

Values on a message's path (a header, a packet, a draft, the stored
message, its ack) are frozen dataclasses: once made, nothing may change
them, so one of them can be shared by every handler and recipient
without a copy. Freezing has a price when the record is built, though.
A frozen class refuses attribute assignment, so the ``__init__`` that
``dataclass`` writes must go around its own guard with
``object.__setattr__(self, "name", value)`` for every field: a lookup of
``object.__setattr__``, then a general attribute write that finds the
slot by name. Measured with Python 3.11 on this project's machine, a
nine-field record took 4.5 us to build that way, against 0.5 us for the
same class unfrozen; a server makes several such records per message.

With ``slots=True`` every field is a slot, and a slot's descriptor
writes the value itself: ``descriptor.__set__(self, value)`` skips both
the guard and the search by name. ``fast_init`` replaces the generated
``__init__`` with one that does exactly that (1.7 us for nine fields).
The record is as frozen as before: assigning to a field afterwards
still raises ``FrozenInstanceError``, and equality, hashing, ``repr``
and pickling are the dataclass's own, untouched.

Use it above the dataclass decorator, so that type checkers still see a
plain frozen dataclass::

    @fast_init
    @dataclass(frozen=True, slots=True)
    class ServerAck:
        ...

Only what the generated ``__init__`` would do is reproduced: fields with
plain defaults, and a ``__post_init__``. A class with anything else (a
``default_factory``, an ``InitVar``, keyword-only fields, an
``__init__`` of its own) is refused with ``TypeError`` rather than given
a different constructor.

This module imports only the standard library, so that every layer of
``im`` may use it, the domain and the protocol included.
"""

from __future__ import annotations

import dataclasses
import inspect
import sys
import types
from typing import Any, TypeVar

__all__ = ["fast_init"]

_R = TypeVar("_R", bound=type)

# The generated code's own names. A field may not take one of them.
_SELF = "self"
_PREFIX = "_fast_init_"


def fast_init(cls: _R) -> _R:
    """Give the frozen, slotted dataclass ``cls`` an ``__init__`` that
    writes each field through its slot's descriptor."""
    params = getattr(cls, "__dataclass_params__", None)
    if params is None or not params.frozen or "__slots__" not in vars(cls):
        raise TypeError(
            f"{cls.__name__}: fast_init needs a dataclass made with "
            "frozen=True and slots=True"
        )
    generated: Any = vars(cls).get("__init__")
    code = getattr(generated, "__code__", None)
    # dataclass writes its methods with exec, so their code says it came
    # from "<string>"; an __init__ written in the class comes from a file,
    # and replacing it would silently change what the class does.
    if code is None or code.co_filename != "<string>":
        raise TypeError(f"{cls.__name__}: has an __init__ of its own")
    # The names the generated code uses: slot setters and defaults.
    namespace: dict[str, Any] = {}
    arguments = []
    body = []
    for index, field in enumerate(dataclasses.fields(cls)):
        name = field.name
        if name == _SELF or name.startswith(_PREFIX):
            raise TypeError(f"{cls.__name__}.{name}: name not supported")
        if not field.init or field.kw_only:
            raise TypeError(f"{cls.__name__}.{name}: not supported")
        if field.default_factory is not dataclasses.MISSING:
            raise TypeError(f"{cls.__name__}.{name}: no default_factory")
        setter = f"{_PREFIX}set_{index}"
        namespace[setter] = _slot(cls, name).__set__
        if field.default is dataclasses.MISSING:
            arguments.append(name)
        else:
            default = f"{_PREFIX}default_{index}"
            namespace[default] = field.default
            arguments.append(f"{name}={default}")
        body.append(f"    {setter}({_SELF}, {name})")
    if hasattr(cls, "__post_init__"):
        body.append(f"    {_SELF}.__post_init__()")
    # As dataclass does: __init__ is made inside a function that takes
    # our names as arguments (they become the closure's), and that runs
    # in the class's module, whose globals the __init__ then has, so its
    # annotations name what the module names.
    maker = f"{_PREFIX}make"
    source = "\n".join(
        [
            f"def {maker}({', '.join(namespace)}):",
            f"  def __init__({', '.join([_SELF, *arguments])}):",
            *[f"  {line}" for line in body or ["    pass"]],
            "  return __init__",
        ]
    )
    module = sys.modules.get(cls.__module__)
    module_globals = vars(module) if module is not None else {}
    made: dict[str, Any] = {}
    exec(source, module_globals, made)  # built from field names only
    init = made[maker](**namespace)
    # Anything the dataclass's own __init__ would do differently (an
    # InitVar parameter, say) shows as a different signature: refuse it.
    if _parameters(init) != _parameters(generated):
        raise TypeError(
            f"{cls.__name__}: its __init__ takes "
            f"{inspect.signature(generated)}, which fast_init cannot "
            "reproduce"
        )
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    init.__module__ = cls.__module__
    # For whatever reads the types of the constructor's arguments.
    init.__annotations__ = dict(generated.__annotations__)
    setattr(cls, "__init__", init)  # noqa: B010 - mypy refuses cls.__init__ = ...
    return cls


def _slot(cls: type, name: str) -> Any:
    # A subclass's slots hold only its own fields; the inherited ones
    # have their descriptors in the class that declared them.
    for klass in cls.__mro__:
        if name in vars(klass):
            descriptor = vars(klass)[name]
            if not isinstance(descriptor, types.MemberDescriptorType):
                break
            return descriptor
    raise TypeError(f"{cls.__name__}.{name}: not a slot")


def _parameters(function: Any) -> list[tuple[str, Any, Any]]:
    # Names, kinds and defaults: what a caller can tell apart.
    # Annotations are left out; they are copied over afterwards.
    return [
        (p.name, p.kind, p.default)
        for p in inspect.signature(function).parameters.values()
    ]
