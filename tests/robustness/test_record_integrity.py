"""The record can't be forged or lost to a full disk (issue 9, items 4 and 6): whatever the
build does to ``--out`` is a high finding; a record changed afterwards is told apart by
``ciwatch check``; a full disk stops the record, never the build."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ciwatch.record import read_record
from ciwatch.record.events import FileWrite
from ciwatch.record.integrity import verify_record
from ciwatch.record.vocabulary import FileOp
from ciwatch.trace.decode import files as f
from ciwatch.trace.fanotify import unavailable_reason as fanotify_unavailable
from tests.unit.trace.fake import FakeMemory, args

POLICY_FAILED = 3


def _run(out: Path, *command: str, mode: str = "audit", cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ciwatch", "run", "--mode", mode, "--net", "off", "--out", str(out), "--", *command],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=cwd,
    )


def _check(out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ciwatch", "check", str(out), *extra],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _verdict(out: Path) -> dict[str, object]:
    return json.loads((out / "verdict.json").read_text())  # type: ignore[no-any-return]


def _tamper_findings(out: Path) -> list[dict[str, str]]:
    findings = _verdict(out)["findings"]
    assert isinstance(findings, list)
    return [finding for finding in findings if finding["rule"] == "record-tamper"]


# -- the build tampering with its own record, live -----------------------------------------------

TAMPERING = {
    "append": ("echo '{}' >> out/record.jsonl", "appended to"),
    "truncate by open": (": > out/record.jsonl", "truncated"),
    "truncate(2)": (f"{sys.executable} -c 'import os; os.truncate(\"out/record.jsonl\", 10)'", "truncated"),
    "unlink": ("rm out/record.jsonl", "removed"),
    "rename": ("mv out/record.jsonl out/elsewhere.jsonl", "renamed"),
}


#: The ways whose verb the open's flags choose (O_APPEND, O_TRUNC).
_BY_OPEN_FLAGS = ("append", "truncate by open")


@pytest.mark.parametrize("how", TAMPERING)
def test_the_build_touching_its_record_is_a_high_finding(tmp_path: Path, how: str) -> None:
    script, verb = TAMPERING[how]
    done = _run(tmp_path / "out", "sh", "-c", script, cwd=tmp_path)
    assert done.returncode == 0, done.stderr  # audit mode: the build's exit code
    findings = _tamper_findings(tmp_path / "out")
    assert len(findings) == 1, findings
    assert findings[0]["severity"] == "high"
    if fanotify_unavailable() is None and how in _BY_OPEN_FLAGS:  # the run's --file-events auto took fanotify
        verb = "opened for writing"  # fanotify reports the write, not the open's flags that tell these apart
    assert f"{verb} {tmp_path}/out/record.jsonl" in findings[0]["message"]
    assert "record-tamper" in done.stderr  # the verdict is shown: a high finding fails it


@pytest.mark.parametrize("how", ["unlink", "rename"])
def test_a_record_moved_away_is_put_back_whole(tmp_path: Path, how: str) -> None:
    """ciwatch's descriptor still holds the record: it is put back at its path, the build's
    doing in it, and its hashes check."""
    done = _run(tmp_path / "out", "sh", "-c", TAMPERING[how][0], cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert verify_record(tmp_path / "out").lines() == []
    record = read_record(tmp_path / "out")
    assert record.end is not None and record.end.record_complete
    assert any(isinstance(e.event, FileWrite) and e.event.op is not FileOp.OPEN for e in record.events)


def test_writing_elsewhere_in_out_is_a_finding_and_elsewhere_is_not(tmp_path: Path) -> None:
    done = _run(tmp_path / "out", "sh", "-c", "echo x > out/verdict.json; echo y > other.txt", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    (finding,) = _tamper_findings(tmp_path / "out")
    assert f"{tmp_path}/out/verdict.json" in finding["message"]


# -- a record changed after the run ----------------------------------------------------------------


def test_check_tells_a_record_changed_after_the_run(tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert _run(out, "true").returncode == 0
    clean = _check(out)
    assert clean.returncode == 0, clean.stderr
    assert "changed" not in clean.stderr
    record = out / "record.jsonl"
    original = record.read_bytes()
    lines = original.splitlines(keepends=True)

    # An event edited (still valid JSON, still a valid event): the verdict alone would pass.
    at = next(number for number, line in enumerate(lines) if b'"pid":' in line and number > 0)
    edited = lines[at].replace(b'"pid":', b'"pid":1', 1)
    record.write_bytes(b"".join([*lines[:at], edited, *lines[at + 1 :]]))
    changed = _check(out)
    assert changed.returncode == POLICY_FAILED, changed.stderr
    assert "the record was changed after ciwatch wrote it" in changed.stderr
    report = subprocess.run(
        [sys.executable, "-m", "ciwatch", "report", str(out)], capture_output=True, text=True, check=False
    )
    assert report.returncode == 0 and "the record was changed after ciwatch wrote it" in report.stderr

    # A line added after the end line (no second segment opened it).
    record.write_bytes(original + lines[1])
    added = _check(out)
    assert added.returncode == POLICY_FAILED, added.stderr
    assert "follows the record's last closing line" in added.stderr

    record.write_bytes(original)
    assert _check(out).returncode == 0


def test_the_second_segment_has_its_own_hash(tmp_path: Path) -> None:
    """A process left running appends to the record after the end line: the after-build-end
    line's hash covers it, and the finding is in the replaced verdict."""
    out = tmp_path / "out"
    script = "(sleep 0.5; echo '{}' >> out/record.jsonl) & exit 0"
    done = _run(out, "sh", "-c", script, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    for _ in range(600):  # the tracer stays behind until the leftover exits
        if read_record_tail(out) == "after-build-end":
            break
        time.sleep(0.1)
    assert _tamper_findings(out), _verdict(out)
    integrity = verify_record(out)
    assert integrity.changed and "after-build-end" in integrity.changed[0]


def read_record_tail(out: Path) -> str:
    last = (out / "record.jsonl").read_bytes().rstrip(b"\n").rsplit(b"\n", 1)[-1]
    try:
        return str(json.loads(last).get("kind"))
    except ValueError:
        return ""


# -- a full disk ------------------------------------------------------------------------------

MANY_EVENTS = """
import os, sys, tempfile
directory = tempfile.mkdtemp()
for number in range(5000):
    open(os.path.join(directory, f"f{number}"), "w").close()
print("the build's own output", flush=True)
sys.exit(int(sys.argv[1]))
"""


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.skip("needs root to mount a tmpfs")
    disk = tmp_path / "disk"
    disk.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(disk)], check=True)
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


@pytest.mark.parametrize("mode", ["audit", "warn"])
def test_a_full_disk_does_not_kill_the_build(tmp_path: Path, small_disk: Path, mode: str) -> None:
    out = small_disk / "out"
    done = _run(out, sys.executable, "-c", MANY_EVENTS, "7", mode=mode)
    assert done.returncode == 7, done.stderr  # the build's own exit code
    assert done.stdout == "the build's own output\n"
    assert "could not be written" in done.stderr and "No space left on device" in done.stderr
    assert "the record is incomplete" in done.stderr
    record = read_record(out)  # whole lines only, and an end line that says what was lost
    assert record.end is not None and not record.end.record_complete and record.end.lines_lost > 1000
    verdict = _verdict(out)
    assert verdict["record_complete"] is False and verdict["verdict"] != "fail"
    checked = _check(out)
    assert checked.returncode == 0, checked.stderr
    assert "the record is incomplete" in checked.stderr
    assert "changed" not in checked.stderr  # what was written is intact


def test_a_full_disk_fails_block_mode_closed(tmp_path: Path, small_disk: Path) -> None:
    out = small_disk / "out"
    done = _run(out, sys.executable, "-c", MANY_EVENTS, "0", mode="block")
    assert done.returncode == POLICY_FAILED, done.stderr
    assert done.stdout == "the build's own output\n"
    assert "the record could not be written: fail closed" in done.stderr
    verdict = _verdict(out)
    assert verdict["verdict"] == "fail" and verdict["record_complete"] is False
    assert _check(out, "--mode", "block").returncode == POLICY_FAILED


def test_a_disk_full_from_the_start_runs_the_build_and_says_so(tmp_path: Path, small_disk: Path) -> None:
    out = small_disk / "out"
    out.mkdir()
    filler = small_disk / "filler"
    subprocess.run(["dd", "if=/dev/zero", f"of={filler}", "bs=4k", "count=64"], capture_output=True, check=False)
    done = _run(out, "sh", "-c", "echo ran", mode="block")
    assert done.returncode == POLICY_FAILED, done.stderr
    assert done.stdout == "ran\n"
    assert "fail closed" in done.stderr
    assert "verdict.json could not be written either" in done.stderr
    assert not (out / "verdict.json").exists() and not list(out.glob(".verdict.json.*"))


# -- pieces ------------------------------------------------------------------------------------


def test_truncate_by_path_is_decoded() -> None:
    mem = FakeMemory(cwd="/w")
    assert f.decode_truncate(7, args(mem.put_str("out/record.jsonl"), 0), mem) == FileWrite(
        pid=7, op=FileOp.TRUNCATE, path="/w/out/record.jsonl", as_written="out/record.jsonl"
    )
