"""A dataclass's field names, looked up once per class: the record's codec and line encoder and
the scrubber (a layer apart, ``job/``) ask for them at every event."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from operator import attrgetter
from typing import Any

_FIELD_NAMES: dict[type, tuple[str, ...]] = {}
_FIELD_VALUES: dict[type, Callable[[Any], tuple[Any, ...]]] = {}


def field_names(cls: type) -> tuple[str, ...]:
    """The names of a dataclass's fields, in order."""
    names = _FIELD_NAMES.get(cls)
    if names is None:
        names = _FIELD_NAMES[cls] = tuple(f.name for f in dataclasses.fields(cls))
    return names


def field_values(item: Any) -> tuple[Any, ...]:
    """The values of a dataclass instance's fields, in order (one C call: the scrubber looks at
    every string of every event of a batch)."""
    values = _FIELD_VALUES.get(type(item))
    if values is None:
        names = field_names(type(item))
        if len(names) > 1:
            values = attrgetter(*names)
        else:  # attrgetter of one name gives the value itself, of none fails

            def values(of: Any, names: tuple[str, ...] = names) -> tuple[Any, ...]:
                return tuple(getattr(of, name) for name in names)

        _FIELD_VALUES[type(item)] = values
    return values(item)
