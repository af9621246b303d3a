"""Values that repeat across events, shared rather than held once per event.

A long build records a million events and the live verdict keeps them all in memory. Each stop
gives fresh objects (an int above 256 from a register or a JSON line is a new 28-byte object, a
string read from a tracee's memory a new copy), so a pid, open flags, a working directory or a
program's path would otherwise be stored again in every event. The tables are bounded: past
the limit values are kept as they come, and the ones that repeat most (seen early) are shared
already.
"""

from __future__ import annotations

_SHARED_LIMIT = 1 << 16
_shared_ints: dict[int, int] = {}
_shared_strings: dict[str, str] = {}


def shared_int(value: int) -> int:
    found = _shared_ints.get(value)
    if found is None:
        if len(_shared_ints) < _SHARED_LIMIT:
            _shared_ints[value] = value
        return value
    return found


def shared_str(value: str) -> str:
    found = _shared_strings.get(value)
    if found is None:
        if len(_shared_strings) < _SHARED_LIMIT:
            _shared_strings[value] = value
        return value
    return found


def share_fields(event: object, ints: tuple[str, ...] = (), strings: tuple[str, ...] = ()) -> None:
    """Replace the event's ``ints`` and ``strings`` fields by the shared equal values (a frozen
    dataclass: set as its own ``__init__`` does)."""
    for name in ints:
        value = getattr(event, name)
        if type(value) is int:
            object.__setattr__(event, name, shared_int(value))
    for name in strings:
        value = getattr(event, name)
        if type(value) is str:
            object.__setattr__(event, name, shared_str(value))
