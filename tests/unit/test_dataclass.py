"""``ciwatch.dataclass`` behaves as ``dataclasses.dataclass`` does: each class is defined twice,
once with each decorator, and compared (repr, equality, hash, docstring, immutability, slots,
inheritance, methods written in the body)."""

from __future__ import annotations

import dataclasses
import pickle
from typing import Any, ClassVar

import pytest

from ciwatch import dataclass as cheap


def _both(body: dict[str, Any], **options: Any) -> tuple[type, type]:
    """The class ``body`` made by the standard decorator and by ciwatch's, with ``options``."""

    def define(decorator: Any) -> type:
        namespace = dict(body)
        namespace.setdefault("__annotations__", {"pid": "int", "argv": "list[str]", "note": "str"})
        namespace.setdefault("note", dataclasses.field(default="", compare=False, repr=False))
        namespace["__module__"] = __name__
        return decorator(**options)(type("Sample", (), namespace))  # type: ignore[no-any-return]

    return define(dataclasses.dataclass), define(cheap.dataclass)


OPTIONS = [{}, {"frozen": True}, {"frozen": True, "slots": True}, {"slots": True}, {"eq": False}, {"repr": False}]


@pytest.mark.parametrize("options", OPTIONS, ids=str)
def test_repr_equality_and_hash_are_the_standard_ones(options: dict[str, Any]) -> None:
    standard, ours = _both({}, **options)
    a, b = standard(1, ["x"], "n"), ours(1, ["x"], "n")
    if options.get("repr", True):
        assert repr(b) == repr(a) == "Sample(pid=1, argv=['x'])"
    else:
        assert repr(b).startswith("<") and repr(a).startswith("<")
    # Equal values, a field that isn't compared differing, another class, a different value.
    assert (ours(1, ["x"], "n") == ours(1, ["x"], "other")) is (standard(1, ["x"], "n") == standard(1, ["x"], "other"))
    assert (ours(1, ["x"]) == ours(2, ["x"])) is (standard(1, ["x"]) == standard(2, ["x"])) is False
    assert (b == a) is False and (b != a) is True
    assert ours.__hash__ is None if standard.__hash__ is None else ours.__hash__ is not None
    if standard.__hash__ is not None and options.get("eq", True):
        # Frozen: hashed by the compared fields (a list is unhashable either way); equal, same hash.
        hashable_a, hashable_b = standard(1, ()), ours(1, ())  # type: ignore[arg-type]
        assert hash(hashable_a) == hash(hashable_b) == hash((1, ()))
    assert ours.__match_args__ == standard.__match_args__
    assert [f.name for f in dataclasses.fields(ours)] == ["pid", "argv", "note"]


def test_a_frozen_class_stays_frozen_and_replace_works() -> None:
    _, ours = _both({}, frozen=True, slots=True)
    value = ours(1, ["x"])
    with pytest.raises(dataclasses.FrozenInstanceError):
        value.pid = 2
    with pytest.raises(dataclasses.FrozenInstanceError):
        del value.pid
    assert dataclasses.replace(value, pid=2) == ours(2, ["x"])
    assert not hasattr(value, "__dict__")
    assert dataclasses.is_dataclass(value) and dataclasses.asdict(value) == {"pid": 1, "argv": ["x"], "note": ""}


@cheap.dataclass(frozen=True, slots=True)
class Pickled:
    pid: int
    argv: list[str]


def test_a_frozen_slots_value_pickles() -> None:
    value = Pickled(1, ["x"])
    assert pickle.loads(pickle.dumps(value)) == value


def test_the_docstring_is_the_standard_one_formatted_when_read() -> None:
    standard, ours = _both({}, frozen=True, slots=True)
    assert ours.__doc__ == standard.__doc__ == "Sample(pid: 'int', argv: 'list[str]', note: 'str' = '')"
    assert ours(1, []).__doc__ == standard.__doc__
    standard, ours = _both({"__doc__": "Its own."}, frozen=True)
    assert ours.__doc__ == standard.__doc__ == "Its own."


def test_methods_written_in_the_body_are_kept() -> None:
    def __repr__(self: object) -> str:
        return "mine"

    def __eq__(self: object, other: object) -> bool:
        return True

    def __hash__(self: object) -> int:
        return 7

    _, ours = _both({"__repr__": __repr__, "__eq__": __eq__, "__hash__": __hash__}, frozen=True)
    assert repr(ours(1, [])) == "mine" and ours(1, []) == ours(2, []) and hash(ours(1, [])) == 7
    # __eq__ alone: not hashable when not frozen, hashed by the fields when frozen, as standard.
    for frozen in (False, True):
        standard, ours = _both({"__eq__": __eq__}, frozen=frozen)
        assert (ours.__hash__ is None) is (standard.__hash__ is None) is not frozen
    standard, ours = _both({"__eq__": __eq__}, frozen=True)
    assert hash(ours(1, ())) == hash(standard(1, ()))  # type: ignore[arg-type]


def test_subclasses_compare_as_their_own_class() -> None:
    @cheap.dataclass(frozen=True, slots=True)
    class Base:
        kind: ClassVar[str] = "base"
        pid: int

    @cheap.dataclass(frozen=True, slots=True)
    class Child(Base):
        kind: ClassVar[str] = "child"
        path: str = ""

    assert Child(1, "p") == Child(1, "p") != Base(1)
    assert Base(1) != Child(1)
    assert repr(Child(1, "p")).endswith("Child(pid=1, path='p')")
    assert hash(Child(1, "p")) == hash((1, "p"))
    with pytest.raises(TypeError, match="non-frozen"):

        @cheap.dataclass
        class Thawed(Base):
            more: int = 0


def test_a_recursive_value_repr_stops() -> None:
    _, ours = _both({})
    value = ours(1, [])
    value.argv.append(value)
    assert repr(value).endswith("Sample(pid=1, argv=[...])")


def test_a_field_left_out_of_the_hash_is_left_out_as_the_standard_decorator_does() -> None:
    body = {
        "__annotations__": {"pid": "int", "argv": "tuple[str, ...]", "note": "str"},
        "note": dataclasses.field(default="", hash=False),
    }
    standard, ours = _both(body, frozen=True)
    assert hash(ours(1, ("x",), "a")) == hash(standard(1, ("x",), "a")) == hash((1, ("x",)))
    assert ours(1, ("x",), "a") != ours(1, ("x",), "b")  # still compared
