"""The build may not signal, stop or trace ciwatch's own processes.

A build runs as the same user as ciwatch (often root), so nothing in the kernel stops it
from sending SIGSTOP to its tracer (which would hang the run), SIGKILL (which would end the
trace and, with it, the build), or attaching to the tracer with ptrace. Every syscall that
sends a signal or attaches is in the seccomp filter; the ones aimed at ciwatch's processes,
their process group, or everyone (kill(-1)) are refused with EPERM in every mode, since
protecting the record is not a policy choice, and recorded (tracer-evasion).

The calls that reach into a process's memory or descriptors (process_vm_readv/writev,
pidfd_getfd, kcmp, process_madvise) are refused and recorded the same way when aimed at
ciwatch. The kernel refuses them too (:mod:`ciwatch.trace.unreachable`), as it does the same
routes through /proc, which no stop sees: the refusal here puts the attempt in the record.

The build runs in a process group of its own (:mod:`ciwatch.trace.spawn`), so its own
``kill 0`` (a common shell idiom: ``trap 'kill 0' EXIT``) reaches only the build.
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Callable, Iterable

from ciwatch.record.events import Anomaly, Event
from ciwatch.record.vocabulary import AnomalyKind
from ciwatch.trace import procfs
from ciwatch.trace.decode.signals import Aim, Aimed, PtraceCall, Reach
from ciwatch.trace.refuse import refuse_syscall
from ciwatch.trace.tasks import TracedThread


class SelfGuard:
    def __init__(self, protected: Iterable[int], emit: Callable[[Event], None]) -> None:
        self._emit = emit
        self.protected = frozenset(pid for pid in protected if pid > 1)
        groups = set()
        for pid in self.protected:
            with contextlib.suppress(OSError):
                groups.add(os.getpgid(pid))
        self._groups = frozenset(groups)
        self.nested_tracers: list[tuple[int, str]] = []
        """Build processes that asked to trace (pid, program): they fail under ciwatch."""

    def on_signal(self, thread: TracedThread, aimed: Aimed) -> None:
        if aimed.signal != 0 and self._hits_ciwatch(thread.tgid, aimed):
            self._refuse(thread, aimed)

    def on_ptrace(self, thread: TracedThread, call: PtraceCall) -> None:
        self._emit(call.anomaly)
        if call.aimed is not None and self._hits_ciwatch(thread.tgid, call.aimed):
            self._refuse(thread, call.aimed)
        elif call.becomes_tracer:
            self.nested_tracers.append((thread.tgid, procfs.comm(thread.tgid)))

    def on_reach(self, thread: TracedThread, reach: Reach) -> bool:
        """Refuse (and record) a call aimed at ciwatch's memory or descriptors; True if refused."""
        for aimed in reach.targets:
            if self._hits_ciwatch(thread.tgid, aimed):
                self._refuse(thread, aimed)
                return True
        return False

    def _refuse(self, thread: TracedThread, aimed: Aimed) -> None:
        refuse_syscall(thread, errno.EPERM)
        detail = f"{aimed.detail} would reach ciwatch's own processes: refused"
        self._emit(Anomaly(pid=thread.tgid, anomaly=AnomalyKind.TARGETS_CIWATCH, detail=detail))

    def _hits_ciwatch(self, caller: int, aimed: Aimed) -> bool:
        match aimed.aim:
            case Aim.EVERYONE:
                return True
            case Aim.CALLER_GROUP:
                return _group_of(caller) in self._groups
            case Aim.GROUP:
                return aimed.target in self._groups
            case Aim.PROCESS:
                return aimed.target in self.protected
            case Aim.THREAD:
                return procfs.tgid_of(aimed.target) in self.protected
            case Aim.PIDFD:
                return procfs.pidfd_target(caller, aimed.target) in self.protected


def _group_of(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except OSError:
        return None
