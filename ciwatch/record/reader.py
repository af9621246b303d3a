"""Reading a record back, including one cut short by a kill."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from ciwatch.errors import UsageError
from ciwatch.record.codec import from_json_dict
from ciwatch.record.events import End, Event, Header
from ciwatch.record.writer import RECORD_FILE


@dataclass(frozen=True)
class RecordedEvent:
    seq: int
    t: float
    event: Event


@dataclass
class Record:
    header: Header
    events: list[RecordedEvent] = field(default_factory=list)
    end: End | None = None
    """None when the run did not finish writing its record (ciwatch was killed)."""
    truncated_line: bool = False
    """The last line was cut mid-write."""


def record_from_events(events: list[tuple[int, float, Event]]) -> Record:
    """The record that a list of (seq, t, event) makes, as ``read_record`` would read it."""
    header = events[0][2]
    assert isinstance(header, Header), "a record starts with its header"
    record = Record(header=header)
    for seq, t, event in events[1:]:
        if isinstance(event, End):
            record.end = event
        else:
            record.events.append(RecordedEvent(seq=seq, t=t, event=event))
    return record


def resolve_record_path(path: Path) -> Path:
    """Accept either the ``--out`` directory or the record file itself."""
    if path.is_dir():
        path = path / RECORD_FILE
    if not path.is_file():
        raise UsageError(
            f"no record at {path}",
            hint="Pass the --out directory of a `ciwatch run` (default ciwatch-out/) or its record.jsonl.",
        )
    return path


def read_record(path: Path) -> Record:
    path = resolve_record_path(path)
    header: Header | None = None
    record: Record | None = None
    with path.open("rb") as stream:
        lines = stream.read().split(b"\n")
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        try:
            data = json.loads(raw)
        except json.JSONDecodeError:
            if number >= len(lines) - 1 and record is not None:
                record.truncated_line = True
                break
            raise UsageError(f"{path}:{number}: not a JSON line; is this a ciwatch record?") from None
        try:
            event = from_json_dict(data)
        except (KeyError, ValueError, TypeError) as error:
            raise UsageError(f"{path}:{number}: not a ciwatch event ({error})") from None
        if isinstance(event, Header):
            header = event
            record = Record(header=header)
            continue
        if record is None:
            raise UsageError(f"{path}: the first line is not a ciwatch record header")
        if isinstance(event, End):
            record.end = event
        else:
            record.events.append(RecordedEvent(seq=data["seq"], t=data["t"], event=event))
    if record is None:
        raise UsageError(f"{path}: empty record (no header line)")
    return record
