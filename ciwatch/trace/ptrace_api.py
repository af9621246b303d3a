"""The few ptrace requests the tracer makes, over python-ptrace's ``ptrace()`` call.

python-ptrace supplies the system call (and its errors); the requests it doesn't wrap
(SEIZE, INTERRUPT, LISTEN, GET_SYSCALL_INFO) are issued here with their raw numbers.
"""

from __future__ import annotations

import ctypes
import errno
import os

from ptrace import PtraceError
from ptrace.binding.func import ptrace

from ciwatch.dataclass import dataclass

PTRACE_CONT = 7
PTRACE_SYSCALL = 24
PTRACE_SETOPTIONS = 0x4200
PTRACE_GETEVENTMSG = 0x4201
PTRACE_SEIZE = 0x4206
PTRACE_LISTEN = 0x4208
PTRACE_GET_SYSCALL_INFO = 0x420E

O_TRACESYSGOOD = 0x1
O_TRACEFORK = 0x2
O_TRACEVFORK = 0x4
O_TRACECLONE = 0x8
O_TRACEEXEC = 0x10
O_TRACESECCOMP = 0x80
O_EXITKILL = 0x100000

TRACE_OPTIONS = O_TRACESYSGOOD | O_TRACEFORK | O_TRACEVFORK | O_TRACECLONE | O_TRACEEXEC | O_TRACESECCOMP | O_EXITKILL

EVENT_FORK = 1
EVENT_VFORK = 2
EVENT_CLONE = 3
EVENT_EXEC = 4
EVENT_SECCOMP = 7
EVENT_STOP = 128

SYSCALL_INFO_ENTRY = 1
SYSCALL_INFO_EXIT = 2
SYSCALL_INFO_SECCOMP = 3

AUDIT_ARCH_X86_64 = 0xC000003E
AUDIT_ARCH_I386 = 0x40000003


class _Entry(ctypes.Structure):
    _fields_ = [("nr", ctypes.c_uint64), ("args", ctypes.c_uint64 * 6)]


class _Exit(ctypes.Structure):
    _fields_ = [("rval", ctypes.c_int64), ("is_error", ctypes.c_uint8)]


class _Seccomp(ctypes.Structure):
    _fields_ = [("nr", ctypes.c_uint64), ("args", ctypes.c_uint64 * 6), ("ret_data", ctypes.c_uint32)]


class _Union(ctypes.Union):
    _fields_ = [("entry", _Entry), ("exit", _Exit), ("seccomp", _Seccomp)]


class _SyscallInfo(ctypes.Structure):
    _fields_ = [
        ("op", ctypes.c_uint8),
        ("pad", ctypes.c_uint8 * 3),
        ("arch", ctypes.c_uint32),
        ("instruction_pointer", ctypes.c_uint64),
        ("stack_pointer", ctypes.c_uint64),
        ("u", _Union),
    ]


@dataclass(frozen=True, slots=True)
class SyscallStop:
    """What the kernel says about the syscall a tracee is stopped in."""

    op: int
    arch: int
    nr: int
    args: tuple[int, ...]
    rval: int


# The two requests made at every stop go straight to libc: python-ptrace's wrapper costs a few
# microseconds a call in checks, and the build waits through every one of them.
_libc = ctypes.CDLL(None, use_errno=True)
_raw_ptrace = _libc.ptrace
_raw_ptrace.argtypes = [ctypes.c_long, ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p]
_raw_ptrace.restype = ctypes.c_long


def _fast_ptrace(request: int, tid: int, addr: int, data: int) -> None:
    if _raw_ptrace(request, tid, addr, data) == -1:
        code = ctypes.get_errno()
        if code:
            raise PtraceError(f"ptrace({request}, {tid}): {os.strerror(code)}", errno=code, pid=tid)


_info = _SyscallInfo()
_info_addr = ctypes.addressof(_info)
_info_size = ctypes.sizeof(_info)


def syscall_info(tid: int) -> SyscallStop:
    _fast_ptrace(PTRACE_GET_SYSCALL_INFO, tid, _info_size, _info_addr)
    op = _info.op
    if op == SYSCALL_INFO_EXIT:
        return SyscallStop(op, _info.arch, -1, (), _info.u.exit.rval)
    entry = _info.u.seccomp if op == SYSCALL_INFO_SECCOMP else _info.u.entry
    return SyscallStop(op, _info.arch, entry.nr, tuple(entry.args), 0)


def seize(pid: int) -> None:
    ptrace(PTRACE_SEIZE, pid, 0, TRACE_OPTIONS)


def event_message(tid: int) -> int:
    value = ctypes.c_ulong()
    ptrace(PTRACE_GETEVENTMSG, tid, 0, ctypes.addressof(value))
    return value.value


def resume(tid: int, signal: int = 0, *, step_syscalls: bool = False) -> bool:
    """Let a stopped tracee run on; False if it has vanished (killed meanwhile)."""
    try:
        _fast_ptrace(PTRACE_SYSCALL if step_syscalls else PTRACE_CONT, tid, 0, signal)
    except PtraceError as error:
        if error.errno == errno.ESRCH:
            return False
        raise
    return True


def listen(tid: int) -> None:
    """Leave a tracee in group-stop (SIGSTOP/SIGTSTP) until SIGCONT, still traced."""
    try:
        ptrace(PTRACE_LISTEN, tid, 0, 0)
    except PtraceError as error:
        if error.errno != errno.ESRCH:
            raise
