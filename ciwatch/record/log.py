"""A record's events as held in memory: compactly, since a long build records a million of them.

The live verdict judges the events the writer kept, and ``ciwatch check`` the events it read
back; both hold them here (issue 9: a million events in a few hundred MB). Two choices make an
event cheap:

- **Columns, not objects, for what every event has.** Sequence numbers and times sit in
  arrays (8 bytes each, where an ``int`` and a ``float`` object take 28 and 24, and a
  ``RecordedEvent`` around them 56 more); a ``RecordedEvent`` is made only for whoever iterates
  the log item by item.
- **File writes as rows of columns.** Most of a build's events are files written (npm
  unpacking packages, compilers writing objects), and no rule needs them as objects: a write
  whose only fields are its pid, operation, path and flags is held as those four in arrays
  (its path the very string the tracer decoded, which the tracer also keeps to hash the
  executables written), and made into a ``FileWrite`` equal to the original when a rule
  reads it. Writes with more fields (a rename's target, the spelling as passed) are rare and
  kept whole.

Rules ask for the kinds they judge (``of``, ``file_writes``): a pass over the record's
processes or connections doesn't step over its million file writes.
"""

from __future__ import annotations

import dataclasses
from array import array
from collections.abc import Callable, Collection, Iterator
from typing import TypeVar, overload

from ciwatch.dataclass import dataclass, field
from ciwatch.record.closing import AfterBuild, AfterBuildEnd, End
from ciwatch.record.events import Event, FileWrite, Header, Leftover
from ciwatch.record.vocabulary import FileOp, LeftoverOutcome

_E = TypeVar("_E", bound=Event)
_OPS = tuple(FileOp)
_OP_NUMBER = {op: number for number, op in enumerate(_OPS)}
_INT32 = 1 << 31
_NO_FLAGS = -1
#: In the order of events: which store holds each one.
_OBJECT, _WRITE = 0, 1


@dataclass(frozen=True, slots=True)
class RecordedEvent:
    seq: int
    t: float
    event: Event


class _FileWrites:
    """File writes as columns: pid, operation, flags and path of each, in record order."""

    def __init__(self) -> None:
        self.seqs = array("q")
        self.times = array("d")
        self.pids = array("i")
        self.ops = array("B")
        self.flags = array("i")
        self.paths: list[str | None] = []
        """The path, or None for a write kept whole (in ``whole``)."""
        self.whole: dict[int, FileWrite] = {}

    def add(self, seq: int, t: float, event: FileWrite) -> None:
        index = len(self.paths)
        self.seqs.append(seq)
        self.times.append(t)
        op = _OP_NUMBER.get(event.op)
        pid, flags = event.pid, _NO_FLAGS if event.flags is None else event.flags
        plain = event.target is None and event.as_written is None and event.target_as_written is None
        if plain and op is not None and 0 <= pid < _INT32 and 0 <= flags < _INT32 and type(event.path) is str:
            self.pids.append(pid)
            self.ops.append(op)
            self.flags.append(flags)
            self.paths.append(event.path)
            return
        self.pids.append(0)
        self.ops.append(op if op is not None else 255)
        self.flags.append(_NO_FLAGS)
        self.paths.append(None)
        self.whole[index] = event

    def path(self, index: int) -> str:
        path = self.paths[index]
        return self.whole[index].path if path is None else path

    def event(self, index: int) -> FileWrite:
        path = self.paths[index]
        if path is None:
            return self.whole[index]
        flags = self.flags[index]
        return FileWrite(self.pids[index], _OPS[self.ops[index]], path, flags=None if flags == _NO_FLAGS else flags)

    def pid(self, index: int) -> int:
        return self.pids[index] if self.paths[index] is not None else self.whole[index].pid


class EventLog:
    """The events of a record (framing lines apart), in record order. ``append`` takes a
    ``RecordedEvent`` (or ``add`` its parts); ``view`` is the log as it is now, which later
    appends leave unchanged (take it under the lock of whoever appends)."""

    def __init__(self) -> None:
        self._order = bytearray()
        self._objects: list[Event] = []
        self._object_seqs = array("q")
        self._object_times = array("d")
        self._writes = _FileWrites()
        self._ends: tuple[int, int, int] | None = None
        """A view's lengths: events, objects, file writes."""

    def add(self, seq: int, t: float, event: Event) -> None:
        self.add_all(seq, t, [event])

    def add_all(self, first_seq: int, t: float, events: list[Event]) -> None:
        """``add`` for events numbered from ``first_seq``, all at ``t`` (the writer's batches)."""
        if self._ends is not None:
            raise TypeError("a view of an event log is read-only")
        writes, order = self._writes, self._order
        for seq, event in enumerate(events, first_seq):
            if type(event) is FileWrite:
                writes.add(seq, t, event)
                order.append(_WRITE)
            else:
                self._objects.append(event)
                self._object_seqs.append(seq)
                self._object_times.append(t)
                order.append(_OBJECT)

    def append(self, item: RecordedEvent) -> None:
        self.add(item.seq, item.t, item.event)

    def view(self) -> EventLog:
        view = EventLog.__new__(EventLog)
        view._order, view._objects = self._order, self._objects
        view._object_seqs, view._object_times, view._writes = self._object_seqs, self._object_times, self._writes
        view._ends = self._lengths()
        return view

    def _lengths(self) -> tuple[int, int, int]:
        if self._ends is not None:
            return self._ends
        return len(self._order), len(self._objects), len(self._writes.paths)

    def __len__(self) -> int:
        return self._lengths()[0]

    def __iter__(self) -> Iterator[RecordedEvent]:
        for seq, t, event in self._all():
            yield RecordedEvent(seq, t, event)

    def _all(self) -> Iterator[tuple[int, float, Event]]:
        total, _, _ = self._lengths()
        order, writes = self._order, self._writes
        objects, object_seqs, object_times = self._objects, self._object_seqs, self._object_times
        next_object = next_write = 0
        for position in range(total):
            if order[position] == _WRITE:
                yield writes.seqs[next_write], writes.times[next_write], writes.event(next_write)
                next_write += 1
            else:
                yield object_seqs[next_object], object_times[next_object], objects[next_object]
                next_object += 1

    def pids(self) -> Iterator[tuple[int, int | None, Event | None]]:
        """(seq, pid, event) of every event in order; a file write's event is None (its pid is
        all a process tree needs of it), another event's pid is None."""
        total, _, _ = self._lengths()
        order, writes = self._order, self._writes
        objects, object_seqs = self._objects, self._object_seqs
        next_object = next_write = 0
        for position in range(total):
            if order[position] == _WRITE:
                yield writes.seqs[next_write], writes.pid(next_write), None
                next_write += 1
            else:
                yield object_seqs[next_object], None, objects[next_object]
                next_object += 1

    @overload
    def of(self, kind: type[_E], /) -> Iterator[tuple[int, _E]]: ...
    @overload
    def of(self, *types: type[Event]) -> Iterator[tuple[int, Event]]: ...
    def of(self, *types: type[Event]) -> Iterator[tuple[int, Event]]:
        """(seq, event) of the events of these types (not ``FileWrite``: ``file_writes``), in order."""
        assert FileWrite not in types, "file writes are read with file_writes()"
        _, count, _ = self._lengths()
        objects, seqs = self._objects, self._object_seqs
        for index in range(count):
            event = objects[index]
            if isinstance(event, types):
                yield seqs[index], event

    def objects(self) -> Iterator[Event]:
        """Every event but the file writes, in order."""
        _, count, _ = self._lengths()
        objects = self._objects
        for index in range(count):
            yield objects[index]

    def file_writes(
        self, ops: Collection[FileOp] | None = None, touching: Callable[[str], bool] | None = None
    ) -> Iterator[tuple[int, FileWrite]]:
        """(seq, event) of each file write, in order: of these operations only, and whose path
        or target satisfies ``touching``, when given. The rest are never made into objects."""
        writes = self._writes
        for index in self._write_indices(ops):
            if touching is None:
                yield writes.seqs[index], writes.event(index)
                continue
            event = writes.whole.get(index) if writes.paths[index] is None else None
            if touching(writes.path(index)) or (event is not None and event.target and touching(event.target)):
                yield writes.seqs[index], writes.event(index)

    def written_paths(self, ops: Collection[FileOp] | None = None) -> Iterator[tuple[int, FileOp, str, str | None]]:
        """(seq, operation, path, target) of each file write, in order, without the events."""
        writes = self._writes
        for index in self._write_indices(ops):
            path = writes.paths[index]
            if path is not None:
                yield writes.seqs[index], _OPS[writes.ops[index]], path, None
            else:
                event = writes.whole[index]
                yield writes.seqs[index], event.op, event.path, event.target

    def _write_indices(self, ops: Collection[FileOp] | None) -> Iterator[int]:
        _, _, count = self._lengths()
        if ops is None:
            yield from range(count)
            return
        # The operation is a column: writes of other operations are skipped without a look.
        wanted, column = bytes(sorted(_OP_NUMBER[op] for op in ops)), self._writes.ops
        for index in range(count):
            if column[index] in wanted:
                yield index


@dataclass
class Record:
    header: Header
    events: EventLog = field(default_factory=EventLog)
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
            event.action is LeftoverOutcome.LEFT_RUNNING for _, event in self.events.of(Leftover)
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
            self.events.add(seq, t, event)

    def as_now(self) -> Record:
        """The record as it is now, sharing its events: what is appended later (by the proxy's
        thread, while this one is judged) is not in it."""
        return dataclasses.replace(self, events=self.events.view())
