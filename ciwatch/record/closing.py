"""The lines that close a segment of the record: ``end`` after the build, and, when processes
were left running, ``after-build`` and ``after-build-end`` around what they did next. Each
closing line carries the hash of every byte before it (``ciwatch check``)."""

from __future__ import annotations

from typing import ClassVar

from ciwatch.dataclass import dataclass, field
from ciwatch.record.events import Event
from ciwatch.record.vocabulary import EventKind


@dataclass(frozen=True, slots=True)
class End(Event):
    kind: ClassVar[EventKind] = EventKind.END
    exit_code: int
    """The exit code ciwatch passes on for the build (128+N for a signal)."""
    build_exit_code: int | None
    build_signal: int | None
    duration_s: float
    event_counts: dict[str, int]
    clean: bool
    """False when tracing was cut short (ciwatch interrupted or a tracer failure)."""
    error: str | None = None
    tracer_stops: int = 0
    """How many times a tracee stopped for the tracer (its cost is per stop)."""
    tracer_reads_judged_in_loop: int = 0
    """Of those, a hook's read-only opens of paths no credential pattern can match, resumed by
    the compiled stop loop without reaching Python (nothing is recorded for them either way)."""
    tracer_cpu_s: float = 0.0
    """CPU time the tracing process used (the build's own time is not in it)."""
    tracer_max_rss_mb: float = 0.0
    """Peak resident memory of the tracing process (proxy included; not the build's), in MB
    of 10^6 bytes, up to this line."""
    foreign_peers: dict[str, int] = field(default_factory=dict)
    """Connections and queries to ciwatch's listeners (proxy, DNS) from processes that are
    not the build's, refused and counted here by listener, never recorded as the build's."""
    record_complete: bool = True
    """False when lines could not be written (a full disk): the record misses some events."""
    lines_lost: int = 0
    """How many lines could not be written, since the record began."""
    record_sha256: str | None = None
    """SHA-256 of every byte of the record before this line, as ciwatch wrote it: ``check``
    recomputes it, so a record changed after the fact (by the build) is told apart."""


@dataclass(frozen=True, slots=True)
class AfterBuild(Event):
    """Written right after ``end`` when processes were left running (``--leftovers leave``):
    they stay traced, and what they do from here on is the record's second segment."""

    kind: ClassVar[EventKind] = EventKind.AFTER_BUILD
    pids: list[int]
    """The processes left running when the build's root exited."""


@dataclass(frozen=True, slots=True)
class AfterBuildEnd(Event):
    """Closes the second segment once the last process left running has exited (or ciwatch
    was stopped); the verdict was then recomputed over the whole record."""

    kind: ClassVar[EventKind] = EventKind.AFTER_BUILD_END
    duration_s: float
    """From the build's root exit to this line."""
    event_counts: dict[str, int]
    """Events of the second segment, by kind."""
    clean: bool
    """False when following the leftovers was cut short (ciwatch stopped, a tracer failure):
    they were killed then."""
    verdict: str | None
    """The verdict over the whole record, as ``verdict.json`` now holds it (None if it could
    not be written)."""
    error: str | None = None
    tracer_stops: int = 0
    tracer_reads_judged_in_loop: int = 0
    """As ``End``'s: since the build started, the second segment included."""
    record_complete: bool = True
    """As ``End``'s, for the second segment."""
    lines_lost: int = 0
    record_sha256: str | None = None
    """SHA-256 of every byte of the record before this line (the ``end`` line included)."""
