"""File writes (and a hook's reads of credentials) from fanotify instead of seccomp stops.

When ciwatch is privileged, the kernel reports every write on the marked filesystems to a
fanotify group (:mod:`ciwatch.trace.fanotify`) while the writer runs on: the seccomp filter
no longer stops at write-opens, renames and unlinks (the table's ``fanotify`` rows). The
tracer drains the group before it handles an exit or an exec (so a process's events are in
the record before its end, and a file written then executed is known as written), when it
is idle, and every few stops. Each event becomes what the stop would have recorded:

- a file created, modified or closed after writing: ``open`` (flags unknown: None);
- a rename (of a file or a directory): ``rename`` from the old path to the new;
- a removal (``unlink``, ``rmdir``): ``unlink``;
- an open by a hook's process that is not a write, of a credential file: a FileRead.

Only the build's processes count: the event's pid must be one of the tracer's. A pid seen
again after its process was reaped belongs to somebody else: the event's pidfd (made for the
very process that acted) says whether it is still alive, and an event of a live process
under a pid just reaped is held back until that pid is introduced again, or dropped.

Rare writes fanotify can't describe as a stop does stay stops: a hard link's source name, a
symlink's text, chmod's mode, truncate, memfd. Their CREATE or MODIFY events are then
expected (:meth:`FanWatch.expect`) and not recorded a second time.
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
import time
from collections.abc import Callable, Mapping

from ciwatch.dataclass import dataclass, field
from ciwatch.facts.paths import credential_places
from ciwatch.record.events import FileHash, FileWrite
from ciwatch.record.vocabulary import FileOp
from ciwatch.trace.fandescriptors import ClosedFiles, HookReads, path_of
from ciwatch.trace.fanotify import (
    FAN_CLOSE_WRITE,
    FAN_CREATE,
    FAN_DELETE,
    FAN_MODIFY,
    FAN_ONDIR,
    FAN_RENAME,
    WRITE_MASK,
    FanotifyGroup,
    RawEvent,
    has_exited,
)
from ciwatch.trace.fanpaths import Located, PathResolver
from ciwatch.trace.fanrepeats import Writing, without_repeats
from ciwatch.trace.filewatch import FileWatch
from ciwatch.trace.idlewait import DRAIN_INTERVAL_MS, IdleWaiter
from ciwatch.trace.options import TracerOptions
from ciwatch.trace.tasks import TracedProcess, TracedThread

log = logging.getLogger(__name__)

_WRITES = FAN_MODIFY | FAN_CLOSE_WRITE
#: Writes recorded at their stop that fanotify reports as well (as a creation or a change).
_ALSO_REPORTED = frozenset({FileOp.LINK, FileOp.SYMLINK, FileOp.TRUNCATE})
_StopHandler = Callable[[TracedThread, FileWrite], None]
#: The group is also drained every this many stops, so that the record keeps up with a
#: build that rarely exits or idles.
DRAIN_EVERY = 64
#: At most this many events wait for their reused pid to be introduced.
_DEFERRED_LIMIT = 10_000
#: Re-read the queue this many times for a directory removed after the batch was read.
_RETRIES = 2


@dataclass
class _Batch:
    """What one drain holds back to its end."""

    removed_directories: list[FileWrite] = field(default_factory=list)
    """Directories removed: recorded at the batch's end, the deepest first. A directory made
    and removed within the batch is one merged event, queued where it was made: its removal
    can't be placed among the other events, only after them (and after what it held)."""


class FanWatch:
    """Turns the group's events into FileWatch's, for the build's processes only."""

    def __init__(
        self,
        group: FanotifyGroup,
        files: FileWatch,
        processes: Mapping[int, TracedProcess],
        reads: HookReads | None = None,
        closed: ClosedFiles | None = None,
    ) -> None:
        self._group = group
        self._reads = reads
        self._closed = closed
        self._closed_marks = len(group.mounts)
        self._files = files
        self._processes = processes
        """The tracer's process table: only the build's running processes' events count."""
        self._reading = False
        """Whether open events are asked for now: only while a hook runs (every open on the
        machine is an event, and only a hook's reads matter)."""
        self._paths = PathResolver(group.open_handle)
        self._expected: set[tuple[int, str]] = set()
        self._writing: set[Writing] = set()
        """(pid, file) of each open for writing seen and not yet closed: its later events are
        the same open."""
        self._deferred: list[RawEvent] = []
        self._waiter = IdleWaiter()
        self._drained = 0.0
        """When the last drain began (``time.monotonic``)."""

    def wait(self, on_tick: Callable[[], None]) -> tuple[int, int]:
        """``waitpid(-1, __WALL)``, calling ``on_tick`` (a drain when due) every DRAIN_INTERVAL_MS."""
        return self._waiter.wait(on_tick)

    def expect(self, pid: int, path: str) -> None:
        """A stop has recorded a write of ``path`` that fanotify also reports (a link's new
        name, a symlink, a truncate): its next create or modify event by ``pid`` is that one."""
        if len(self._expected) >= _DEFERRED_LIMIT:  # never reported (an unmarked filesystem)
            self._expected.clear()
        self._expected.add((pid, path))

    def after(self, on_file: _StopHandler) -> _StopHandler:
        """The stop's handler of a file syscall, then: a write fanotify reports as well (a
        link's new name made, a symlink made, a truncate's change) is expected from it, so
        that the stop's event is the one recorded."""

        def handle(thread: TracedThread, event: FileWrite) -> None:
            on_file(thread, event)
            if event.op in _ALSO_REPORTED:
                self.expect(thread.tgid, event.target if event.op is FileOp.LINK and event.target else event.path)

        return handle

    def _is_build(self, pid: int) -> bool:
        process = self._processes.get(pid)
        return process is not None and not process.exited

    def _in_hook(self, pid: int) -> bool:
        process = self._processes.get(pid)
        return process is not None and process.in_hook and not process.exited

    def watch_reads(self, on: bool) -> None:
        """Ask for opens in /proc (a hook has started), or no longer (none runs now)."""
        if self._reads is not None and on != self._reading:
            self._reading = on
            self._reads.watch(on)

    def tick(self) -> None:
        """Drain if the last drain is half DRAIN_INTERVAL_MS old (the build is idle, or between
        stops that need no drain; the waiter's timer calls this at least once an interval): the
        record keeps up, and a burst of stops doesn't drain after each one."""
        if time.monotonic() - self._drained >= DRAIN_INTERVAL_MS / 2000:
            self.drain()

    def drain(self, reaped: int = 0) -> None:
        """Record every event queued now. ``reaped``: a pid whose process has just been
        reaped; an event under it from a live process is another process's."""
        self._drained = time.monotonic()
        hook_ended = self._reading and self._in_hook(reaped)  # the reaped one isn't marked exited yet
        try:
            self._drain(reaped)
        finally:
            self._group.release_mounts()
        if hook_ended and not any(p.in_hook and not p.exited and p.pid != reaped for p in self._processes.values()):
            self.watch_reads(False)

    def _drain(self, reaped: int) -> None:
        if self._reads is not None:
            for pid, path, opened_as in self._reads.read(self._in_hook):
                self._files.record_read(pid, path, opened_as)
        # Closes first, their hashes recorded last: each close read now had its write queued
        # in the other group before it, so the write is in the record before the hash.
        hashes: list[FileHash] = []
        if self._closed is not None:
            if len(self._group.mounts) != self._closed_marks:  # a filesystem mounted since
                self._closed_marks = len(self._group.mounts)
                self._closed.mark(self._group.mounts.values())
            self._closed.read(self._is_build, lambda pid, fd: self._hash_closed(pid, fd, hashes))
        try:
            self._drain_writes(reaped)
        finally:
            for found in hashes:
                self._files.record_hash(found)

    def _hash_closed(self, pid: int, fd: int, into: list[FileHash]) -> None:
        """An executable is hashed as it is closed after writing: it may be run, changed or
        removed before the end of the run."""
        found = self._files.hash_of(lambda: path_of(fd), pid, fd)
        if found is not None:
            into.append(found)

    def _drain_writes(self, reaped: int) -> None:
        held = {id(raw) for raw in self._deferred}
        batch = self._deferred + self._group.read(keep=lambda pid: pid == reaped, wanted=self._counted(reaped))
        self._deferred = []
        if not batch:
            return
        batch = self._without_repeats(batch, reaped, held)
        located, complete = self._paths.locate(batch)
        for _ in range(_RETRIES):
            if complete:
                break
            more = self._group.read(wanted=self._counted(reaped))  # a directory gone since: its removal is queued
            if not more:
                break
            batch += more
            located, complete = self._paths.locate(batch)
        recorded = _Batch()
        for where in located:
            raw = where.raw
            if self._hold(raw, reaped, id(raw) in held):
                continue
            if self._is_build(raw.pid):
                self._record(where, recorded)
            if raw.pidfd >= 0:
                os.close(raw.pidfd)
        for removal in sorted(recorded.removed_directories, key=lambda w: -w.path.count("/")):
            self._files.record_write(removal.pid, removal)

    def _counted(self, reaped: int) -> Callable[[int, int], bool]:
        """Which events read are worth decoding: the build's
        own (or one that may yet be, under a pid just reaped), or a directory's, whoever made
        it (a rename or a removal of a directory changes the paths of the events before it).
        The rest of the machine's file events are dropped undecoded: handling them cost the
        tracer a busy machine's every write (the group reports every process's)."""

        def wanted(pid: int, mask: int) -> bool:
            return bool(mask & FAN_ONDIR) or pid == reaped or self._is_build(pid)

        return wanted

    def _without_repeats(self, batch: list[RawEvent], reaped: int, held: set[int]) -> list[RawEvent]:
        """The batch without the events of opens recorded already (:mod:`fanrepeats`), but for
        those to be held back (a reused pid) and those of a process a stop expects a change
        from (:meth:`expect`: the change is the stop's)."""
        if not self._writing:
            return batch
        expecting = {pid for pid, _ in self._expected}

        def kept_anyway(raw: RawEvent) -> bool:
            return raw.pid in expecting or raw.pid == reaped or id(raw) in held

        return without_repeats(batch, self._writing, self._parent_of, kept_anyway)

    def _parent_of(self, pid: int) -> int:
        process = self._processes.get(pid)
        return process.ppid if process is not None else -1

    def _hold(self, raw: RawEvent, reaped: int, held: bool) -> bool:
        """Whether to hold the event back: its pid was just reaped (or, held already, is
        still not the build's) while the process that acted is alive, so it is another
        process, which the build may yet introduce under that pid (its fork's event comes
        later). Its pidfd is kept open until then."""
        waiting = raw.pid == reaped or (held and not self._is_build(raw.pid))
        if not waiting or raw.pidfd < 0 or has_exited(raw.pidfd) or len(self._deferred) >= _DEFERRED_LIMIT:
            return False
        self._deferred.append(raw)
        return True

    def _record(self, where: Located, recorded: _Batch) -> None:
        raw, path = where.raw, where.path
        if path is None:
            log.debug("fanotify: no path for an event of %d (mask %#x)", raw.pid, raw.mask)
            return
        pid, mask = raw.pid, raw.mask
        if mask & FAN_RENAME:
            if where.target is not None:
                self._files.record_write(pid, FileWrite(pid=pid, op=FileOp.RENAME, path=path, target=where.target))
                if self._reads is not None:
                    self._reads.made(where.target)
            return
        if not mask & FAN_ONDIR:
            self._record_file(raw, path, recorded)
        if mask & FAN_DELETE:
            removal = FileWrite(pid=pid, op=FileOp.UNLINK, path=where.removed_as or path)
            if mask & FAN_ONDIR:
                recorded.removed_directories.append(removal)
            else:
                self._files.record_write(pid, removal)

    def _record_file(self, raw: RawEvent, path: str, recorded: _Batch) -> None:
        pid, mask = raw.pid, raw.mask
        if mask & _WRITES == FAN_CLOSE_WRITE and not mask & FAN_CREATE and self._parent_s(raw, path):
            return
        wrote = bool(mask & _WRITES)
        if mask & FAN_CREATE:
            if (pid, path) in self._expected:
                self._expected.discard((pid, path))
                wrote = False  # a link or symlink, recorded at its stop
            elif wrote or self._is_regular(raw):  # opened for writing: what the stop records too
                wrote = True
        elif wrote and mask & FAN_MODIFY and not mask & FAN_CLOSE_WRITE and (pid, path) in self._expected:
            self._expected.discard((pid, path))  # a truncate, recorded at its stop
            wrote = False
        if wrote:
            self._wrote(raw, path)
        if mask & FAN_CREATE and self._reads is not None:
            self._reads.made(path)  # a credential file made now: its opens are watched too

    def _parent_s(self, raw: RawEvent, path: str) -> bool:
        """A close alone, of a file the closer's parent has open for writing: the kernel reports a
        close for whoever drops the last reference, here a child that inherited the parent's
        descriptor and closed it at its exec (then often a hook's first process). The parent's
        write, not the child's; the parent's open ends with it."""
        process = self._processes.get(raw.pid)
        writing = (process.ppid, raw.obj or path) if process is not None else None
        if writing is None or writing not in self._writing:
            return False
        self._writing.discard(writing)
        return True

    def _wrote(self, raw: RawEvent, path: str) -> None:
        """One ``open`` per time a process has a file open for writing: its first event
        (creation, change or close) is recorded, its later ones, in this drain or the next,
        are the same open, until the close after writing ends it."""
        writing = (raw.pid, raw.obj or path)
        if writing not in self._writing:
            self._files.record_write(raw.pid, FileWrite(pid=raw.pid, op=FileOp.OPEN, path=path))
            if len(self._writing) >= _DEFERRED_LIMIT:  # closes never seen (by another process)
                self._writing.clear()
            self._writing.add(writing)
        if raw.mask & FAN_CLOSE_WRITE:
            self._writing.discard(writing)

    def _is_regular(self, raw: RawEvent) -> bool:
        """An object created and not opened for writing is a file unless it is a fifo, a
        socket or a device (a unix socket's bind, mknod); one already gone counts as a file."""
        if raw.obj is None:
            return True
        fd = self._group.open_handle(raw.obj)
        if fd < 0:
            return True
        try:
            mode = os.fstat(fd).st_mode
        except OSError:
            return True
        finally:
            os.close(fd)
        return stat.S_ISREG(mode)

    def close(self) -> None:
        for raw in self._deferred:
            with contextlib.suppress(OSError):
                os.close(raw.pidfd)
        self._deferred = []
        self._waiter.close()
        self._group.close()
        if self._reads is not None:
            self._reads.close()
        if self._closed is not None:
            self._closed.close()


def open_fan_watch(options: TracerOptions, files: FileWatch, processes: Mapping[int, TracedProcess]) -> FanWatch | None:
    """The groups of a run that asks for them: writes on every writable filesystem, closes
    after writing on the same (to hash executables as they are closed), and, when a hook's
    reads matter, opens of credentials."""
    if not options.fanotify:
        return None
    group = options.fanotify_group or FanotifyGroup(WRITE_MASK)
    closed = reads = None
    try:
        closed = ClosedFiles(group.mounts.values())
        if options.follow_hooks:
            reads = HookReads(options.home, credential_places(options.home))
    except OSError:
        group.close()
        if closed is not None:
            closed.close()
        raise
    return FanWatch(group, files, processes, reads, closed)
