"""ciwatch is a faithful wrapper: signals reach the build, its death is reported as a shell
would, a killed ciwatch leaves nothing behind, and stdin and the terminal pass through."""

from __future__ import annotations

import contextlib
import os
import pty
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from ciwatch.record import read_record
from ciwatch.record.events import ProcessExit, ProcessStart
from tests.support.runner import ciwatch_command

POLL_LIMIT_S = 30.0
#: The egress proxy is beside the point of most tests here (and costs a second a run); those
#: about signals and kills while it runs use the default mode.
NET_OFF = ("--net", "off")


def wait_until(condition: Callable[[], bool], what: str, limit: float = POLL_LIMIT_S) -> None:
    deadline = time.monotonic() + limit
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for: {what}")
        time.sleep(0.02)


def alive(pid: int) -> bool:
    """Running (a zombie counts as gone: this machine's init may not reap orphans)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return False
    return stat.rsplit(b")", 1)[-1].split()[0] not in (b"Z", b"X")


def kill_if_ours(pid: int, marker: str) -> None:
    """SIGKILL ``pid`` if it still runs a command line holding ``marker`` (never a reused pid)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return
    if marker.encode() in cmdline:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    """Start ``ciwatch run --out tmp/out ARGS...`` in the background; it is killed (if still
    running) when the test ends."""
    started: list[subprocess.Popen[bytes]] = []

    def run(*args: str, **kwargs: object) -> subprocess.Popen[bytes]:
        command = [*ciwatch_command(), "run", "--out", str(tmp_path / "out"), *args]
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kwargs)  # type: ignore[call-overload]
        started.append(process)
        return process

    yield run
    for process in started:
        if process.poll() is None:
            process.kill()
        process.communicate(timeout=POLL_LIMIT_S)


def _record_pids(out: Path) -> tuple[int, set[int]]:
    """The tracer's pid and the pids of the build's processes still running, from the
    record so far."""
    record = read_record(out)
    starts = [e.event for e in record.events if isinstance(e.event, ProcessStart)]
    exits = {e.event.pid for e in record.events if isinstance(e.event, ProcessExit)}
    return starts[0].ppid, {s.pid for s in starts} - exits


# -- signals -------------------------------------------------------------------------------


def test_sigterm_to_ciwatch_reaches_the_build(start, tmp_path):
    marker = tmp_path / "running"
    ciwatch = start("--", "sh", "-c", f"touch {marker}; exec sleep 60")
    wait_until(marker.exists, "the build to start")
    ciwatch.send_signal(signal.SIGTERM)
    ciwatch.communicate(timeout=POLL_LIMIT_S)
    assert ciwatch.returncode == 128 + signal.SIGTERM
    record = read_record(tmp_path / "out")
    assert record.end is not None and record.end.clean
    assert (record.end.exit_code, record.end.build_signal) == (143, signal.SIGTERM)


def test_sigterm_handled_by_the_build(start, tmp_path):
    marker = tmp_path / "running"
    script = f"trap 'kill $!; echo got-term; exit 3' TERM; sleep 60 & touch {marker}; wait"
    ciwatch = start(*NET_OFF, "--", "sh", "-c", script)
    wait_until(marker.exists, "the build to start")
    ciwatch.send_signal(signal.SIGTERM)
    out, _ = ciwatch.communicate(timeout=POLL_LIMIT_S)
    assert ciwatch.returncode == 3
    assert out == b"got-term\n"
    record = read_record(tmp_path / "out")
    assert record.end is not None and record.end.clean and record.end.build_exit_code == 3


def test_sigterm_before_the_build_started_is_not_lost(start, tmp_path):
    # A CI runner may cancel the step while ciwatch is still starting (the egress proxy takes
    # a moment): the build must not then run to its end as if nothing had happened.
    finished = tmp_path / "finished"
    ciwatch = start("--", "sh", "-c", f"sleep 20; touch {finished}")
    children = Path(f"/proc/{ciwatch.pid}/task/{ciwatch.pid}/children")

    def tracer_forked() -> bool:
        # A child running ciwatch: python-ptrace's find_library() also runs ldconfig while
        # ciwatch imports, before it has set up its signal handling.
        for pid in children.read_text().split():
            try:
                if b"ciwatch" in Path(f"/proc/{pid}/cmdline").read_bytes():
                    return True
            except OSError:
                continue
        return False

    wait_until(lambda: ciwatch.poll() is not None or tracer_forked(), "the tracer process")
    ciwatch.send_signal(signal.SIGTERM)
    ciwatch.communicate(timeout=POLL_LIMIT_S)
    assert ciwatch.returncode == 128 + signal.SIGTERM
    assert not finished.exists()
    record = read_record(tmp_path / "out")
    assert record.end is not None and record.end.clean and record.end.build_signal == signal.SIGTERM


def test_build_that_kills_itself_with_sigkill(ciwatch):
    run = ciwatch(*NET_OFF, "--", "sh", "-c", "echo before; kill -KILL $$; echo after")
    assert run.code == 137
    assert run.stdout == "before\n"
    record = run.record
    assert record.end is not None and record.end.clean
    assert (record.end.exit_code, record.end.build_signal, record.end.build_exit_code) == (137, 9, None)
    root = next(e for e in run.events(ProcessStart))
    assert {e.pid: e for e in run.events(ProcessExit)}[root.pid].signal == signal.SIGKILL


def test_killed_ciwatch_leaves_nothing_behind(start, tmp_path):
    marker = tmp_path / "running"
    out = tmp_path / "out"
    script = f"sleep 60 & sleep 61 & touch {marker}; wait"
    ciwatch = start("--", "sh", "-c", script)
    try:
        wait_until(marker.exists, "the build to start")
        wait_until(lambda: len(_record_pids(out)[1]) == 3, "the shell and its two sleeps in the record")
        tracer, build = _record_pids(out)
        assert tracer != ciwatch.pid
        assert all(alive(pid) for pid in [tracer, *build])
        ciwatch.kill()  # SIGKILL to the front process, the one the CI runner started
        ciwatch.communicate(timeout=POLL_LIMIT_S)
        wait_until(lambda: not any(alive(pid) for pid in [tracer, *build]), "the tracer and the build to be gone")
        record = read_record(out)
        assert record.end is None  # killed: no end line, but readable up to its last line
        assert build <= {e.event.pid for e in record.events if isinstance(e.event, ProcessStart)}
    except BaseException:
        with contextlib.suppress(Exception):
            tracer, build = _record_pids(out)
            for pid in build:
                kill_if_ours(pid, "sleep")
            kill_if_ours(tracer, str(out))
        raise


# -- input and terminal --------------------------------------------------------------------


def test_binary_stdin_passes_through(ciwatch):
    data = bytes(range(256)) * 400 + b"\x00\xff\r\n\x1a"
    run = ciwatch(*NET_OFF, "--", "cat", input=data)
    assert run.code == 0, run.stderr
    assert run.process.stdout == data


def _run_on_a_terminal(args: list[str], tmp_path: Path, typed: bytes = b"", after: bytes = b"") -> tuple[int, bytes]:
    """Run ``ciwatch run ARGS`` on a new pseudo-terminal; once ``after`` has been printed,
    type ``typed``. Returns the exit code and everything printed."""
    command = [*ciwatch_command(), "run", "--out", str(tmp_path / "out"), *args]
    pid, master = pty.fork()
    if pid == 0:
        try:
            os.execv(sys.executable, command)
        finally:
            os._exit(127)
    output = b""
    deadline = time.monotonic() + POLL_LIMIT_S
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.1)
            if not ready:
                continue
            try:
                chunk = os.read(master, 4096)
            except OSError:  # EIO: every process holding the terminal has gone
                break
            if not chunk:
                break
            output += chunk
            if typed and after in output:
                os.write(master, typed)
                typed = b""
        else:
            raise AssertionError(f"ciwatch on a terminal did not finish; printed so far: {output!r}")
        _, status = os.waitpid(pid, 0)
        return os.waitstatus_to_exitcode(status), output
    finally:
        with contextlib.suppress(ProcessLookupError, ChildProcessError):
            if os.waitpid(pid, os.WNOHANG)[0] == 0:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
        os.close(master)


def test_build_on_a_terminal_sees_a_terminal(tmp_path):
    script = "test -t 0 && test -t 1 && test -t 2 && echo tty"
    code, output = _run_on_a_terminal([*NET_OFF, "--", "sh", "-c", script], tmp_path)
    assert code == 0, output
    assert output.splitlines()[0] == b"tty", output  # ciwatch's own notes may follow, on stderr


_COUNT_SIGINT = """
import signal, sys, time
received = []
signal.signal(signal.SIGINT, lambda *_: received.append(1))
print("ready", flush=True)
while not received:
    time.sleep(0.01)
time.sleep(0.3)  # a duplicate forwarded by ciwatch would arrive meanwhile
print("interrupts", len(received), flush=True)
"""


def test_ctrl_c_on_a_terminal_reaches_the_build_once(tmp_path):
    command = [*NET_OFF, "--", sys.executable, "-c", _COUNT_SIGINT]
    code, output = _run_on_a_terminal(command, tmp_path, b"\x03", b"ready")
    assert code == 0, output
    assert b"interrupts 1" in output, output
