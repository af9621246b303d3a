"""A record line's bytes, built without a dict per event.

A line is ``{"seq":…,"t":…,"job":…,"kind":…,<the event's fields in order>}``, as
``json.dumps(..., separators=(",", ":"))`` writes it (ASCII only: lone surrogates, the
undecodable bytes of a path, stay ``\\udcXX`` escapes). The tracer writes one for every file
write of the build, so the generic route (a dict of the fields, then ``json.dumps``, which
builds a new encoder for each call when given separators) was most of a stop's cost in
Python. Here each event class's field names are laid out once, and scalar values (the bulk
of a line: ints, strings, None) are spelled by the same C functions ``json`` uses; anything
else (lists, dicts, floats that aren't finite) goes through the ``json`` encoder itself.
A batch's lines (the tracer's) are spelled in C where the package was built with a compiler
(``_lines.c``: the same layouts, Python's ``json_value`` for what C doesn't spell).
``tests/unit/record/test_lines.py`` holds every route to the same bytes.
"""

from __future__ import annotations

import json
import math
from json.encoder import encode_basestring_ascii
from types import ModuleType
from typing import Any

from ciwatch.record.codec import field_names
from ciwatch.record.events import Event

_compiled: ModuleType | None
try:
    from ciwatch.record import _lines as _compiled  # type: ignore[attr-defined,no-redef]
except ImportError:  # not built: every line spelled in Python
    _compiled = None

_ENCODER = json.JSONEncoder(separators=(",", ":"))
#: The keys a line puts before the event's own fields.
_LINE_KEYS = frozenset({"seq", "t", "job", "kind"})


def json_value(value: Any) -> str:
    """``value`` as ``json.dumps`` (ASCII, compact) spells it."""
    if value is None:
        return "null"
    if isinstance(value, str):  # enumerations of the vocabulary are str too: their value
        return encode_basestring_ascii(value)
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return int.__repr__(value)  # an IntEnum is its number, as json writes it
    if type(value) is float and math.isfinite(value):
        return float.__repr__(value)
    return _ENCODER.encode(value)


_Layout = tuple[str, tuple[tuple[str, str], ...]]


class LineEncoder:
    """The record lines of one job."""

    def __init__(self, job_key: str, compiled: bool = True) -> None:
        self._job = json_value(job_key)
        self._layouts: dict[type[Event], _Layout] = {}
        self._compiled = _compiled if compiled else None

    def line(self, seq: int, t: float, event: Event) -> bytes:
        return self.lines(seq, t, [event])[0]

    def lines(self, first_seq: int, t: float, events: list[Event]) -> list[bytes]:
        """The lines of ``events``, numbered from ``first_seq``, all written at ``t``."""
        head_tail = f',"t":{json_value(t)},"job":{self._job}'
        if self._compiled is not None:
            return self._compiled.lines(events, first_seq, head_tail, self._layouts, self._layout_of, json_value)  # type: ignore[no-any-return]
        return [self._line(seq, head_tail, event) for seq, event in enumerate(events, first_seq)]

    def _line(self, seq: int, head_tail: str, event: Event) -> bytes:
        kind, fields = self._layout_of(type(event))
        parts = [f'{{"seq":{seq}{head_tail}{kind}']
        parts += [key + json_value(getattr(event, name)) for key, name in fields]
        parts.append("}\n")
        return "".join(parts).encode("ascii")

    def _layout_of(self, cls: type[Event]) -> _Layout:
        layout = self._layouts.get(cls)
        if layout is None:
            layout = self._layouts[cls] = _layout(cls)
        return layout


def _layout(cls: type[Event]) -> _Layout:
    """What every line of ``cls`` starts its fields with, and each field's key and name."""
    names = field_names(cls)
    if clash := sorted(_LINE_KEYS & set(names)):
        raise TypeError(f"{cls.__name__}: a field may not be named {clash}: a line's own keys")
    kind = f',"kind":{json_value(str(cls.kind))}'
    return kind, tuple((f",{json_value(name)}:", name) for name in names)
