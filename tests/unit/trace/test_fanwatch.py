"""fanotify's events made into the record's: the paths of a batch as they were when each
event happened (directory renames undone, removed directories named by their removal, merged
events), a reused pid not taken for the process that had it, the filesystems marked, and the
filter without the rows fanotify reports. The kernel's side is faked: a queue of raw events
and handles that resolve to real directories (or are gone)."""

from __future__ import annotations

import os
import struct
from collections.abc import Callable
from pathlib import Path

from ciwatch.record.events import Event, FileWrite
from ciwatch.record.vocabulary import FileOp
from ciwatch.trace.fanotify import (
    FAN_CLOSE_WRITE,
    FAN_CREATE,
    FAN_DELETE,
    FAN_MODIFY,
    FAN_ONDIR,
    FAN_RENAME,
    HandleKey,
    RawEvent,
    writable_mounts,
)
from ciwatch.trace.fanpaths import PathResolver
from ciwatch.trace.fanwatch import FanWatch
from ciwatch.trace.filewatch import FileWatch
from ciwatch.trace.seccomp import build_filter
from ciwatch.trace.table import TABLE
from ciwatch.trace.tasks import TracedProcess

ROOT: HandleKey = (1, b"root")
A: HandleKey = (1, b"dir-a")
B: HandleKey = (1, b"dir-b")
FILE: HandleKey = (1, b"file")
WRITTEN = FAN_CREATE | FAN_MODIFY | FAN_CLOSE_WRITE
EPIDFD = -2
_BPF_JEQ_K = 0x15


class FakeGroup:
    """The group's queue and its handles: ``now`` maps a handle to the directory it is now
    (missing: gone)."""

    def __init__(self, now: dict[HandleKey, Path]) -> None:
        self.now = now
        self.queue: list[RawEvent] = []
        self.mounts: dict[int, str] = {}

    def read(
        self, keep: Callable[[int], bool] = lambda pid: False, wanted: Callable[[int, int], bool] = lambda p, m: True
    ) -> list[RawEvent]:
        """The queue's events ``wanted`` accepts; the pidfds of events not kept are closed, as
        the group does."""
        events, self.queue = [event for event in self.queue if wanted(event.pid, event.mask)], []
        for event in events:
            if event.pidfd >= 0 and not keep(event.pid):
                os.close(event.pidfd)
                event.pidfd = -1
        return events

    def open_handle(self, key: HandleKey) -> int:
        path = self.now.get(key)
        return os.open(path, os.O_PATH) if path is not None else -1

    def release_mounts(self) -> None:
        pass

    def close(self) -> None:
        pass


def _event(mask: int, directory: HandleKey, name: str, obj: HandleKey = FILE, pid: int = 10) -> RawEvent:
    return RawEvent(pid=pid, mask=mask, pidfd=EPIDFD, directory=directory, name=name, obj=obj)


def _rename(old: tuple[HandleKey, str], new: tuple[HandleKey, str], obj: HandleKey, pid: int = 10) -> RawEvent:
    return RawEvent(
        pid=pid,
        mask=FAN_RENAME | FAN_ONDIR,
        pidfd=EPIDFD,
        old_directory=old[0],
        old_name=old[1],
        new_directory=new[0],
        new_name=new[1],
        obj=obj,
    )


def _paths(group: FakeGroup, batch: list[RawEvent]) -> list[tuple[str | None, str | None]]:
    located, _ = PathResolver(group.open_handle).locate(batch)
    return [(where.path, where.removed_as or where.target) for where in located]


def test_a_write_before_its_directory_was_renamed_keeps_the_old_path(tmp_path: Path) -> None:
    (tmp_path / "b").mkdir()
    group = FakeGroup({ROOT: tmp_path, A: tmp_path / "b"})  # a is b now
    batch = [
        _event(WRITTEN, A, "f"),
        _rename((ROOT, "a"), (ROOT, "b"), A),
        _event(WRITTEN, A, "g"),
    ]
    assert _paths(group, batch) == [
        (f"{tmp_path}/a/f", None),
        (f"{tmp_path}/a", f"{tmp_path}/b"),
        (f"{tmp_path}/b/g", None),
    ]


def test_a_removed_directory_is_named_by_its_removal_even_when_merged_with_its_making(tmp_path: Path) -> None:
    """mkdir a, a/f written, rmdir a, all queued before a read: the kernel merges the making and
    the removal of ``a`` into one event, queued before the file's."""
    group = FakeGroup({ROOT: tmp_path})  # a is gone
    batch = [
        _event(FAN_CREATE | FAN_DELETE | FAN_ONDIR, ROOT, "a", obj=A),
        _event(WRITTEN | FAN_DELETE, A, "f"),
    ]
    assert _paths(group, batch) == [(f"{tmp_path}/a", f"{tmp_path}/a"), (f"{tmp_path}/a/f", f"{tmp_path}/a/f")]


def test_nested_removed_directories_are_all_named(tmp_path: Path) -> None:
    group = FakeGroup({ROOT: tmp_path})
    batch = [
        _event(FAN_CREATE | FAN_DELETE | FAN_ONDIR, ROOT, "a", obj=A),
        _event(FAN_CREATE | FAN_DELETE | FAN_ONDIR, A, "b", obj=B),
        _event(WRITTEN, B, "f"),
    ]
    assert _paths(group, batch)[2] == (f"{tmp_path}/a/b/f", None)


def _watch(group: FakeGroup, build: dict[int, TracedProcess]) -> tuple[FanWatch, list[Event]]:
    events: list[Event] = []
    files = FileWatch("/home/user", events.append)
    watch = FanWatch(group, files, build)  # type: ignore[arg-type]
    return watch, events


def _processes(*pids: int) -> dict[int, TracedProcess]:
    return {pid: TracedProcess(pid, 1) for pid in pids}


def test_a_reused_pid_is_not_taken_for_the_process_that_had_it(tmp_path: Path) -> None:
    """An event under a pid just reaped, from a process still alive (its pidfd says so), is
    another process's: held back until that pid is introduced again, then recorded as its."""
    group = FakeGroup({ROOT: tmp_path})
    build = _processes(10)
    watch, events = _watch(group, build)
    old = _event(WRITTEN, ROOT, "old")  # the reaped process's: its pidfd says it has exited
    new = _event(WRITTEN, ROOT, "new")
    new.pidfd = os.pidfd_open(os.getpid())  # a live process under the same pid
    group.queue = [old, new]
    watch.drain(reaped=10)
    assert [e.path for e in events if isinstance(e, FileWrite)] == [f"{tmp_path}/old"]
    build[10].exited = True
    watch.drain()  # not introduced yet: still held
    assert len(events) == 1
    build.update(_processes(10))  # the new process under pid 10, introduced by its creator's fork
    watch.drain()
    assert [e.path for e in events if isinstance(e, FileWrite)] == [f"{tmp_path}/old", f"{tmp_path}/new"]


def test_only_the_build_s_processes_count_and_a_write_is_one_open(tmp_path: Path) -> None:
    group = FakeGroup({ROOT: tmp_path})
    watch, events = _watch(group, _processes(10))
    group.queue = [
        _event(FAN_CREATE, ROOT, "f"),
        _event(FAN_MODIFY, ROOT, "f"),
        _event(FAN_CLOSE_WRITE, ROOT, "f"),
        _event(WRITTEN, ROOT, "ciwatch-record", pid=99),
        _event(FAN_DELETE, ROOT, "f"),
    ]
    watch.drain()
    assert [(e.op, e.path) for e in events if isinstance(e, FileWrite)] == [
        (FileOp.OPEN, f"{tmp_path}/f"),
        (FileOp.UNLINK, f"{tmp_path}/f"),
    ]


def test_a_close_alone_of_the_parent_s_open_file_is_not_the_child_s_write(tmp_path: Path) -> None:
    """The last reference dropped by a child at its exec (it inherited the descriptor of a file
    its parent was writing): the child wrote nothing. A close alone of a file nobody else has
    open for writing is an open for writing (as the stops record it: ``> /dev/null``)."""
    group = FakeGroup({ROOT: tmp_path})
    processes = {10: TracedProcess(10, 1), 11: TracedProcess(11, 10), 12: TracedProcess(12, 1)}
    watch, events = _watch(group, processes)
    group.queue = [
        _event(FAN_MODIFY, ROOT, "f", pid=10),
        _event(FAN_CLOSE_WRITE, ROOT, "f", pid=11),
        _event(FAN_CLOSE_WRITE, ROOT, "g", pid=12),
    ]
    watch.drain()
    writes = [(e.pid, e.op, e.path) for e in events if isinstance(e, FileWrite)]
    assert writes == [(10, FileOp.OPEN, f"{tmp_path}/f"), (12, FileOp.OPEN, f"{tmp_path}/g")]


def test_a_link_recorded_at_its_stop_is_not_recorded_again(tmp_path: Path) -> None:
    group = FakeGroup({ROOT: tmp_path})
    watch, events = _watch(group, _processes(10))
    watch.expect(10, f"{tmp_path}/hardlink")
    group.queue = [_event(FAN_CREATE, ROOT, "hardlink")]
    watch.drain()
    assert events == []


def test_the_marked_filesystems_are_the_writable_ones_once_each() -> None:
    mountinfo = "\n".join(
        [
            "22 1 0:21 / /proc rw,nosuid - proc proc rw",
            "23 1 8:1 / / rw,relatime - ext4 /dev/vda rw",
            "24 23 8:1 /srv /mnt/srv rw - ext4 /dev/vda rw",
            "25 23 0:30 / /dev/shm rw - tmpfs tmpfs rw",
            "26 23 0:31 / /opt/ro ro - ext4 /dev/vdb ro",
            "27 23 0:32 / /mnt/with\\040space rw - tmpfs tmpfs rw",
        ]
    )
    assert writable_mounts(mountinfo) == ["/", "/dev/shm", "/mnt/with space"]


def _compared_numbers(program: bytes) -> set[int]:
    """The constants the filter's equality tests compare the syscall number (and args) with."""
    return {k for code, _, _, k in struct.iter_unpack("<HBBI", program) if code == _BPF_JEQ_K}


def test_the_filter_leaves_out_fanotify_s_rows() -> None:
    with_stops, with_fanotify = _compared_numbers(build_filter()), _compared_numbers(build_filter(fanotify=True))
    for row in TABLE:
        number = row.number
        if row.fanotify:
            assert number in with_stops and number not in with_fanotify, row.name


def test_the_rest_of_the_machine_s_file_events_are_not_resolved(tmp_path: Path) -> None:
    """fanotify reports every process's writes on the marked filesystems: another process's
    file events are dropped without opening their directory's handle (on a busy machine that
    cost the tracer more than the build's own), but its directory renames still count."""
    (tmp_path / "b").mkdir()
    group = FakeGroup({ROOT: tmp_path, A: tmp_path / "b", B: tmp_path})
    opened: list[HandleKey] = []
    open_handle = group.open_handle
    group.open_handle = lambda key: opened.append(key) or open_handle(key)  # type: ignore[method-assign]
    watch, events = _watch(group, _processes(10))
    group.queue = [
        _event(WRITTEN, A, "f"),  # the build's, in a directory another process then renames
        _event(WRITTEN, B, "other", pid=99),
        _rename((ROOT, "a"), (ROOT, "b"), A, pid=99),
    ]
    watch.drain()
    assert [e.path for e in events if isinstance(e, FileWrite)] == [f"{tmp_path}/a/f"]
    assert B not in opened
