"""Events as JSON objects: one record line each, ``kind`` first. Reading checks every known
field against the type its event declares (a record is input: it may be damaged, or not
ciwatch's), ignores unknown fields (forward compatible) and turns closed vocabularies back
into their enums."""

from __future__ import annotations

import dataclasses
import math
import types
import typing
import unicodedata
from collections.abc import Callable
from enum import StrEnum
from typing import Any

from ciwatch import fields
from ciwatch.dataclass import dataclass
from ciwatch.record.closing import AfterBuild, AfterBuildEnd, End
from ciwatch.record.events import (
    AllowlistLearned,
    Anomaly,
    BuildServer,
    DnsAnswer,
    DnsQuery,
    EgressFlow,
    Event,
    FileHash,
    FileRead,
    FileWrite,
    Header,
    HooksAllowed,
    Leftover,
    NetConnect,
    NetSend,
    ProcessExec,
    ProcessExit,
    ProcessStart,
    ProxyReady,
    Refusal,
    RegistryAllowed,
)
from ciwatch.record.vocabulary import (
    EventKind,
)

EVENT_TYPES: dict[EventKind, type[Event]] = {
    cls.kind: cls
    for cls in (
        Header,
        ProcessStart,
        ProcessExec,
        ProcessExit,
        FileWrite,
        FileHash,
        NetConnect,
        NetSend,
        DnsQuery,
        DnsAnswer,
        EgressFlow,
        ProxyReady,
        RegistryAllowed,
        AllowlistLearned,
        HooksAllowed,
        Refusal,
        FileRead,
        Anomaly,
        Leftover,
        BuildServer,
        End,
        AfterBuild,
        AfterBuildEnd,
    )
}


def field_names(cls: type[Event]) -> tuple[str, ...]:
    """The names of an event class's fields, in order (looked up once per class)."""
    return fields.field_names(cls)


def to_json_dict(event: Event) -> dict[str, Any]:
    """The event's fields as a JSON-ready dict, its ``kind`` first. (Not ``asdict``, which
    deep-copies.)"""
    return {"kind": str(event.kind), **{name: getattr(event, name) for name in field_names(type(event))}}


class FieldProblem(ValueError):
    """A field of a record line is missing or does not hold what its event kind declares."""

    def __init__(self, field: str, expected: str, got: str) -> None:
        super().__init__(f"field `{field}`: expected {expected}, got {got}")
        self.field = field


#: Longest piece of a value a message shows: a damaged record can hold megabytes in one field.
_MAX_SHOWN = 60
#: Integers a record holds (pids, sizes, inodes, flags) fit in 64 bits; anything wider is damage.
_INT_MIN, _INT_MAX = -(2**63), 2**64 - 1

_MISSING: Any = object()


def shown(text: str, limit: int = _MAX_SHOWN) -> str:
    """``text`` cut to ``limit`` characters, control, invisible and bidi characters (and lone
    surrogates) escaped as ``repr`` would: a record may hold anything a build chose to write."""
    cut = text[:limit]
    escaped = "".join(repr(ch)[1:-1] if unicodedata.category(ch)[0] in "CZ" and ch != " " else ch for ch in cut)
    return escaped if len(text) <= limit else f"{escaped}... ({len(text)} characters)"


def described(value: object) -> str:
    """What a JSON value is, in JSON's words, with a short printable glimpse of it."""
    if value is _MISSING:
        return "nothing (the field is missing)"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return f"the number {shown(str(value), 30)}"
    if isinstance(value, str):
        return f'the string "{shown(value)}"'
    if isinstance(value, list):
        return f"an array of {len(value)} item(s)"
    if isinstance(value, dict):
        return f"an object of {len(value)} field(s)"
    return type(value).__name__


#: Checks one decoded value (raising FieldProblem) and returns it as the event holds it.
_Reader = Callable[[object, str], object]


def _fails(name: str, expected: str, value: object) -> typing.NoReturn:
    raise FieldProblem(shown(name, 100), expected, described(value))


def _scalar(expected: str, accepts: Callable[[object], bool], convert: Callable[[Any], object]) -> _Reader:
    def read(value: object, name: str) -> object:
        if not accepts(value):
            _fails(name, expected, value)
        return convert(value)

    return read


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and _INT_MIN <= value <= _INT_MAX


def _is_number(value: object) -> bool:
    return (_is_int(value) or isinstance(value, float)) and math.isfinite(value)  # type: ignore[arg-type]


def _vocabulary(enum: type[StrEnum]) -> _Reader:
    values = [member.value for member in enum]
    expected = "one of " + ", ".join(f'"{value}"' for value in values)

    def read(value: object, name: str) -> object:
        if not isinstance(value, str) or value not in values:
            _fails(name, expected, value)
        return enum(value)

    return read


def _optional(inner: _Reader) -> _Reader:
    def read(value: object, name: str) -> object:
        return None if value is None else inner(value, name)

    return read


def _list_of(item: _Reader, expected: str) -> _Reader:
    def read(value: object, name: str) -> object:
        if not isinstance(value, list):
            _fails(name, expected, value)
        return [item(element, f"{name}[{index}]") for index, element in enumerate(value)]

    return read


def _dict_of(item: _Reader, expected: str) -> _Reader:
    def read(value: object, name: str) -> object:
        if not isinstance(value, dict):
            _fails(name, expected, value)
        return {key: item(element, f"{name}.{key}") for key, element in value.items()}

    return read


_SCALARS: dict[object, tuple[str, _Reader]] = {
    int: ("an integer", _scalar("an integer", _is_int, int)),
    float: ("a number", _scalar("a number", _is_number, float)),
    bool: ("true or false", _scalar("true or false", lambda v: isinstance(v, bool), bool)),
    str: ("a string", _scalar("a string", lambda v: isinstance(v, str), str)),
}


def _reader_for(annotation: object) -> tuple[str, _Reader]:
    """The reader of a field declared as ``annotation``, and what it expects in words. Every
    annotation events.py uses must be known here: a new one fails at import, not on a record."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (types.UnionType, typing.Union) and len(args) == 2 and type(None) in args:
        expected, inner = _reader_for(next(arg for arg in args if arg is not type(None)))
        return f"{expected} or null", _optional(inner)
    if origin is list:
        expected = f"an array of {_plural(_reader_for(args[0])[0])}"
        return expected, _list_of(_reader_for(args[0])[1], expected)
    if origin is dict and args[0] is str:
        expected = f"an object of {_plural(_reader_for(args[1])[0])}"
        return expected, _dict_of(_reader_for(args[1])[1], expected)
    if isinstance(annotation, type) and issubclass(annotation, StrEnum):
        return "one of its values", _vocabulary(annotation)
    if annotation in _SCALARS:
        return _SCALARS[annotation]
    raise TypeError(f"the record reader has no rule for a field of type {annotation!r}")


_PLURALS = {
    "an integer": "integers",
    "a number": "numbers",
    "true or false": "true/false values",
    "a string": "strings",
}


def _plural(expected: str) -> str:
    return _PLURALS.get(expected, expected)


@dataclass(frozen=True)
class _FieldReader:
    name: str
    expected: str
    read: _Reader
    required: bool


def _field_readers(cls: type[Event]) -> tuple[_FieldReader, ...]:
    hints = typing.get_type_hints(cls)
    return tuple(
        _FieldReader(
            f.name,
            *_reader_for(hints[f.name]),
            required=f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING,
        )
        for f in dataclasses.fields(cls)
    )


#: Made at an event class's first line read: a run writes its record, and reads none, on the
#: way to its build's exec (each class's type hints evaluated: milliseconds every start).
_FIELD_READERS: dict[type[Event], tuple[_FieldReader, ...]] = {}


def _readers_of(cls: type[Event]) -> tuple[_FieldReader, ...]:
    readers = _FIELD_READERS.get(cls)
    if readers is None:
        readers = _FIELD_READERS[cls] = _field_readers(cls)
    return readers


def event_type(kind: str) -> type[Event] | None:
    """The event class of a line's ``kind``; None for a kind this ciwatch doesn't know (a newer
    ciwatch wrote it): readers skip such lines."""
    try:
        return EVENT_TYPES[EventKind(kind)]
    except ValueError:
        return None


def line_framing(data: dict[str, Any]) -> tuple[int, float, str]:
    """The ``seq``, ``t`` and ``kind`` every line carries, checked (FieldProblem otherwise)."""
    seq = _SCALARS[int][1](data.get("seq", _MISSING), "seq")
    t = _SCALARS[float][1](data.get("t", _MISSING), "t")
    kind = _SCALARS[str][1](data.get("kind", _MISSING), "kind")
    return seq, t, kind  # type: ignore[return-value]


def from_json_dict(data: dict[str, Any]) -> Event:
    """Rebuild an event from a record line, checking each field it declares; unknown fields
    are ignored (forward compatible). Raises FieldProblem for a missing or ill-typed field,
    ValueError for a kind this ciwatch doesn't know."""
    kind = data.get("kind", _MISSING)
    if not isinstance(kind, str):
        _fails("kind", "a string", kind)
    cls = event_type(kind)
    if cls is None:
        raise ValueError(f"unknown event kind {shown(kind)!r}")
    values: dict[str, object] = {}
    for field in _readers_of(cls):
        value = data.get(field.name, _MISSING)
        if value is _MISSING:
            if field.required:
                _fails(field.name, field.expected, value)
            continue
        values[field.name] = field.read(value, field.name)
    return cls(**values)
