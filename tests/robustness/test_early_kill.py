"""A ciwatch killed in its first moments still leaves a record that says what it was running
(issue: killed within the first second and a half, the record was empty)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest


@pytest.mark.parametrize("net", ["off", "redirect"])
def test_killed_while_starting_the_record_has_its_header(tmp_path: Path, net: str) -> None:
    out = tmp_path / "out"
    record = out / "record.jsonl"
    process = subprocess.Popen(
        [sys.executable, "-m", "ciwatch", "run", "--net", net, "--out", str(out), "--", "sleep", "30"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 20
        while not record.exists() and time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.005)
        assert record.exists(), "ciwatch never created its record"
        time.sleep(0.05)  # the header follows the file's creation at once; the proxy takes ~1 s
    finally:
        # The whole session: the front, the tracer and the build, before the proxy is up.
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=20)
    lines = record.read_text().splitlines()
    assert lines, "the record is empty"
    header = json.loads(lines[0])
    assert header["kind"] == "header"
    assert header["command"] == ["sleep", "30"]
