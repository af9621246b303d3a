"""``dataclasses.dataclass``, cheaper to define: what every ``ciwatch`` start pays for its classes.

The standard decorator writes each method it adds as source text and compiles it (``exec``),
at every import: ``__init__``, ``__repr__``, ``__eq__``, ``__hash__``, and for a frozen class
``__setattr__`` and ``__delattr__``, and it formats a docstring from ``inspect.signature`` for a
class without one. ~0.5 ms a class; ``ciwatch run`` defines ~70 on the way to its build's exec
and ~10 more to judge it, 40% of its imports' CPU time (issue 14, item 4).

This one asks the standard decorator only for what must be generated to be fast where it
runs per event (``__init__``) or to keep a frozen class frozen (``__setattr__``,
``__delattr__``), and adds the rest as closures over the field names, built without
compiling anything: the same ``__repr__``, ``__eq__`` and ``__hash__`` as the standard ones
(same output, same equality and hash rules, methods written in the class body kept), a class
docstring formatted only when read. Everything else (fields, ``field()``, ``replace``,
``asdict``, ``is_dataclass``, slots, ``__match_args__``) is the standard decorator's.
Type checkers see a dataclass (PEP 681).

Any module may import this one; it imports nothing of ciwatch.
"""

from __future__ import annotations

import dataclasses
import inspect
import reprlib
from collections.abc import Callable
from dataclasses import MISSING, Field, field
from operator import attrgetter
from typing import Any, TypeVar, dataclass_transform, overload

__all__ = ["dataclass", "field"]

_T = TypeVar("_T")


@overload
def dataclass(cls: type[_T], /) -> type[_T]: ...


@overload
def dataclass(
    *,
    init: bool = True,
    repr: bool = True,
    eq: bool = True,
    frozen: bool = False,
    kw_only: bool = False,
    slots: bool = False,
) -> Callable[[type[_T]], type[_T]]: ...


@dataclass_transform(field_specifiers=(field, Field))
def dataclass(
    cls: type[_T] | None = None,
    /,
    *,
    init: bool = True,
    repr: bool = True,
    eq: bool = True,
    frozen: bool = False,
    kw_only: bool = False,
    slots: bool = False,
) -> type[_T] | Callable[[type[_T]], type[_T]]:
    """``@dataclasses.dataclass`` with these arguments, defined without compiling
    ``__repr__``, ``__eq__``, ``__hash__`` or a docstring."""

    def make(cls: type[_T]) -> type[_T]:
        own = dict(cls.__dict__)  # before the standard decorator (which replaces a slots class)
        if cls.__doc__ is None:
            cls.__doc__ = cls.__name__  # a placeholder: the standard decorator would format one now
        made = dataclasses.dataclass(cls, init=init, repr=False, eq=False, frozen=frozen, kw_only=kw_only, slots=slots)
        if own.get("__doc__") is None:
            made.__doc__ = _SignatureDoc()  # type: ignore[assignment]
        fields = dataclasses.fields(made)  # type: ignore[arg-type]
        if repr and "__repr__" not in own:
            _set_method(made, "__repr__", _repr_method(tuple(f.name for f in fields if f.repr)))
        if eq:
            compared = tuple(f.name for f in fields if f.compare)
            hashed = tuple(f.name for f in fields if (f.compare if f.hash is None else f.hash))
            _add_equality(made, own, compared, hashed, frozen)
        return made

    return make if cls is None else make(cls)


class _SignatureDoc:
    """A dataclass's docstring when it has none of its own, as the standard decorator writes it
    (``Name(field: type, ...)``), formatted when first read instead of at every import."""

    def __get__(self, instance: object, owner: type) -> str:
        return owner.__name__ + str(inspect.signature(owner)).replace(" -> None", "")


def _key_getter(names: tuple[str, ...]) -> Callable[[Any], tuple[Any, ...]]:
    """The tuple of these fields' values, as the standard methods compare and hash it."""
    if len(names) > 1:
        return attrgetter(*names)
    if names:
        one = attrgetter(names[0])
        return lambda instance: (one(instance),)
    return lambda instance: ()


def _add_equality(
    made: type, own: dict[str, Any], compared: tuple[str, ...], hashed: tuple[str, ...], frozen: bool
) -> None:
    """``__eq__`` over the compared fields, and ``__hash__`` by the standard decorator's rules
    (unsafe_hash False): over the hashed fields when frozen, None (unhashable) when not; a
    ``__hash__`` written in the class body is kept (one that is None only because the body
    wrote ``__eq__`` doesn't count)."""
    key = _key_getter(compared)
    if "__eq__" not in own:

        def __eq__(self: object, other: object) -> bool:
            if other.__class__ is not self.__class__:
                return NotImplemented
            return key(self) == key(other)

        _set_method(made, "__eq__", __eq__)
    class_hash = own.get("__hash__", MISSING)
    if not (class_hash is MISSING or (class_hash is None and "__eq__" in own)):
        return
    if not frozen:
        made.__hash__ = None  # type: ignore[assignment]
        return

    hash_key = _key_getter(hashed)

    def __hash__(self: object) -> int:
        return hash(hash_key(self))

    _set_method(made, "__hash__", __hash__)


def _repr_method(names: tuple[str, ...]) -> Callable[[object], str]:
    @reprlib.recursive_repr()
    def __repr__(self: object) -> str:
        values = ", ".join(f"{name}={getattr(self, name)!r}" for name in names)
        return f"{self.__class__.__qualname__}({values})"

    return __repr__


def _set_method(cls: type, name: str, method: Callable[..., Any]) -> None:
    method.__qualname__ = f"{cls.__qualname__}.{name}"
    setattr(cls, name, method)
