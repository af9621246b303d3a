"""Append-only JSONL writer: one event a line, written through to the file as it happens.

Lines go out whole on an ``O_APPEND`` descriptor, so a build or a ciwatch killed at any
moment leaves every line written so far readable; only an ``end`` line says that the run
finished cleanly. The tracer's lines are written in batches, at the latest once the build has
been quiet for 2 ms (ciwatch.trace.batch.HOLD_NS): a ciwatch killed mid-burst loses at most that
burst.

Two things the build must not be able to do to its record (issue 9):

- **Change it unnoticed.** The writer keeps a running SHA-256 of every byte it wrote; each
  segment's closing line (``end``, ``after-build-end``) carries the hash of everything before
  it, which ``ciwatch check`` recomputes (:mod:`ciwatch.record.integrity`). A segment whose
  file was removed or renamed meanwhile is put back at its path from ciwatch's descriptor.
- **Kill the run by filling the disk.** A write that fails (``ENOSPC``, ``EDQUOT``, ``EIO``)
  stops the writing, never the build: the partial line is cut off so that every line on disk
  stays whole, later lines are counted as lost, and the closing line, which says so, is
  written into a small reserve of space set aside in ``--out`` when the record was opened.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
import threading
import time
from collections import Counter
from pathlib import Path

from ciwatch.record.closing import AfterBuild, AfterBuildEnd, End
from ciwatch.record.events import Event, Header
from ciwatch.record.lines import LineEncoder
from ciwatch.record.log import Record
from ciwatch.record.vocabulary import EventKind

RECORD_FILE = "record.jsonl"
#: The lines that frame a segment rather than say what the build did: not counted.
_FRAMING = frozenset({EventKind.HEADER, EventKind.END, EventKind.AFTER_BUILD, EventKind.AFTER_BUILD_END})
#: Their classes: a batch holding one is appended line by line (Record.take places them).
_FRAMING_TYPES = frozenset({Header, End, AfterBuild, AfterBuildEnd})
#: Bytes of record lines the tracer's thread may hold before it writes them.
_FLUSH_AT = 64 * 1024
#: Space set aside beside the record, given back for the closing line and verdict.json once a
#: write has failed: enough for both, small enough not to matter on any real disk.
RESERVE_BYTES = 16 * 1024
RESERVE_FILE = ".ciwatch.reserve"


class _Reserve:
    """A file of preallocated blocks in ``--out``: removing it frees room on a full disk."""

    def __init__(self, directory: Path, size: int) -> None:
        self.path = directory / RESERVE_FILE
        self.held = False
        if size <= 0:
            return
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()  # a killed run's: never written through
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        except OSError:
            return
        try:
            os.posix_fallocate(fd, 0, size)
            self.held = True
        except OSError:
            pass  # already full, or a file system without fallocate: no reserve then
        finally:
            os.close(fd)
        if not self.held:
            self.release()

    def release(self) -> None:
        self.held = False
        with contextlib.suppress(OSError):
            self.path.unlink()


class RecordWriter:
    def __init__(self, path: Path, job_key: str, reserve: int = RESERVE_BYTES) -> None:
        self.path = path
        self.job_key = job_key
        self.counts: Counter[str] = Counter()
        self._seq = 0
        self._lines = LineEncoder(job_key)
        # The tracer (main thread) and the proxy (its own thread) both append.
        self._lock = threading.Lock()
        self._fd = os.open(
            path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND | os.O_CLOEXEC | os.O_NOFOLLOW, 0o644
        )
        self._identity = _identity(os.fstat(self._fd))
        self._owner = threading.get_ident()
        self.kept: Record | None = None
        """Every event, as written or as it would have been (a full disk doesn't make the live
        verdict blind), from the header on: the run is judged without reading the file back.
        Held compactly (:mod:`ciwatch.record.log`): a million events must fit in memory."""
        self._buffer: list[bytes] = []
        self._buffered = 0
        self._hash = hashlib.sha256()
        self.lines_lost = 0
        """Lines that could not be written (their events are still in ``kept``)."""
        self.write_error: str | None = None
        """Why writing stopped (``No space left on device``), or None while it works."""
        self.restored = False
        """Set when the record's path no longer named ciwatch's file and ciwatch put it back."""
        self.restore_error: str | None = None
        """Why ciwatch's file could not be put back at the path (``--out`` removed), or None."""
        self._reserve = _Reserve(path.parent, reserve)

    def append(self, event: Event) -> int:
        """Write one event; returns its sequence number. A segment's closing line (``end``,
        ``after-build-end``) is completed here with the record's hash and losses."""
        with self._lock:
            return self._append(event)

    def append_all(self, events: list[Event]) -> None:
        """Write events in order, under one hold of the lock (the tracer's batches: their lines
        spelled at once, in C where built, all stamped with the moment they are written)."""
        with self._lock:
            kinds: Counter[type[Event]] = Counter(map(type, events))
            if not kinds.keys().isdisjoint(_FRAMING_TYPES):
                for event in events:  # a closing line seals what precedes it: one by one
                    self._append(event)
                return
            first = self._seq + 1
            self._seq += len(events)
            now = round(time.time(), 6)
            writing = self._fd >= 0
            if writing and self.kept is not None:
                self.kept.events.add_all(first, now, events)
            data = self._lines.lines(first, now, events)
            if writing:
                self._buffer += data
                self._buffered += sum(map(len, data))
                if self._buffered >= _FLUSH_AT or threading.get_ident() != self._owner:
                    self._write_buffer()
            for cls, count in kinds.items():
                self.counts[str(cls.kind)] += count

    def _append(self, event: Event) -> int:
        closing = isinstance(event, (End, AfterBuildEnd))
        if closing and isinstance(event, (End, AfterBuildEnd)) and self._fd >= 0:  # (narrowed for the type checker)
            self._write_buffer()
            event = self._sealed(event)
        self._seq += 1
        now = round(time.time(), 6)
        if self._fd >= 0:
            self._keep(now, event)
        data = self._lines.line(self._seq, now, event)
        if self._fd >= 0:
            # The tracer's thread batches its lines while stops come back to back and
            # writes them before it waits (``flush``); every other thread writes through.
            self._buffer.append(data)
            self._buffered += len(data)
            if closing:
                self._write_closing()
            elif self._buffered >= _FLUSH_AT or threading.get_ident() != self._owner:
                self._write_buffer()
        if event.kind not in _FRAMING:
            self.counts[str(event.kind)] += 1
        return self._seq

    def _keep(self, now: float, event: Event) -> None:
        if self.kept is not None:
            self.kept.take(self._seq, now, event)
        elif isinstance(event, Header):
            self.kept = Record(header=event)

    def record(self) -> Record:
        """The record as written so far, for the live verdict: what other threads append while
        it is judged is not in it."""
        with self._lock:
            assert self.kept is not None, "the header is the record's first line"
            return self.kept.as_now()

    def flush(self) -> None:
        with self._lock:
            self._write_buffer()

    @property
    def complete(self) -> bool:
        return self.write_error is None and self.lines_lost == 0

    def _sealed(self, event: End | AfterBuildEnd) -> End | AfterBuildEnd:
        return dataclasses.replace(
            event, record_complete=self.complete, lines_lost=self.lines_lost, record_sha256=self._hash.hexdigest()
        )

    def _write_closing(self) -> None:
        """The closing line says what was lost: written even after a failure, into the
        reserve's room, so that the record ends as one that is known to be incomplete."""
        if self.write_error is not None:
            self._reserve.release()
        lost_before, error_before = self.lines_lost, self.write_error
        self._write_lines(self._buffer)
        if self.lines_lost > lost_before and self._reserve.held:
            # The closing line itself met the full disk: the reserve's room is for it, and
            # if it fits there nothing was lost.
            self.lines_lost, self.write_error = lost_before, error_before
            self._reserve.release()
            self._write_lines(self._buffer)
        self._buffer.clear()
        self._buffered = 0
        self._put_back_if_moved()

    def _write_buffer(self) -> None:
        if self._buffer and self._fd >= 0:
            if self.write_error is None:
                self._write_lines(self._buffer)
            else:
                self.lines_lost += len(self._buffer)
        self._buffer.clear()
        self._buffered = 0

    def _write_lines(self, lines: list[bytes]) -> None:
        """Write whole lines; on failure keep the file to its last whole line and count the rest."""
        view = memoryview(b"".join(lines))
        done = 0
        try:
            while done < len(view):
                done += os.write(self._fd, view[done:])
        except OSError as error:
            self.write_error = error.strerror or str(error)
            whole, partial = _whole_lines(lines, done)
            for data in lines[:whole]:
                self._hash.update(data)
            self.lines_lost += len(lines) - whole
            if partial:
                self._cut(partial)
            return
        self._hash.update(view)

    def _cut(self, partial: int) -> None:
        """Remove the ``partial`` bytes of a line cut short by the failure (at the file's end:
        O_APPEND), so that the record on disk is whole lines only."""
        with contextlib.suppress(OSError):
            os.ftruncate(self._fd, max(0, os.fstat(self._fd).st_size - partial))

    def _put_back_if_moved(self) -> None:
        """If the record's path no longer names the file ciwatch writes (the build removed or
        renamed it, or put another file there), put ciwatch's file back at the path. The build's
        doing is in the record already (``record-tamper``); this keeps the evidence findable."""
        try:
            if _identity(os.lstat(self.path)) == self._identity:
                return
        except FileNotFoundError:
            pass
        except OSError:
            return
        partial = self.path.with_name(f".{self.path.name}.{os.getpid()}")
        try:
            # /proc/self/fd reopens the inode even once it has no name left.
            source = os.open(f"/proc/self/fd/{self._fd}", os.O_RDONLY | os.O_CLOEXEC)
            with contextlib.suppress(FileNotFoundError):
                partial.unlink()
            target = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
            try:
                while os.sendfile(target, source, None, 1 << 20):
                    pass
            finally:
                os.close(source)
                os.close(target)
            os.replace(partial, self.path)
        except OSError as error:
            self.restore_error = error.strerror or str(error)
            with contextlib.suppress(OSError):
                partial.unlink()
            return
        self.restored = True
        os.close(self._fd)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC | os.O_NOFOLLOW)
        self._identity = _identity(os.fstat(self._fd))

    @property
    def closed(self) -> bool:
        return self._fd < 0

    def reopen(self) -> None:
        """Append again after ``close``: the second segment (what processes left running do
        after the ``end`` line) goes on with the same sequence numbers, the same running hash,
        and counts afresh."""
        with self._lock:
            if self._fd < 0:
                self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC | os.O_NOFOLLOW)
                self._identity = _identity(os.fstat(self._fd))
                self.counts.clear()

    def close(self) -> None:
        with self._lock:
            self._write_buffer()
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1
            self._reserve.release()


def _identity(info: os.stat_result) -> tuple[int, int]:
    return info.st_dev, info.st_ino


def _whole_lines(lines: list[bytes], written: int) -> tuple[int, int]:
    """How many of ``lines`` the first ``written`` bytes hold whole, and how many bytes of the
    next one were written."""
    for index, data in enumerate(lines):
        if written < len(data):
            return index, written
        written -= len(data)
    return len(lines), 0
