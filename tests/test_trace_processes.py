"""The whole process tree is followed: pipes, subshells, daemons, threads, vfork, posix_spawn,
group stops, and the syscalls that evade or defeat tracing are reported as anomalies."""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import sys
import time
from pathlib import Path

import pytest

from ciwatch.record import Record, read_record
from ciwatch.record.events import Anomaly, FileWrite, Leftover, ProcessExec, ProcessExit, ProcessStart
from ciwatch.record.vocabulary import AnomalyKind, FileOp
from tests.support.cprograms import program

POLL_LIMIT_S = 20.0


@pytest.fixture
def traced(ciwatch):  # type: ignore[no-untyped-def]
    """``ciwatch run --net off``: the tracer without the egress proxy, which these tests
    don't need (it costs about a second a run)."""
    return functools.partial(ciwatch, "--net", "off")


def starts(record: Record) -> dict[int, ProcessStart]:
    return {e.event.pid: e.event for e in record.events if isinstance(e.event, ProcessStart)}


def execs(record: Record) -> list[ProcessExec]:
    return [e.event for e in record.events if isinstance(e.event, ProcessExec)]


def exec_with_argv(record: Record, *argv: str) -> ProcessExec:
    found = [e for e in execs(record) if e.argv == list(argv)]
    assert len(found) == 1, f"expected one exec of {argv}, got {found}; all: {[e.argv for e in execs(record)]}"
    return found[0]


def root_pid(record: Record) -> int:
    return next(e.event.pid for e in record.events if isinstance(e.event, ProcessStart))


def assert_every_process_introduced(record: Record) -> None:
    """No event names a pid before a process-start introduced it."""
    known: set[int] = set()
    for item in record.events:
        event = item.event
        if isinstance(event, ProcessStart):
            assert event.pid not in known, f"pid {event.pid} started twice"
            known.add(event.pid)
        elif getattr(event, "pid", None) is not None:
            assert event.pid in known, f"seq {item.seq}: {event} before its process-start"


def alive(pid: int) -> bool:
    """Running (a zombie counts as gone: this machine's init may not reap orphans)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return False
    return stat.rsplit(b")", 1)[-1].split()[0] not in (b"Z", b"X")


def wait_until(condition, what: str, limit: float = POLL_LIMIT_S) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + limit
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for: {what}")
        time.sleep(0.02)


def kill_if_ours(pid: int, marker: str) -> None:
    """SIGKILL ``pid`` if it still runs a command line holding ``marker`` (never a reused pid)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return
    if marker.encode() in cmdline:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


# -- pipes and subshells -------------------------------------------------------------------


def test_pipeline_and_subshell_execs_have_the_right_parents(traced):
    run = traced("--", "sh", "-c", "echo a | tr a b | cat; (sleep 0; true)")
    assert run.code == 0, run.stderr
    assert run.stdout == "b\n"
    record = run.record
    assert_every_process_introduced(record)
    root = root_pid(record)
    started = starts(record)
    tr = exec_with_argv(record, "tr", "a", "b")
    cat = exec_with_argv(record, "cat")
    sleep = exec_with_argv(record, "sleep", "0")
    assert started[tr.pid].ppid == root
    assert started[cat.pid].ppid == root
    subshell = started[sleep.pid].ppid
    assert subshell != root
    assert started[subshell].ppid == root
    assert tr.path == "/usr/bin/tr" and tr.cwd == os.getcwd()
    exits = {e.event.pid: e.event for e in record.events if isinstance(e.event, ProcessExit)}
    assert set(exits) == set(started), "every process that started is seen to exit"
    assert record.end is not None and record.end.clean


# -- daemons and leftovers -----------------------------------------------------------------


def _daemon_build(tmp_path: Path, daemon_body: str) -> Path:
    """A build whose root double-forks a setsid daemon, waits until it runs, and exits.
    The daemon gets the root's pid as $1."""
    (tmp_path / "daemon.sh").write_text(f"echo $$ > {tmp_path}/daemon.pid\n{daemon_body}\n")
    build = tmp_path / "build.sh"
    build.write_text(
        f"( setsid sh {tmp_path}/daemon.sh $$ </dev/null >/dev/null 2>&1 & )\n"
        f"while [ ! -s {tmp_path}/daemon.pid ]; do sleep 0.01; done\n"
        "exit 0\n"
    )
    return build


def _daemon_pid(tmp_path: Path) -> int:
    return int((tmp_path / "daemon.pid").read_text())


def test_daemon_left_running_keeps_working_after_the_build(ciwatch, tmp_path):
    go, late, stop = tmp_path / "go", tmp_path / "late.txt", tmp_path / "stop"
    body = (
        f"while [ ! -e {go} ]; do sleep 0.02; done\n"
        f"echo written-after-the-build > {late}\n"
        f"while [ ! -e {stop} ]; do sleep 0.02; done\n"
    )
    build = _daemon_build(tmp_path, body)
    run = None
    try:
        run = ciwatch("--", "sh", str(build))
        daemon = _daemon_pid(tmp_path)
        assert run.code == 0, run.stderr
        record = run.record
        assert record.end is not None and record.end.clean
        assert daemon in starts(record), "the daemon was traced"
        leftovers = {e.pid: e for e in run.events(Leftover)}
        assert leftovers[daemon].action == "left-running"
        assert leftovers[daemon].argv[:2] == ["sh", str(tmp_path / "daemon.sh")]
        assert str(daemon) in run.stderr  # ciwatch says what it left running

        assert alive(daemon), "the daemon keeps running after ciwatch returned"
        # It still works: a file write (a syscall the seccomp filter hands to the tracer)
        # made after the build ended succeeds instead of failing with ENOSYS.
        go.touch()
        wait_until(lambda: late.exists() and late.read_text() == "written-after-the-build\n", "the daemon's write")
        assert alive(daemon)
        stop.touch()
        wait_until(lambda: not alive(daemon), "the daemon to exit")

        # The tracer that stayed behind for it goes once it has ended.
        tracer = starts(record)[root_pid(record)].ppid
        wait_until(lambda: not alive(tracer), "the tracer left behind to exit")
        # What the daemon did after the build is the record's second segment, closed once it ended.
        wait_until(lambda: read_record(run.out_dir).after_build_end is not None, "the second segment's end")
        later = read_record(run.out_dir)
        assert later.after_build is not None and daemon in later.after_build.pids
        assert any(
            isinstance(item.event, FileWrite) and item.event.path == str(late) and item.seq > later.after_build_seq
            for item in later.events
        )
    finally:
        stop.touch()
        if (tmp_path / "daemon.pid").exists():
            kill_if_ours(_daemon_pid(tmp_path), str(tmp_path))
        if run is not None:
            with contextlib.suppress(Exception):
                record = run.record
                kill_if_ours(starts(record)[root_pid(record)].ppid, str(run.out_dir))  # the tracer


def test_leftovers_kill_kills_the_daemon(traced, tmp_path):
    build = _daemon_build(tmp_path, "while true; do sleep 0.02; done")
    try:
        run = traced("--leftovers", "kill", "--", "sh", str(build))
        daemon = _daemon_pid(tmp_path)
        assert run.code == 0, run.stderr
        leftovers = {e.pid: e for e in run.events(Leftover)}
        assert leftovers[daemon].action == "killed"
        exits = {e.pid: e for e in run.events(ProcessExit)}
        assert exits[daemon].signal == signal.SIGKILL
        assert not alive(daemon)
        assert run.record.end is not None and run.record.end.clean
        assert_every_process_introduced(run.record)
    finally:
        if (tmp_path / "daemon.pid").exists():
            kill_if_ours(_daemon_pid(tmp_path), str(tmp_path))


def test_leftovers_wait_records_what_the_daemon_does_later(traced, tmp_path):
    # The daemon execs only once the build's root has exited (and been reaped).
    body = 'while kill -0 "$1" 2>/dev/null; do sleep 0.02; done\nexec /bin/echo late-exec'
    build = _daemon_build(tmp_path, body)
    try:
        run = traced("--leftovers", "wait", "--", "sh", str(build))
        daemon = _daemon_pid(tmp_path)
        assert run.code == 0, run.stderr
        record = run.record
        leftover = next(e for e in record.events if isinstance(e.event, Leftover) and e.event.pid == daemon)
        assert leftover.event.action == "waited"
        late = next(e for e in record.events if isinstance(e.event, ProcessExec) and e.event.argv[-1:] == ["late-exec"])
        assert late.event.pid == daemon
        assert late.seq > leftover.seq
        assert {e.pid: e for e in run.events(ProcessExit)}[daemon].exit_code == 0
        assert not alive(daemon)
        assert record.end is not None and record.end.clean
    finally:
        if (tmp_path / "daemon.pid").exists():
            kill_if_ours(_daemon_pid(tmp_path), str(tmp_path))


# -- threads, vfork, posix_spawn -------------------------------------------------------------


def test_exec_from_a_non_leader_thread(traced, tmp_path):
    written = tmp_path / "from-the-new-image.txt"
    script = f"echo builtin > {written}; /bin/true after-thread"
    run = traced("--", str(program("thread_exec")), "/bin/sh", "-c", script)
    assert run.code == 0, run.stderr
    record = run.record
    assert_every_process_introduced(record)
    root = root_pid(record)
    image = exec_with_argv(record, "/bin/sh", "-c", script)
    assert image.pid == root
    assert image.from_tid is not None and image.from_tid != root
    assert image.path == "/bin/sh"
    # What the new image does is still traced, under the leader's pid.
    writes = [e for e in run.events(FileWrite) if e.path == str(written)]
    assert [(w.pid, w.op) for w in writes] == [(root, FileOp.OPEN)]
    after = exec_with_argv(record, "/bin/true", "after-thread")
    assert after.pid == root or starts(record)[after.pid].ppid == root
    assert exec_with_argv(record, str(program("thread_exec")), "/bin/sh", "-c", script).from_tid is None
    assert {e.pid: e for e in run.events(ProcessExit)}[root].exit_code == 0


def _child_of(run, name: str) -> int:  # type: ignore[no-untyped-def]
    assert run.code == 0, run.stderr
    words = run.stdout.split()
    assert words[0] == "child" and words[2:] == ["status", "0"], run.stdout
    child = int(words[1])
    record = run.record
    assert_every_process_introduced(record)
    assert starts(record)[child].ppid == root_pid(record)
    assert exec_with_argv(record, "true", name).pid == child
    return child


def test_vfork_child_is_recorded_with_its_parent(traced):
    _child_of(traced("--", str(program("vfork_exec"))), "vforked-child")


def test_posix_spawn_child_is_recorded_with_its_parent(traced):
    _child_of(traced("--", str(program("spawn_exec"))), "spawned-child")


# -- anomalies -----------------------------------------------------------------------------


def anomalies(run, kind: AnomalyKind) -> list[Anomaly]:  # type: ignore[no-untyped-def]
    return [e for e in run.events(Anomaly) if e.anomaly is kind]


def test_int80_syscall_is_a_foreign_abi_anomaly_and_still_works(traced):
    run = traced("--", str(program("int80_getpid")))
    assert run.code == 0, run.stderr
    assert run.stdout == "int80 getpid ok\n"
    found = anomalies(run, AnomalyKind.FOREIGN_ABI)
    assert len(found) == 1
    assert found[0].pid == root_pid(run.record)
    assert "i386" in found[0].detail and "getpid" in found[0].detail


def test_exec_of_a_memfd_is_an_anomaly(traced):
    run = traced("--", str(program("memfd_exec")), "/bin/echo")
    assert run.code == 0, run.stderr
    assert run.stdout == "from-memfd\n"
    root = root_pid(run.record)
    memfds = [e for e in run.events(FileWrite) if e.op is FileOp.MEMFD]
    assert [(m.pid, m.path) for m in memfds] == [(root, "memfd:ciwatch-payload")]
    payload = exec_with_argv(run.record, "payload", "from-memfd")
    assert payload.pid == root and payload.exe.startswith("/memfd:ciwatch-payload")
    found = anomalies(run, AnomalyKind.MEMFD_EXEC)
    assert len(found) == 1 and found[0].pid == root and "ciwatch-payload" in found[0].detail


def test_io_uring_setup_is_an_anomaly(traced):
    run = traced("--", str(program("io_uring_setup")))
    assert run.code == 0, run.stderr
    assert run.stdout.startswith("io_uring_setup ")  # ok, or refused by this kernel: both fine
    found = anomalies(run, AnomalyKind.IO_URING)
    assert len(found) == 1 and found[0].pid == root_pid(run.record)


def test_ptrace_is_an_anomaly(traced):
    run = traced("--", str(program("ptrace_self")))
    assert run.code == 0, run.stderr
    assert run.stdout.startswith("ptrace traceme: ")
    found = anomalies(run, AnomalyKind.PTRACE)
    assert len(found) == 1 and found[0].pid == root_pid(run.record)
    assert "request=0" in found[0].detail  # PTRACE_TRACEME


# -- group stop ----------------------------------------------------------------------------

_GROUP_STOP = """
import os, signal, threading, time
pid = os.fork()
if pid == 0:
    worker = threading.Thread(target=time.sleep, args=(0.2,))
    worker.start()
    worker.join()
    os._exit(5)
os.kill(pid, signal.SIGSTOP)
_, status = os.waitpid(pid, os.WUNTRACED)
print("stopped", os.WIFSTOPPED(status) and os.WSTOPSIG(status) == signal.SIGSTOP)
os.kill(pid, signal.SIGCONT)
_, status = os.waitpid(pid, os.WCONTINUED)
print("continued", os.WIFCONTINUED(status))
_, status = os.waitpid(pid, 0)
print("exit", os.waitstatus_to_exitcode(status))
"""


def test_group_stop_then_continue(traced):
    run = traced("--", sys.executable, "-c", _GROUP_STOP, timeout=120)
    assert run.code == 0, run.stderr
    assert run.stdout == "stopped True\ncontinued True\nexit 5\n"
    record = run.record
    assert record.end is not None and record.end.clean
    child = next(pid for pid, start in starts(record).items() if start.ppid == root_pid(record))
    assert {e.pid: e for e in run.events(ProcessExit)}[child].exit_code == 5
