"""Events as JSON objects: one record line each, ``kind`` first; reading ignores unknown
fields (forward compatible) and turns closed vocabularies back into their enums."""

from __future__ import annotations

import dataclasses
from enum import StrEnum
from typing import Any

from ciwatch.modes import NetMode
from ciwatch.record.events import (
    AfterBuild,
    AfterBuildEnd,
    AllowlistLearned,
    Anomaly,
    DnsAnswer,
    DnsQuery,
    EgressFlow,
    End,
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
    AnomalyKind,
    ConnectVia,
    EventKind,
    FileOp,
    LeftoverOutcome,
    ReadHow,
    RefusedWhat,
    TlsHandling,
    Transport,
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
        End,
        AfterBuild,
        AfterBuildEnd,
    )
}

#: Fields whose values come from a closed vocabulary, turned back into their StrEnum on reading.
_CLOSED_FIELDS: dict[type[Event], dict[str, type[StrEnum]]] = {
    Header: {"net_mode": NetMode},
    FileWrite: {"op": FileOp},
    Anomaly: {"anomaly": AnomalyKind},
    EgressFlow: {"tls": TlsHandling},
    NetConnect: {"protocol": Transport, "via": ConnectVia},
    NetSend: {"protocol": Transport},
    Refusal: {"what": RefusedWhat},
    FileRead: {"how": ReadHow},
    Leftover: {"action": LeftoverOutcome},
}

_FIELD_NAMES: dict[type[Event], tuple[str, ...]] = {}


def to_json_dict(event: Event) -> dict[str, Any]:
    """The event's fields as a JSON-ready dict, its ``kind`` first. (Not ``asdict``, which
    deep-copies: this runs for every record line.)"""
    names = _FIELD_NAMES.get(type(event))
    if names is None:
        names = _FIELD_NAMES[type(event)] = tuple(f.name for f in dataclasses.fields(event))
    return {"kind": str(event.kind), **{name: getattr(event, name) for name in names}}


def from_json_dict(data: dict[str, Any]) -> Event:
    """Rebuild an event from a record line; unknown fields are ignored (forward compatible)."""
    cls = EVENT_TYPES[EventKind(data["kind"])]
    names = {f.name for f in dataclasses.fields(cls)}
    values = {k: v for k, v in data.items() if k in names}
    for name, vocabulary in _CLOSED_FIELDS.get(cls, {}).items():
        if name in values:
            values[name] = vocabulary(values[name])
    return cls(**values)
