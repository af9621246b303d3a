"""Reading a record back, including one cut short by a kill."""

from __future__ import annotations

import json
import json.scanner
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

from ciwatch.errors import UsageError
from ciwatch.record.codec import FieldProblem, described, event_type, from_json_dict, line_framing, shown
from ciwatch.record.events import Event, Header
from ciwatch.record.log import EventLog, Record, RecordedEvent
from ciwatch.record.writer import RECORD_FILE

__all__ = ["EventLog", "Record", "RecordedEvent", "read_record", "record_from_events", "resolve_record_path"]


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


#: Longest line read. The longest a writer can produce is an exec's argv, which the kernel
#: caps at 6 MiB (argv and environment together); written as JSON, a byte that isn't UTF-8
#: takes 6 (``\udcXX``). A build must not be able to make its own record unreadable.
MAX_LINE_BYTES = 64 * 1024 * 1024
#: Beyond this size a line is parsed counting what it builds: parsed JSON can take 10 to 25
#: times its text in memory (``[[],[],...]``, ``["ab","ab",...]``), and only a long argv is long.
LARGE_LINE = 1024 * 1024
#: More than the kernel lets an exec pass (about 630 000 one-byte arguments in 6 MiB).
_MAX_VALUES_IN_LARGE_LINE = 1_000_000
_HINT = "The record is damaged, or is not a ciwatch record; run the build again with `ciwatch run` for a new one."


class _BadLine(Exception):
    """What is wrong with one line; read_record says where."""

    def __init__(self, problem: str, *, cut_short: bool = False) -> None:
        super().__init__(problem)
        self.cut_short = cut_short
        """The line is not JSON at all: on the last line, a write cut by a kill."""


def read_record(path: Path) -> Record:
    """Read a record back. Any line that is not what the record format says is a UsageError
    naming the line and the field; lines of a kind this ciwatch doesn't know are skipped."""
    path = resolve_record_path(path)
    with path.open("rb") as stream:
        return _read_lines(stream, shown(str(path), 200))


def _read_lines(stream: IO[bytes], where: str) -> Record:
    record: Record | None = None
    for number, raw in _numbered_lines(stream, where):
        if not raw.strip():
            continue
        try:
            read = _read_line(raw)
        except _BadLine as problem:
            if problem.cut_short and record is not None and _only_blank_left(stream):
                record.truncated_line = True
                break
            raise UsageError(f"{where} line {number}: {problem}", hint=_HINT) from None
        if read is None:
            continue  # a kind this ciwatch doesn't know: a newer one wrote it
        seq, t, event = read
        if isinstance(event, Header):
            if record is not None:
                raise UsageError(
                    f"{where} line {number}: a second `header` line (two records in one file?)", hint=_HINT
                )
            record = Record(header=event)
        elif record is None:
            raise UsageError(
                f"{where} line {number}: a `{event.kind}` line before the record's `header` line", hint=_HINT
            )
        else:
            record.take(seq, t, event)
    if record is None:
        raise UsageError(f"{where}: empty record (no header line)", hint=_HINT)
    return record


def _numbered_lines(stream: IO[bytes], where: str) -> Iterator[tuple[int, bytes]]:
    """The file's lines, numbered from 1, none held longer than MAX_LINE_BYTES."""
    number = 0
    while line := stream.readline(MAX_LINE_BYTES + 1):
        number += 1
        if len(line) > MAX_LINE_BYTES:
            raise UsageError(f"{where} line {number}: longer than {MAX_LINE_BYTES} bytes", hint=_HINT)
        yield number, line


def _only_blank_left(stream: IO[bytes]) -> bool:
    while chunk := stream.read(64 * 1024):
        if chunk.strip():
            return False
    return True


def _read_line(raw: bytes) -> tuple[int, float, Event] | None:
    """One line's sequence number, time and event; None for a kind this ciwatch doesn't know."""
    data = _parse_json(raw)
    if not isinstance(data, dict):
        raise _BadLine(f"expected a JSON object, got {described(data)}")
    try:
        seq, t, kind = line_framing(data)
        if event_type(kind) is None:
            return None
        return seq, t, from_json_dict(data)
    except FieldProblem as problem:
        raise _BadLine(f"{problem} (in a `{shown(str(data.get('kind')))}` line)") from None


def _parse_json(raw: bytes) -> Any:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise _BadLine(
            f"not UTF-8 text (byte 0x{raw[error.start]:02x} at column {error.start + 1})", cut_short=True
        ) from None
    decoder = _CountingDecoder() if len(raw) > LARGE_LINE else _DECODER
    try:
        return decoder.decode(text)
    except json.JSONDecodeError as error:
        raise _BadLine(f"not JSON ({shown(error.msg)} at column {error.colno})", cut_short=True) from None
    except RecursionError:
        raise _BadLine("JSON nested too deep") from None
    except _TooManyValues:
        raise _BadLine(
            f"a line of {len(raw)} bytes holding over {_MAX_VALUES_IN_LARGE_LINE} values: not one ciwatch writes"
        ) from None
    except ValueError as error:  # an integer of thousands of digits, NaN or Infinity
        raise _BadLine(f"not JSON that ciwatch reads ({shown(str(error))})") from None


class _TooManyValues(Exception):
    pass


class _CountingDecoder(json.JSONDecoder):
    """The pure-Python scanner (strings are still decoded in C), counting every value it makes:
    a long line of garbage is refused before it takes many times its size in memory."""

    def __init__(self) -> None:
        super().__init__(parse_constant=_no_constant)
        self.values_left = _MAX_VALUES_IN_LARGE_LINE
        for name in ("parse_string", "parse_array", "parse_object", "parse_int", "parse_float"):
            setattr(self, name, self._counted(getattr(self, name)))
        # Built last: the scanner takes the parse functions as they are now.
        self.scan_once = json.scanner.py_make_scanner(self)  # type: ignore[attr-defined]  # not in typeshed

    def _counted(self, parse: Callable[..., Any]) -> Callable[..., Any]:
        def counted(*args: Any) -> Any:
            self.values_left -= 1
            if self.values_left < 0:
                raise _TooManyValues
            return parse(*args)

        return counted


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number a record holds")


_DECODER = json.JSONDecoder(parse_constant=_no_constant)
