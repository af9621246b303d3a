"""A dataclass's field names, looked up once per class: the record's codec and line encoder and
the scrubber (a layer apart, ``job/``) ask for them at every event."""

from __future__ import annotations

import dataclasses

_FIELD_NAMES: dict[type, tuple[str, ...]] = {}


def field_names(cls: type) -> tuple[str, ...]:
    """The names of a dataclass's fields, in order."""
    names = _FIELD_NAMES.get(cls)
    if names is None:
        names = _FIELD_NAMES[cls] = tuple(f.name for f in dataclasses.fields(cls))
    return names
