"""Fixed costs of a run: what ciwatch does at every start, whatever the build."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.conftest import require


def test_importing_the_tracer_runs_no_program() -> None:
    """python-ptrace finds libc with ctypes.util.find_library, which runs ``ldconfig -p``;
    ciwatch gives it libc by soname first."""
    strace = require("strace")
    done = subprocess.run(
        [
            strace,
            "-f",
            "-qq",
            "-e",
            "trace=execve",
            "-e",
            "signal=none",
            sys.executable,
            "-c",
            "import ciwatch.trace.tracer, ptrace.binding.func as f; print(f.ptrace.__name__)",
        ],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "LC_ALL": "C"},
    )
    execs = [line for line in done.stderr.splitlines() if "execve(" in line]
    assert len(execs) == 1 and sys.executable in execs[0], execs  # python itself, nothing else
    assert done.stdout.strip() == "ptrace"


def test_ptrace_still_has_errno_from_libc() -> None:
    """The libc given to python-ptrace keeps errno (its errors name the cause)."""
    code = (
        "import ciwatch.trace, ptrace.binding.func as f\n"
        "from ptrace import PtraceError\n"
        "try:\n    f.ptrace(7, 2**22 + 12345)\n"  # PTRACE_CONT on a pid that doesn't exist
        "except PtraceError as e:\n    print(e.errno)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "3"  # ESRCH
