"""``fast_init``: the same frozen dataclass, built through its slots."""

from __future__ import annotations

import dataclasses
import pickle
import typing
from dataclasses import dataclass

import pytest

from im.domain import ConversationId, DeviceAddress, MessageDraft
from im.records import fast_init


@dataclass(frozen=True, slots=True)
class Slow:
    name: str
    count: int = 3


@fast_init
@dataclass(frozen=True, slots=True)
class Fast:
    name: str
    count: int = 3


@fast_init
@dataclass(frozen=True, slots=True)
class Checked:
    count: int

    def __post_init__(self) -> None:
        if self.count < 0:
            raise ValueError("count < 0")


def test_builds_the_record_the_dataclass_would() -> None:
    for args, kwargs in [
        (("a",), {}),
        (("a", 5), {}),
        ((), {"count": 7, "name": "b"}),
    ]:
        fast, slow = Fast(*args, **kwargs), Slow(*args, **kwargs)
        assert (fast.name, fast.count) == (slow.name, slow.count)
        assert repr(fast) == repr(slow).replace("Slow", "Fast")
    assert Fast("a") == Fast("a", 3) != Fast("a", 4)
    assert hash(Fast("a")) == hash(Fast("a", 3))
    assert pickle.loads(pickle.dumps(Fast("p", 9))) == Fast("p", 9)


def test_the_record_stays_frozen() -> None:
    record = Fast("a")
    with pytest.raises(dataclasses.FrozenInstanceError):
        record.name = "b"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        del record.count  # type: ignore[misc]


def test_arguments_are_checked_as_the_dataclass_checks_them() -> None:
    with pytest.raises(TypeError):
        Fast()  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        Fast("a", 1, 2)  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        Fast("a", colour="red")  # type: ignore[call-arg]


def test_post_init_runs() -> None:
    assert Checked(1).count == 1
    with pytest.raises(ValueError, match="count < 0"):
        Checked(-1)


def test_the_fast_init_is_the_one_in_use() -> None:
    assert Fast.__init__ is not Slow.__init__
    assert Fast.__init__.__qualname__ == "Fast.__init__"
    assert "_fast_init_set_0" in Fast.__init__.__code__.co_freevars


def test_what_it_cannot_reproduce_is_refused() -> None:
    @dataclass(frozen=True)
    class NoSlots:
        x: int

    @dataclass(slots=True)
    class NotFrozen:
        x: int

    @dataclass(frozen=True, slots=True)
    class Factory:
        x: list[int] = dataclasses.field(default_factory=list)

    @dataclass(frozen=True, slots=True)
    class KeywordOnly:
        x: int = dataclasses.field(kw_only=True)

    @dataclass(frozen=True, slots=True)
    class WithInitVar:
        x: int
        scale: dataclasses.InitVar[int] = 1

    @dataclass(frozen=True, slots=True)
    class OwnInit:
        x: int

        def __init__(self, x: int) -> None:
            object.__setattr__(self, "x", x * 2)

    @dataclass(frozen=True, slots=True)
    class FieldNamedSelf:
        self: int

    @dataclass(frozen=True, slots=True)
    class FieldNamedLikeTheGeneratedCode:
        _fast_init_set_0: int

    refused = (
        NoSlots,
        NotFrozen,
        Factory,
        KeywordOnly,
        WithInitVar,
        OwnInit,
        FieldNamedSelf,
        FieldNamedLikeTheGeneratedCode,
    )
    for cls in refused:
        with pytest.raises(TypeError, match=cls.__name__):
            fast_init(cls)
    assert OwnInit(2).x == 4  # left as it was


def test_a_subclass_fills_the_slots_it_inherits() -> None:
    @fast_init
    @dataclass(frozen=True, slots=True)
    class Labelled(Fast):
        label: str = "none"

    record = Labelled("a", 5, "x")
    assert (record.name, record.count, record.label) == ("a", 5, "x")
    assert Labelled("b").count == 3


def test_the_argument_types_can_still_be_read() -> None:
    assert typing.get_type_hints(Fast.__init__) == typing.get_type_hints(
        Slow.__init__
    )


def test_a_field_that_a_parent_made_a_plain_attribute_is_refused() -> None:
    # Writing the grandparent's slot would store a value that reads never
    # see: they find the middle class's attribute first.
    @dataclass(frozen=True, slots=True)
    class Base:
        x: int

    @dataclass(frozen=True)
    class Middle(Base):
        x: int | None = None

    @dataclass(frozen=True, slots=True)
    class Child(Middle):
        y: int = 0

    with pytest.raises(TypeError, match="not a slot"):
        fast_init(Child)


def test_the_annotations_resolve_in_the_record_s_module() -> None:
    # Records name their fields' types from their own module, as text.
    hints = typing.get_type_hints(MessageDraft.__init__)
    assert hints["conversation_id"] is ConversationId
    assert hints["sender"] is DeviceAddress
