"""The build can't signal, stop or trace ciwatch's own processes; a signal reaches the build
once; a stopped tracer is resumed; a build that uses ptrace itself is told why it fails.

Issue: a build that stopped the tracer (SIGSTOP to its parent) hung ciwatch forever; a
build's own ``kill 0`` killed the tracer (and with it the build); a signal sent to the whole
process group reached the build twice; strace under ciwatch failed without a word of why.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from ciwatch.record import read_record
from ciwatch.record.closing import End
from ciwatch.record.events import Anomaly
from ciwatch.record.vocabulary import AnomalyKind
from tests.conftest import require
from tests.support.runner import CiwatchRun, ciwatch_command

NET_OFF = ("--net", "off")


def _refusals(run: CiwatchRun) -> list[str]:
    return [e.detail for e in run.events(Anomaly) if e.anomaly is AnomalyKind.TARGETS_CIWATCH]


def _ended_cleanly(run: CiwatchRun) -> End:
    end = run.record.end
    assert end is not None and end.clean, run.stderr
    return end


# Each a way for a build process to reach its tracer (the root's parent) or the front.
_FRONT = "int(open(f'/proc/{os.getppid()}/stat').read().rsplit(')', 1)[1].split()[1])"
_LIBC = "ctypes.CDLL(None, use_errno=True)"
_FAIL_ON_ERROR = " == 0 or (_ for _ in ()).throw(PermissionError(ctypes.get_errno(), 'refused'))"
_ATTEMPTS = {
    "sigstop-tracer": "os.kill(os.getppid(), signal.SIGSTOP)",
    "sigkill-front": f"os.kill({_FRONT}, signal.SIGKILL)",
    "everyone": "os.kill(-1, signal.SIGSTOP)",
    "front-group": "os.killpg(os.getpgid(os.getppid()), signal.SIGTERM)",
    # A thread of the tracer (the proxy's, say) by its tid, with the raw syscall.
    "tgkill-thread": "tid = max(int(t) for t in os.listdir(f'/proc/{os.getppid()}/task')); "
    f"{_LIBC}.syscall(234, os.getppid(), tid, signal.SIGSTOP){_FAIL_ON_ERROR}",
    "pidfd": "signal.pidfd_send_signal(os.pidfd_open(os.getppid()), signal.SIGSTOP)",
    "proc-dirfd": "signal.pidfd_send_signal(os.open(f'/proc/{os.getppid()}', os.O_RDONLY), signal.SIGSTOP)",
    "ptrace-attach": f"{_LIBC}.ptrace(16, os.getppid(), 0, 0){_FAIL_ON_ERROR}",
}


@pytest.mark.parametrize("attempt", sorted(_ATTEMPTS))
def test_the_build_cannot_signal_or_trace_ciwatch(ciwatch: Callable[..., CiwatchRun], attempt: str) -> None:
    # The root is a python process whose parent is the tracer; each attempt must fail with
    # EPERM, and the run go on to its end with the build's own exit code.
    script = (
        "import ctypes, os, signal\n"
        "try:\n"
        f"    {_ATTEMPTS[attempt]}\n"
        "except PermissionError:\n"
        "    print('refused')\n"
        "else:\n"
        "    print('reached')\n"
    )
    run = ciwatch(*NET_OFF, "--", sys.executable, "-c", script, timeout=60)
    assert run.code == 0, run.stderr
    assert run.stdout.strip() == "refused", run.stdout + run.stderr
    assert _refusals(run), "the refusal is not in the record"
    _ended_cleanly(run)


def test_the_builds_own_kill_0_reaches_only_the_build(ciwatch: Callable[..., CiwatchRun]) -> None:
    # `trap ... ; kill 0`: a common shell idiom to end a script's own jobs.
    script = "trap 'echo got TERM' TERM; kill 0; sleep 0.2; echo survived"
    run = ciwatch(*NET_OFF, "--", "bash", "-c", script, timeout=60)
    assert run.code == 0, run.stderr
    assert run.stdout.split() == ["got", "TERM", "survived"], run.stdout + run.stderr
    assert _refusals(run) == []  # the build's own group is the build's: nothing to refuse
    _ended_cleanly(run)


_COUNT_TERM = """
import signal, sys, time
received = []
signal.signal(signal.SIGTERM, lambda *_: received.append(1))
print("ready", flush=True)
while not received:
    time.sleep(0.01)
time.sleep(0.5)  # a duplicate would arrive meanwhile
print("terms", len(received), flush=True)
"""


def _start(tmp_path: Path, *command: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [*ciwatch_command(), "run", "--out", str(tmp_path / "out"), *NET_OFF, "--", *command],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,  # a process group of its own, as a CI runner gives a step
    )


def test_a_signal_to_ciwatchs_process_group_reaches_the_build_once(tmp_path: Path) -> None:
    process = _start(tmp_path, sys.executable, "-c", _COUNT_TERM)
    try:
        assert process.stdout is not None
        assert process.stdout.readline() == b"ready\n"
        os.killpg(process.pid, signal.SIGTERM)  # as a runner cancelling the step would
        out, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    assert b"terms 1" in out, out + err
    assert process.returncode == 0, err


def test_a_stopped_tracer_is_resumed(tmp_path: Path) -> None:
    process = _start(tmp_path, "sh", "-c", "echo ready; sleep 1; echo done")
    try:
        assert process.stdout is not None
        assert process.stdout.readline() == b"ready\n"
        tracer = _child_of(process.pid)
        os.kill(tracer, signal.SIGSTOP)  # the tracer can't be reached from the build: stop it from outside
        out, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    assert process.returncode == 0, err
    assert out == b"done\n"
    assert b"tracer process was stopped" in err
    assert read_record(tmp_path / "out").end is not None


def _child_of(pid: int) -> int:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        if children:
            return int(children[0])
        time.sleep(0.01)
    raise AssertionError("ciwatch's tracer process never started")


def test_strace_under_ciwatch_is_told_why_it_fails(ciwatch: Callable[..., CiwatchRun]) -> None:
    strace = require("strace")
    run = ciwatch(*NET_OFF, "--", strace, "-o", "/dev/null", "true", timeout=60)
    assert run.code != 0  # a process has one tracer: strace's PTRACE_TRACEME fails
    assert run.stderr.count("tried to trace a process with ptrace") == 1, run.stderr
    assert "strace (pid" in run.stderr
    assert "ASAN_OPTIONS=detect_leaks=0" in run.stderr


def test_a_script_whose_interpreter_is_missing_says_so(ciwatch: Callable[..., CiwatchRun], tmp_path: Path) -> None:
    script = tmp_path / "build.sh"
    script.write_text("#!/nonexistent/bin/interpreter\necho hi\n")
    script.chmod(0o755)
    run = ciwatch(*NET_OFF, "--", str(script), timeout=60)
    assert run.code == 127
    assert "bad interpreter: /nonexistent/bin/interpreter" in run.stderr, run.stderr
    assert "command not found" not in run.stderr


def test_ciwatch_under_strace_says_so_and_its_end_line_has_its_exit_code(tmp_path: Path) -> None:
    # strace -f attaches to the build's root before ciwatch can: ciwatch can't trace it (69),
    # and the record's end line says 69 too (it said 70, an internal error).
    strace = require("strace")
    out = tmp_path / "out"
    done = subprocess.run(
        [strace, "-f", "-o", "/dev/null", *ciwatch_command(), "run", *NET_OFF, "--out", str(out), "--", "true"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 69, done.stderr
    assert "already traced by strace" in done.stderr
    end = read_record(out).end
    assert end is not None and end.exit_code == 69 and not end.clean
