"""``--out`` can't be turned against ciwatch: no writing through another user's links, no
directory others can change under it, one run at a time (issue: root overwrote the file a
pre-created ``record.jsonl`` link pointed at; two runs with one ``--out`` destroyed both)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

USAGE_ERROR = 2


def _run(out: Path, *command: str, **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ciwatch", "run", "--net", "off", "--out", str(out), "--", *command],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        **kwargs,  # type: ignore[arg-type]
    )


def test_a_record_link_is_never_followed(tmp_path: Path) -> None:
    precious = tmp_path / "precious"
    precious.write_text("root's file\n")
    out = tmp_path / "out"
    out.mkdir(mode=0o755)
    (out / "record.jsonl").symlink_to(precious)
    done = _run(out, "true")
    assert done.returncode == USAGE_ERROR, done.stderr
    assert "won't write through it" in done.stderr
    assert precious.read_text() == "root's file\n"


def test_a_verdict_link_is_replaced_not_followed(tmp_path: Path) -> None:
    precious = tmp_path / "precious"
    precious.write_text("root's file\n")
    out = tmp_path / "out"
    out.mkdir(mode=0o755)
    (out / "verdict.json").symlink_to(precious)
    done = _run(out, "true")
    assert done.returncode == 0, done.stderr
    assert precious.read_text() == "root's file\n"
    assert not (out / "verdict.json").is_symlink()


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give a directory to another user")
def test_an_out_dir_of_another_user_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "theirs"
    out.mkdir(mode=0o755)
    os.chown(out, 65534, 65534)
    done = _run(out, "true")
    assert done.returncode == USAGE_ERROR, done.stderr
    assert "belongs to another user" in done.stderr
    assert not (out / "record.jsonl").exists()


def test_an_out_dir_writable_by_others_is_refused_unless_sticky(tmp_path: Path) -> None:
    out = tmp_path / "open"
    out.mkdir()
    out.chmod(0o777)
    done = _run(out, "true")
    assert done.returncode == USAGE_ERROR, done.stderr
    assert "writable by other users" in done.stderr
    out.chmod(0o1777)  # sticky and ours: others can't replace our files
    done = _run(out, "true")
    assert done.returncode == 0, done.stderr


def test_two_runs_with_one_out_dir(tmp_path: Path) -> None:
    out = tmp_path / "out"
    first = subprocess.Popen(
        [sys.executable, "-m", "ciwatch", "run", "--net", "off", "--out", str(out), "--", "sleep", "3"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 20
        while not (out / "record.jsonl").exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        second = _run(out, "true")
        assert second.returncode == USAGE_ERROR, second.stderr
        assert "another ciwatch run is writing to" in second.stderr
    finally:
        first.wait(timeout=60)
    assert first.returncode == 0, first.stderr
    lines = (out / "record.jsonl").read_text().splitlines()
    assert '"command":["sleep","3"]' in lines[0]
    assert '"kind":"end"' in lines[-1]
    assert _run(out, "true").returncode == 0, "the lock goes with the run"
