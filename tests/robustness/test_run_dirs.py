"""A run killed with SIGKILL leaves its directories in /dev/shm; the next run sweeps them, and
never a live run's (issue: ``/dev/shm/ciwatch-run-*`` left after a SIGKILL were swept only by
chance: only when no process had taken the dead run's pid since)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ciwatch.egress.rundirs import RUN_DIR_PREFIX, process_start_time, sweep_stale_run_dirs

REPOSITORY = Path(__file__).resolve().parents[2]

#: A process that makes a run directory the way a run does, puts a file in it, says where, and waits.
_HOLDER = """
import sys, time
from ciwatch.egress.rundirs import make_run_dir
path = make_run_dir("ca")
(path / "dhparam.pem").write_text("parameters")
print(path, flush=True)
time.sleep(600)
"""


class Holder:
    def __init__(self, prefix: list[str]) -> None:
        self.process = subprocess.Popen(
            [*prefix, sys.executable, "-c", _HOLDER],
            cwd=REPOSITORY,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        self.directory = Path(self.process.stdout.readline().strip())
        assert self.directory.name.startswith(RUN_DIR_PREFIX), self.directory

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()


@pytest.fixture
def holders() -> Iterator[list[Holder]]:
    made: list[Holder] = []
    yield made
    for holder in made:
        holder.kill()


def _next_run(tmp_path: Path) -> None:
    """A real run with a proxy: it sweeps before it makes directories of its own."""
    done = subprocess.run(
        [sys.executable, "-m", "ciwatch", "run", "--net", "redirect", "--out", str(tmp_path / "out"), "--", "true"],
        cwd=REPOSITORY,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr


def _killed_run_directory() -> Path:
    holder = Holder([])
    holder.kill()
    assert holder.directory.is_dir()
    return holder.directory


def test_the_next_run_sweeps_what_a_killed_run_left(tmp_path: Path, holders: list[Holder]) -> None:
    left = _killed_run_directory()
    # The same, after a new process took the dead run's pid (here: this test's own pid).
    reused = _killed_run_directory()
    pid, start_time = os.getpid(), process_start_time(os.getpid())
    assert start_time is not None
    rest = reused.name[len(RUN_DIR_PREFIX) :].split("-", 2)[2]
    pid_reused = reused.rename(reused.with_name(f"{RUN_DIR_PREFIX}{pid}-{start_time - 1}-{rest}"))
    _next_run(tmp_path)
    assert not left.exists(), "a killed run's directory survived the next run"
    assert not pid_reused.exists(), "a killed run's directory whose pid was taken since survived the next run"


def test_a_live_runs_directory_is_never_swept(tmp_path: Path, holders: list[Holder]) -> None:
    holders.append(Holder([]))
    # A run in another pid namespace sharing /dev/shm: its name's pid and start time mean
    # nothing here; only its lock says it lives.
    holders.append(Holder(["unshare", "--pid", "--fork", "--kill-child", "--mount-proc"]))
    name_pid = int(holders[1].directory.name[len(RUN_DIR_PREFIX) :].split("-")[0])
    assert name_pid != holders[1].process.pid, "the holder did not get a pid namespace of its own"
    _next_run(tmp_path)
    sweep_stale_run_dirs()
    for holder in holders:
        assert holder.directory.is_dir(), f"a live run's directory was swept: {holder.directory}"
        assert (holder.directory / "dhparam.pem").is_file()
    # Once they are gone, the same directories are swept: they were kept for being alive.
    for holder in holders:
        holder.kill()
    deadline = time.monotonic() + 60  # --kill-child's SIGKILL reaches the namespace's pid 1 a moment later
    while any(holder.directory.exists() for holder in holders) and time.monotonic() < deadline:
        sweep_stale_run_dirs()
        time.sleep(0.01)
    assert not any(holder.directory.exists() for holder in holders)
    holders.clear()


def test_another_users_directory_is_left_alone() -> None:
    left = _killed_run_directory()
    os.chown(left, 65534, 65534)
    try:
        sweep_stale_run_dirs()
        assert left.is_dir(), "root swept another user's directory"
    finally:
        os.chown(left, os.getuid(), os.getgid())
        sweep_stale_run_dirs()
    assert not left.exists()
