"""The compiled stop loop (ciwatch/trace/_stoploop.c): write stops read and resumed in C, then
decoded by the table's decoders over what was read. Its records must be the Python loop's,
event for event, even when the tracee changes everything a late read would see.

The other trace suites run on both loops: CIWATCH_STOP_LOOP=python in the environment puts
them on the Python loop (the ciwatch subprocesses inherit it)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from ciwatch.record.events import FileWrite
from ciwatch.trace import batch
from ciwatch.trace.table import BY_NUMBER, TABLE, Action
from tests.support.cprograms import program
from tests.support.runner import ciwatch_command, run_ciwatch

PYTHON_LOOP = {"CIWATCH_STOP_LOOP": "python"}
COMPILED_LOOP = {"CIWATCH_STOP_LOOP": "compiled"}  # whatever the suite's environment says


def test_the_compiled_loop_is_built() -> None:
    # CI installs ciwatch with pip, which builds it: without it the comparisons below compare
    # the Python loop with itself.
    assert batch._stoploop is not None, batch.compiled_loop_state()


def _writes(tmp_path: Path, env: dict[str, str], name: str) -> list[tuple[Any, ...]]:
    """write_mix's writes, run in the same directory each time so that paths compare."""
    work = tmp_path / "work"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    run = run_ciwatch(
        ["--net", "off", "--file-events", "ptrace", "--", str(program("write_mix")), str(work)],
        tmp_path / name,
        cwd=work,
        env=env,
    )
    assert run.code == 0, run.stderr
    found = [
        (w.op.value, w.path, w.target, w.flags, w.as_written, w.target_as_written)
        for w in run.events(FileWrite)
        if w.path.startswith(str(work))
    ]
    return sorted(found, key=repr)


@pytest.mark.slow
def test_both_loops_record_the_same_writes(tmp_path: Path) -> None:
    compiled = _writes(tmp_path, COMPILED_LOOP, "compiled")
    python = _writes(tmp_path, PYTHON_LOOP, "python")
    assert compiled == python
    work = tmp_path / "work"
    # What a late read would have got wrong: the through-symlink open names its target, the
    # relative creat the cwd it was made in, the renameat the dirfd's directory before the
    # fd number was reused.
    assert any(c[0] == "open" and c[1] == f"{work}/t1/h7" and c[4] == f"{work}/t1/s7" for c in compiled)
    assert ("creat", f"{work}/p/b/rel", None, 0o644, "rel", None) in compiled
    assert ("rename", f"{work}/q/a/rel", f"{work}/q/b/moved", None, "rel", "moved") in compiled
    # A bare name through a symlink (from the cwd, from a dirfd) names the symlink's target.
    assert sum(1 for c in compiled if c[0] == "open" and c[1] == f"{work}/p/b/rel" and c[4] == "lnk") == 2 * 40
    assert sum(1 for c in compiled if c[0] == "unlink") == 3 * 40 * 2 + 2 * 40 * 4


@pytest.mark.slow
def test_holding_a_batch_changes_nothing_in_the_record(tmp_path: Path) -> None:
    """The loop holds a batch while the build is busy (batch.HOLD_NS); with no hold every stop
    goes to Python at once. Same writes, in the same order."""
    held = _writes(tmp_path, COMPILED_LOOP, "held")
    unheld = _writes(tmp_path, {**COMPILED_LOOP, "CIWATCH_STOP_HOLD_US": "0"}, "unheld")
    assert held == unheld


_WRITE_THEN_WAIT = """
import os, sys, time
for index in range(50):
    with open(f"written-{index}", "w") as handle:
        handle.write("x")
print("written", flush=True)
time.sleep(float(open("sleep").read()) if os.path.exists("sleep") else 0)
"""


def test_a_held_batch_is_on_disk_once_the_build_goes_quiet(tmp_path: Path) -> None:
    """What the loop holds while the build is busy is recorded as soon as the build is quiet
    (the hold is 2 ms): a build that writes and then waits has its writes in the record file
    while it waits, not only when it next stops or ends."""
    out, work = tmp_path / "out", tmp_path / "work"
    work.mkdir()
    (work / "sleep").write_text("30")
    # No package manager on PATH: registry discovery starts no process, whose end (reaped by
    # the tracer's wait) would end the hold too.
    env = {**os.environ, "PATH": str(tmp_path / "no-tools")}
    command = [*ciwatch_command(), "run", "--out", str(out), "--net", "off", "--file-events", "ptrace", "--"]
    command += [sys.executable, "-c", _WRITE_THEN_WAIT]
    build = subprocess.Popen(command, cwd=work, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert build.stdout is not None
        assert build.stdout.readline().strip() == "written"
        seen: set[str] = set()
        for _ in range(100):  # up to 10 s, while the build sleeps for 30
            lines = (out / "record.jsonl").read_text().splitlines()
            seen = {json.loads(line).get("path", "") for line in lines if '"file-write"' in line}
            if all(f"{work}/written-{index}" in seen for index in range(50)):
                break
            time.sleep(0.1)
        assert all(f"{work}/written-{index}" in seen for index in range(50)), sorted(seen)[-5:]
        assert build.poll() is None  # still asleep: recorded while quiet, not at its end
    finally:
        build.terminate()  # ciwatch ends the build and its record
        try:
            build.wait(timeout=60)
        except subprocess.TimeoutExpired:
            build.kill()
            build.wait()


def test_doctor_names_the_loop() -> None:
    env = {**os.environ, **PYTHON_LOOP}
    out = subprocess.run([sys.executable, "-m", "ciwatch", "doctor"], capture_output=True, text=True, env=env).stdout
    assert "stop loop: python (CIWATCH_STOP_LOOP=python)" in out


# -- the reads the loop makes against what each decoder asks ------------------------------


class _AskedFor:
    """A MemoryReader that answers anything and notes what a decoder asked for."""

    def __init__(self) -> None:
        self.strings: set[int] = set()
        self.fds: set[int] = set()
        self.cwd_asked = False
        self.canonical_asked: list[bool] = []

    def read_cstring(self, address: int) -> bytes:
        self.strings.add(address)
        return b"relative"

    def read_bytes(self, address: int, size: int) -> bytes:
        raise AssertionError("a fast row's decoder reads memory the loop doesn't")

    def read_u64(self, address: int) -> int | None:
        raise AssertionError("a fast row's decoder reads memory the loop doesn't")

    def write_bytes(self, address: int, data: bytes) -> bool:
        raise AssertionError("a file decoder writes")

    def cwd(self) -> str:
        self.cwd_asked = True
        return "/cwd"

    def fd_path(self, fd: int) -> str:
        self.fds.add(fd)
        return "/dir"

    def canonical(self, path: str, follow: bool) -> str:
        self.canonical_asked.append(follow)
        return path


def _follows(mode: int, flags: int) -> bool:
    # _stoploop.c's follows()
    if mode == batch._ALWAYS:
        return True
    if mode == batch._OPEN_FLAGS:
        return not flags & 0o400000 and (flags & 0o300) != 0o300
    return mode == batch._AT_FLAG and bool(flags & 0x400)


@pytest.mark.parametrize("flags", [0, 0o1, 0o400000, 0o300, 0o301, 0x400, 0xFFFFFFFF])
@pytest.mark.parametrize("name", sorted(batch.READS))
def test_reads_cover_what_the_decoder_asks(name: str, flags: int) -> None:
    row = next(row for row in TABLE if row.name == name)
    reads = batch.READS[name]
    # Every argument is a distinct fd number and address, and each candidate flags argument
    # carries ``flags``.
    args = tuple(100 + index for index in range(6))
    flag_args = {read[4] for read in reads if read[3] >= batch._OPEN_FLAGS}
    args = tuple(flags if index in flag_args else value for index, value in enumerate(args))
    asked = _AskedFor()
    row.decode(1, args, asked)
    read_addresses = {args[read[2]] for read in reads if read[0] in (batch._PATH, batch._STRING)}
    read_fds = {args[read[1]] for read in reads if read[0] == batch._FD or (read[0] == batch._PATH and read[1] >= 0)}
    assert asked.strings <= read_addresses
    assert asked.fds <= read_fds
    assert asked.cwd_asked == any(read[0] == batch._PATH and read[1] == batch._CWD for read in reads)
    paths = [read for read in reads if read[0] == batch._PATH]
    assert asked.canonical_asked == [_follows(read[3], args[read[4]] & 0xFFFFFFFF) for read in paths]


def test_every_file_row_is_fast_or_deliberately_slow() -> None:
    # openat2's flags are in memory (struct open_how): it stops into Python.
    file_rows = {row.name for row in TABLE if row.action is Action.FILE}
    assert file_rows - set(batch.READS) == {"openat2"}
    assert set(batch.READS) <= file_rows
    assert all(BY_NUMBER[row.number].action is Action.FILE for row in TABLE if row.name in batch.READS)
