"""Reading a record back, including one cut short by a kill."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from ciwatch.errors import UsageError
from ciwatch.record.codec import from_json_dict
from ciwatch.record.events import AfterBuild, AfterBuildEnd, End, Event, Header, Leftover
from ciwatch.record.vocabulary import LeftoverOutcome
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
    after_build: AfterBuild | None = None
    """Set when the record has a second segment: processes left running were followed after
    ``end``; their events are in ``events`` like the others."""
    after_build_end: AfterBuildEnd | None = None
    """The second segment's closing line (None while they run, or if ciwatch was killed)."""
    after_build_seq: int = 0
    """The sequence number of the ``after-build`` line: later events are of the second segment."""

    @property
    def following_leftovers(self) -> bool:
        """Processes were left running and their second segment is not closed (they still run,
        or ciwatch was killed meanwhile): a verdict of this record may not be the last word."""
        if self.after_build_end is not None:
            return False
        return self.after_build is not None or any(
            isinstance(item.event, Leftover) and item.event.action is LeftoverOutcome.LEFT_RUNNING
            for item in self.events
        )

    def take(self, seq: int, t: float, event: Event) -> None:
        """Place one event read back: framing lines on the record, the rest in ``events``."""
        if isinstance(event, End):
            self.end = event
        elif isinstance(event, AfterBuild):
            self.after_build, self.after_build_seq = event, seq
        elif isinstance(event, AfterBuildEnd):
            self.after_build_end = event
        else:
            self.events.append(RecordedEvent(seq=seq, t=t, event=event))


def record_from_events(events: list[tuple[int, float, Event]]) -> Record:
    """The record that a list of (seq, t, event) makes, as ``read_record`` would read it."""
    header = events[0][2]
    assert isinstance(header, Header), "a record starts with its header"
    record = Record(header=header)
    for seq, t, event in events[1:]:
        record.take(seq, t, event)
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
        record.take(data["seq"], data["t"], event)
    if record is None:
        raise UsageError(f"{path}: empty record (no header line)")
    return record
