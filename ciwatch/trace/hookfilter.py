"""Adding the hook filter to a lifecycle hook's process, from outside it.

A hook's reads of credentials are invisible to the build's write-only filter, so a hook's
process gets a second filter (:func:`ciwatch.trace.seccomp.build_hook_filter`) stacked on
it. Only the process itself can add one: at its next syscall entry the tracer borrows the
syscall, turning it into seccomp(SET_MODE_FILTER, hook filter), and at its exit restores
the registers and steps back over the syscall instruction, so that the original syscall
runs as if nothing had happened. Where that fails, the thread is followed syscall by
syscall instead ("deep").
"""

from __future__ import annotations

import ctypes
import logging
import struct
from typing import Any

from ptrace.binding.func import ptrace_getregs, ptrace_setregs

from ciwatch.trace.memory import write_bytes
from ciwatch.trace.seccomp import build_hook_filter
from ciwatch.trace.tasks import TracedThread

log = logging.getLogger(__name__)

_SYS_SECCOMP = 317
_SECCOMP_SET_MODE_FILTER = 1
#: Below the stack pointer, past the red zone: scratch space for the injected filter.
_SCRATCH_BELOW_SP = 128 + 512
_HOOK_FILTER = build_hook_filter()


def inject_hook_filter(thread: TracedThread) -> None:
    """At a syscall entry of a hook's process: make it seccomp(SET_MODE_FILTER, hook filter)."""
    injection = thread.injection
    assert injection is not None
    regs = ptrace_getregs(thread.tid)
    injection.saved_regs = _copy_regs(regs)
    program = _HOOK_FILTER
    fprog = (regs.rsp - _SCRATCH_BELOW_SP) & ~0xF
    filter_address = fprog + 16
    ok = write_bytes(thread.tid, filter_address, program) and write_bytes(
        thread.tid, fprog, struct.pack("<HxxxxxxQ", len(program) // 8, filter_address)
    )
    if not ok:
        hook_filter_failed(thread)
        return
    regs.orig_rax = _SYS_SECCOMP
    regs.rdi = _SECCOMP_SET_MODE_FILTER
    regs.rsi = 0
    regs.rdx = fprog
    ptrace_setregs(thread.tid, regs)
    thread.pending_exit = lambda result: finish_hook_filter(thread, result)


def finish_hook_filter(thread: TracedThread, result: int) -> None:
    """At the borrowed syscall's exit: put the registers back and replay the original syscall."""
    injection = thread.injection
    thread.injection = None
    if injection is None or injection.saved_regs is None:
        return
    regs = injection.saved_regs
    regs.rip -= 2  # the syscall instruction, to run the original syscall again
    regs.rax = regs.orig_rax
    ptrace_setregs(thread.tid, regs)
    if result != 0:  # no_new_privs and no CAP_SYS_ADMIN, or seccomp refused
        hook_filter_failed(thread)


def hook_filter_failed(thread: TracedThread) -> None:
    log.debug("could not add the hook filter to %d: following it syscall by syscall", thread.tid)
    thread.injection = None
    thread.deep = True


def _copy_regs(regs: Any) -> Any:
    """A copy of a ctypes register structure (ptrace_getregs returns one)."""
    copy = type(regs)()
    ctypes.memmove(ctypes.addressof(copy), ctypes.addressof(regs), ctypes.sizeof(regs))
    return copy
