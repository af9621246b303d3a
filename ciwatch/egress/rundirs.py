"""The run's private directories in memory-backed storage, and the sweep of those a killed run left.

A run makes a few directories (the proxy's confdir, the trust files, the upstream bundle) and
removes them when it stops. A run killed with SIGKILL can't: its directories stay until a
later run sweeps them. A directory is stale when both of these say its run is gone:

- its name carries the creating process's pid and start time (a pid alone may have been
  reused by an unrelated process, which would keep the directory forever);
- the creating process holds an exclusive ``flock`` on the directory while it lives; the
  kernel drops it when the process dies, however it dies. This is what protects a live run
  in another pid namespace sharing the same /dev/shm, whose pid means nothing here.

The name is checked first because a directory exists for a moment before its creator locks it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import stat
import tempfile
from pathlib import Path

from ciwatch.dataclass import dataclass

#: Prefix of every run directory, so a later run can sweep those of killed runs.
RUN_DIR_PREFIX = "ciwatch-run-"

#: Lock descriptors of this process's run directories, by path: closing one releases the lock.
_held_locks: dict[str, int] = {}


@dataclass(frozen=True)
class RunDirOwner:
    pid: int
    start_time: int | None
    """In clock ticks since boot (/proc/PID/stat field 22); None in names made before it was added."""


def runtime_base() -> str:
    return "/dev/shm" if os.access("/dev/shm", os.W_OK) else tempfile.gettempdir()


def _stat_fields(pid: int) -> list[str] | None:
    """/proc/PID/stat from field 3 (the state) on."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: count from the last ')'.
    return text.rpartition(")")[2].split()


def process_start_time(pid: int) -> int | None:
    fields = _stat_fields(pid)
    return int(fields[19]) if fields else None


def make_run_dir(kind: str) -> Path:
    """A private (0700) directory for this run only, locked for as long as this process lives."""
    pid = os.getpid()
    prefix = f"{RUN_DIR_PREFIX}{pid}-{process_start_time(pid)}-{kind}-"
    path = tempfile.mkdtemp(prefix=prefix, dir=runtime_base())
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    # Blocking: a sweeper that took the lock to look releases it at once, seeing its owner alive.
    fcntl.flock(fd, fcntl.LOCK_EX)
    _held_locks[path] = fd
    return Path(path)


def remove_run_dir(path: Path) -> None:
    """Remove one of this process's run directories and release its lock."""
    shutil.rmtree(path, ignore_errors=True)
    fd = _held_locks.pop(str(path), None)
    if fd is not None:
        os.close(fd)


def run_dir_owner(name: str) -> RunDirOwner | None:
    """The process that made a run directory, from its name (``ciwatch-run-PID-START-KIND-XXXX``,
    or ``ciwatch-run-PID-KIND-XXXX`` from older versions)."""
    if not name.startswith(RUN_DIR_PREFIX):
        return None
    parts = name[len(RUN_DIR_PREFIX) :].split("-")
    if not parts[0].isdigit():
        return None
    start_time = int(parts[1]) if len(parts) > 2 and parts[1].isdigit() else None
    return RunDirOwner(int(parts[0]), start_time)


def _owner_alive(owner: RunDirOwner) -> bool:
    fields = _stat_fields(owner.pid)
    # A zombie is dead: a killed tracer whose parent is gone may stay one if nobody reaps it.
    if fields is None or fields[0] in ("Z", "X"):
        return False
    return owner.start_time is None or owner.start_time == int(fields[19])


def _remove_if_stale(path: str) -> bool:
    owner = run_dir_owner(os.path.basename(path))
    if owner is None or _owner_alive(owner):
        return False
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return False  # gone meanwhile, or a link: not ours to follow
    try:
        # Only our own: root must not sweep another user's directories, nor anyone a link.
        if os.fstat(fd).st_uid != os.geteuid() or not stat.S_ISDIR(os.fstat(fd).st_mode):
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False  # its run is alive (in another pid namespace), or another sweeper has it
        shutil.rmtree(path, ignore_errors=True)
        return not os.path.lexists(path)
    finally:
        os.close(fd)


def sweep_stale_run_dirs() -> list[str]:
    """Remove the run directories whose run is gone (it was killed); returns their paths."""
    removed = []
    for base in sorted({runtime_base(), tempfile.gettempdir()}):
        candidates: list[str] = []
        with contextlib.suppress(OSError), os.scandir(base) as entries:
            candidates = [entry.path for entry in entries if entry.name.startswith(RUN_DIR_PREFIX)]
        removed += [path for path in candidates if _remove_if_stale(path)]
    return removed
