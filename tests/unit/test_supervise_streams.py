"""The tracer process hands the job's stdout and stderr back before the front returns: a CI
runner (or a shell's ``$(...)``) reads a step's output to its end, and the tracer process's
own exit can take a while (the kernel tears its fanotify groups down; leftovers keep it).
Checked where it matters: what the tracer process's streams are as it exits."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

#: The front and tracer process of ``supervise.run_split``, with a tracer's work that does
#: nothing; the tracer process notes, as it exits, whether its stdout and stderr are still
#: the job's (the pipe this test reads).
SCRIPT = """
import os, sys
from ciwatch import supervise

report = sys.argv[1]
job = {fd: (os.fstat(fd).st_dev, os.fstat(fd).st_ino) for fd in (1, 2)}
real_exit = os._exit

def noting_exit(code):
    held = [fd for fd in (1, 2) if (os.fstat(fd).st_dev, os.fstat(fd).st_ino) == job[fd]]
    with open(report + ".part", "w") as note:
        note.write(f"{os.getpid()} {held}")
    os.rename(report + ".part", report)
    real_exit(code)

os._exit = noting_exit

def work(report_root):
    report_root(os.getpid())
    print("the build's output", flush=True)
    return 3, None

print(supervise.run_split(work), flush=True)
"""


def test_the_tracer_process_exits_without_the_jobs_streams(tmp_path: Path) -> None:
    report = tmp_path / "streams"
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(report)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["the build's output", "3"]
    deadline = time.monotonic() + 60  # a bound for a broken run only: the note comes at once
    while not report.exists():
        assert time.monotonic() < deadline, "the tracer process never exited"
        time.sleep(0.01)
    pid, held = report.read_text().split(" ", 1)
    assert int(pid) != os.getpid()
    assert held == "[]"
