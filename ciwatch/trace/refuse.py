"""Refusing a syscall the tracee is stopped in: block mode's answer at the tracer."""

from __future__ import annotations

import errno
from collections.abc import Callable

from ptrace.binding.func import ptrace_getregs, ptrace_setregs

from ciwatch.record.events import Event, Refusal
from ciwatch.record.vocabulary import AnomalyKind, RefusedWhat
from ciwatch.trace.tasks import TracedThread


def refuse_syscall(thread: TracedThread, error: int) -> None:
    """Skip the syscall the tracee is stopped in and make it fail with ``error``."""
    regs = ptrace_getregs(thread.tid)
    regs.orig_rax = 0xFFFFFFFFFFFFFFFF  # -1: the kernel skips it
    ptrace_setregs(thread.tid, regs)

    def set_result(_result: int) -> None:
        after = ptrace_getregs(thread.tid)
        after.rax = (-error) & 0xFFFFFFFFFFFFFFFF
        ptrace_setregs(thread.tid, after)

    thread.pending_exit = set_result


def refuse_as_evasion(thread: TracedThread, kind: AnomalyKind, detail: str, emit: Callable[[Event], None]) -> bool:
    """Block mode: fail the syscall with EPERM, and record the refusal (a finding's evidence)."""
    refuse_syscall(thread, errno.EPERM)
    reason = f"tracer-evasion: {kind} would take the build out of ciwatch's sight"
    emit(Refusal(pid=thread.tgid, what=RefusedWhat.SYSCALL, target=detail, reason=reason, rule="tracer-evasion"))
    return True
