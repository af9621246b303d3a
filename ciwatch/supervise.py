"""The two processes of ``ciwatch run``.

The process the shell started (the front) forks the tracer and waits for the build's exit
code. The split exists because a process that installed our seccomp filter can't run
untraced: without a tracer its filtered syscalls fail with ENOSYS. So when the build leaves
processes running (a daemon, a cache server), the tracer stays behind to keep them working
while the front returns the build's exit code at once.

- The build runs in a process group of its own (the terminal's foreground group, when
  ciwatch had the terminal: :mod:`ciwatch.terminal`). Signals sent to the front or to its
  group (``kill``, a CI runner cancelling the step) are forwarded to the build's root, once;
  those that come while ciwatch is still starting wait until it exists. Terminal-generated
  ones (Ctrl-C) reach the build's group directly, and not the front.
- The tracer ignores the signals the front forwards: only the build's end ends the trace. The
  build itself can't signal either process (:mod:`ciwatch.trace.selfguard`); should the
  tracer be stopped all the same, the front notices within a second and resumes it.
- Neither process is dumpable, and the build runs without CAP_SYS_PTRACE: the kernel refuses
  the build's reads and writes of their memory, descriptors and /proc files
  (:mod:`ciwatch.trace.unreachable`).
- If the front is killed, the tracer dies with it (PDEATHSIG), and with the tracer every
  tracee (PTRACE_O_EXITKILL): nothing is left behind. The record stays readable.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
import threading
from collections.abc import Callable
from typing import NoReturn

from ciwatch import terminal
from ciwatch.exitcodes import INTERNAL_ERROR
from ciwatch.trace.unreachable import make_unreachable

_PR_SET_PDEATHSIG = 1
_FORWARDED = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT}
#: How often the front looks whether the tracer was stopped (a watchdog, not a timeout).
_WATCHDOG_S = 1.0

#: The tracer side: run the build, call ``report_root`` once it started, return the exit
#: code, and optionally a function to run after the front has been released.
TracerWork = Callable[[Callable[[int], None]], tuple[int, Callable[[], None] | None]]


def _set_parent_death_signal(sig: int) -> None:
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, sig, 0, 0, 0)


def run_split(work: TracerWork, handed_over: Callable[[], None] = lambda: None) -> int:
    """Fork the tracer process, forward signals to the build, return the build's exit code.
    ``handed_over`` runs in the front once the tracer exists: what it drops that the tracer
    keeps using (the fanotify group, whose last close would wait for the kernel)."""
    front_pid = os.getpid()
    # Before the fork, so that both processes are: the build can't read or write their memory
    # or open their /proc files (:mod:`ciwatch.trace.unreachable`).
    make_unreachable()
    read_fd, write_fd = os.pipe()
    signal.pthread_sigmask(signal.SIG_BLOCK, _FORWARDED)
    pid = os.fork()
    if pid == 0:
        os.close(read_fd)
        _tracer_main(work, write_fd, front_pid)
    os.close(write_fd)
    handed_over()
    return _front_main(read_fd, pid)


def exit_front(code: int) -> NoReturn:
    """End the front with the build's exit code, without the interpreter's clean-up: freeing
    every module and object ciwatch loaded takes longer than the run of a short build, and the
    front holds nothing that needs it (the record is the tracer's)."""
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    finally:
        os._exit(code)


def _tracer_main(work: TracerWork, write_fd: int, front_pid: int) -> None:
    code = INTERNAL_ERROR
    after: Callable[[], None] | None = None
    try:
        _set_parent_death_signal(signal.SIGKILL)
        if os.getppid() != front_pid:
            os._exit(INTERNAL_ERROR)
        for sig in _FORWARDED:
            signal.signal(sig, signal.SIG_IGN)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _FORWARDED)

        def report_root(root_pid: int) -> None:
            os.write(write_fd, f"root {root_pid}\n".encode())

        code, after = work(report_root)
    except BaseException:  # noqa: BLE001 - the work renders its own errors; anything else is a bug
        import traceback

        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        if after is not None:
            _set_parent_death_signal(0)
        _let_go_of_the_jobs_streams()
        os.write(write_fd, f"exit {code}\n".encode())
        os.close(write_fd)
    if after is not None:
        try:
            after()
        finally:
            os._exit(0)
    os._exit(0)


def _let_go_of_the_jobs_streams() -> None:
    """Hand back the job's terminal and pipes before the front returns: whoever reads them (a CI
    runner waits for the end of a step's output, as does a shell's ``$(...)``) sees their end
    with the front's exit, not after this process's, which waits for the kernel to tear down its
    fanotify groups (tens of milliseconds, more on a busy machine), or for leftovers to end."""
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    if null > 2:
        os.close(null)


def _resume_if_stopped(pid: int) -> None:
    """The watchdog: a stopped tracer stops the whole build with it; resume it and say so."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stream:
            state = stream.read().rsplit(b")", 1)[-1].split()[0:1]
    except OSError:
        return
    if state == [b"T"]:
        print("ciwatch: the tracer process was stopped (SIGSTOP); resuming it", file=sys.stderr)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)


def _front_main(read_fd: int, tracer_pid: int) -> int:
    root_pid = 0
    outcome: list[int] = []
    # Signals to pass on, kept until the build's root is known: a step cancelled while
    # ciwatch is still starting must not then run to its end.
    to_forward: list[int] = []
    done = threading.Event()

    def read_messages() -> None:
        nonlocal root_pid
        buffer = b""
        while chunk := os.read(read_fd, 1024):
            buffer += chunk
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                word, _, value = line.decode().partition(" ")
                if word == "root":
                    root_pid = int(value)
                    os.kill(os.getpid(), signal.SIGCHLD)  # wake sigwaitinfo: forward what came early
                elif word == "exit":
                    outcome.append(int(value))
        done.set()
        os.kill(os.getpid(), signal.SIGCHLD)  # wake sigwaitinfo

    waited = set(_FORWARDED) | {signal.SIGCHLD}
    # Blocked before the reader thread starts, so that it inherits the mask: a wake-up it
    # sends must reach sigwaitinfo, not be taken (and dropped) by the reader itself.
    signal.pthread_sigmask(signal.SIG_BLOCK, waited)
    threading.Thread(target=read_messages, daemon=True).start()
    while not done.is_set():
        info = signal.sigtimedwait(waited, _WATCHDOG_S)
        if info is None:
            _resume_if_stopped(tracer_pid)
            continue
        if info.si_signo != signal.SIGCHLD:
            to_forward.append(info.si_signo)
        if root_pid:
            for sig in to_forward:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(root_pid, sig)
            to_forward.clear()
    if root_pid:
        terminal.take_back(root_pid)
    if not outcome:
        # The tracer process died without a word (killed): reap it and say so.
        os.waitpid(tracer_pid, 0)
        print("ciwatch: the tracer process ended unexpectedly; the record may be incomplete", file=sys.stderr)
        return INTERNAL_ERROR
    # Not waited for: the tracer may stay for leftover processes; it is reparented when we exit.
    return outcome[0]
