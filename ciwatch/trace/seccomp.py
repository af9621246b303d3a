"""The seccomp-bpf pre-filter: the kernel stops the tracee only for syscalls that matter.

Everything else runs at full speed (SECCOMP_RET_ALLOW). A syscall of a foreign ABI
(i386 via int 0x80, or x32) is always handed to the tracer, never silently allowed.
"""

from __future__ import annotations

import ctypes
import errno
import os
import struct

from ciwatch.trace.ptrace_api import AUDIT_ARCH_X86_64
from ciwatch.trace.table import (
    AF_NETLINK,
    AF_PACKET,
    SOCK_PACKET,
    SOCK_RAW,
    SOCK_TYPE_MASK,
    TABLE,
    WRITE_OPEN_FLAGS,
    X32_SYSCALL_BIT,
    When,
)

_BPF_LD_W_ABS = 0x20
_BPF_JEQ_K = 0x15
_BPF_JGE_K = 0x35
_BPF_JSET_K = 0x45
_BPF_RET_K = 0x06
_BPF_ALU_AND_K = 0x54

SECCOMP_RET_ALLOW = 0x7FFF0000
SECCOMP_RET_TRACE = 0x7FF00000
SECCOMP_RET_ERRNO = 0x00050000

_OFFSET_NR = 0
_OFFSET_ARCH = 4


def _arg_low(index: int) -> int:
    return 16 + 8 * index


def _arg_high(index: int) -> int:
    return 16 + 8 * index + 4


class _Program:
    """A tiny assembler: jumps name labels, resolved once the program is complete."""

    def __init__(self) -> None:
        self.code: list[tuple[int, int | str, int | str, int]] = []
        self.labels: dict[str, int] = {}

    def label(self, name: str) -> None:
        self.labels[name] = len(self.code)

    def emit(self, code: int, k: int, jt: int | str = 0, jf: int | str = 0) -> None:
        self.code.append((code, jt, jf, k))

    def assemble(self) -> bytes:
        out = bytearray()
        for index, (code, jt, jf, k) in enumerate(self.code):
            out += struct.pack("<HBBI", code, self._offset(index, jt), self._offset(index, jf), k)
        return bytes(out)

    def _offset(self, index: int, target: int | str) -> int:
        if isinstance(target, int):
            return target
        offset = self.labels[target] - index - 1
        assert 0 <= offset < 256, f"jump to {target} out of range"
        return offset


def build_filter(*, trace_receives: bool = False, fanotify: bool = False) -> bytes:
    """The BPF program, as the bytes of a ``struct sock_filter`` array, generated from the
    syscall table: its ALWAYS rows first, then a jump per conditional row to its test.

    ``trace_receives`` (redirect mode) adds the rows only wanted then: recvfrom with a
    source-address buffer and recvmsg, so that a DNS reply from ciwatch's listener can be
    given back the resolver's address; reads that don't ask for the source (all of TCP)
    never stop.

    ``fanotify``: file events come from fanotify, so its rows are left out (the writer never
    stops)."""
    p = _Program()
    p.emit(_BPF_LD_W_ABS, _OFFSET_ARCH)
    p.emit(_BPF_JEQ_K, AUDIT_ARCH_X86_64, 0, "trace")
    p.emit(_BPF_LD_W_ABS, _OFFSET_NR)
    p.emit(_BPF_JGE_K, X32_SYSCALL_BIT, "trace", 0)
    rows = [row for row in TABLE if (trace_receives or not row.receives_only) and not (fanotify and row.fanotify)]
    for row in rows:
        if row.when is When.ALWAYS and not row.receives_only:
            p.emit(_BPF_JEQ_K, row.number, "trace", 0)
    tests: dict[str, tuple[When, int, int]] = {}  # one test per (predicate, argument, value), shared
    for row in rows:
        if row.when is When.ALWAYS and row.receives_only:
            p.emit(_BPF_JEQ_K, row.number, "trace", 0)
        elif row.when is When.ENOSYS:
            p.emit(_BPF_JEQ_K, row.number, "enosys", 0)
        elif row.when is not When.ALWAYS:
            label = f"{row.when}{row.arg}_{row.value}"
            tests.setdefault(label, (row.when, row.arg, row.value))
            p.emit(_BPF_JEQ_K, row.number, label, 0)
    p.emit(_BPF_RET_K, SECCOMP_RET_ALLOW)
    for label, (when, arg, value) in tests.items():
        p.label(label)
        # The arguments tested below are ints to the kernel (or flags whose bits are all in
        # the low half): their low 32 bits are what the syscall sees.
        if when is When.WRITE_FLAGS:  # open flags: only opens that can write
            p.emit(_BPF_LD_W_ABS, _arg_low(arg))
            p.emit(_BPF_JSET_K, WRITE_OPEN_FLAGS, "trace", "allow")
        elif when is When.ANY_BIT:
            p.emit(_BPF_LD_W_ABS, _arg_low(arg))
            p.emit(_BPF_JSET_K, value, "trace", "allow")
        elif when is When.EQUALS:
            p.emit(_BPF_LD_W_ABS, _arg_low(arg))
            p.emit(_BPF_JEQ_K, value, "trace", "allow")
        elif when is When.RAW_SOCKET:
            p.emit(_BPF_LD_W_ABS, _arg_low(0))
            p.emit(_BPF_JEQ_K, AF_PACKET, "trace", 0)
            p.emit(_BPF_JEQ_K, AF_NETLINK, "allow", 0)  # SOCK_RAW is netlink's ordinary type
            p.emit(_BPF_LD_W_ABS, _arg_low(1))
            p.emit(_BPF_ALU_AND_K, SOCK_TYPE_MASK)
            p.emit(_BPF_JEQ_K, SOCK_RAW, "trace", 0)
            p.emit(_BPF_JEQ_K, SOCK_PACKET, "trace", "allow")
        else:  # a pointer: traced unless both of its halves are 0 (NULL)
            p.emit(_BPF_LD_W_ABS, _arg_low(arg))
            p.emit(_BPF_JEQ_K, 0, 0, "trace")
            p.emit(_BPF_LD_W_ABS, _arg_high(arg))
            p.emit(_BPF_JEQ_K, 0, "allow", "trace")
    p.label("allow")
    p.emit(_BPF_RET_K, SECCOMP_RET_ALLOW)
    p.label("enosys")
    p.emit(_BPF_RET_K, SECCOMP_RET_ERRNO | errno.ENOSYS)
    p.label("trace")
    p.emit(_BPF_RET_K, SECCOMP_RET_TRACE)
    return p.assemble()


def build_hook_filter() -> bytes:
    """The filter added to a lifecycle hook's process (and so to all it starts): the table's
    hook rows, unconditionally. It stops at read-only opens, so that a hook's reads of
    credentials are seen while the rest of the build keeps the write-only filter. Stacked
    filters combine: a syscall is traced when either says so."""
    p = _Program()
    p.emit(_BPF_LD_W_ABS, _OFFSET_ARCH)
    p.emit(_BPF_JEQ_K, AUDIT_ARCH_X86_64, 0, "allow")  # the base filter traces foreign ABIs
    p.emit(_BPF_LD_W_ABS, _OFFSET_NR)
    for row in TABLE:
        if row.hook:
            p.emit(_BPF_JEQ_K, row.number, "trace", 0)
    p.label("allow")
    p.emit(_BPF_RET_K, SECCOMP_RET_ALLOW)
    p.label("trace")
    p.emit(_BPF_RET_K, SECCOMP_RET_TRACE)
    return p.assemble()


_PR_SET_NO_NEW_PRIVS = 38
_PR_SET_SECCOMP = 22
_SECCOMP_MODE_FILTER = 2


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def install_filter(program: bytes) -> None:
    """Install the filter in the calling process (the build's root, just before exec).

    Without CAP_SYS_ADMIN the kernel requires no_new_privs first; with it, we leave
    setuid programs (sudo in a build) working as they would untraced.
    """
    libc = ctypes.CDLL(None, use_errno=True)
    buffer = ctypes.create_string_buffer(program, len(program))
    fprog = _SockFprog(len(program) // 8, ctypes.cast(buffer, ctypes.c_void_p))
    if libc.prctl(_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER, ctypes.byref(fprog), 0, 0) == 0:
        return
    if ctypes.get_errno() != errno.EACCES:
        raise OSError(ctypes.get_errno(), "seccomp filter: " + os.strerror(ctypes.get_errno()))
    if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "no_new_privs: " + os.strerror(ctypes.get_errno()))
    if libc.prctl(_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER, ctypes.byref(fprog), 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "seccomp filter: " + os.strerror(ctypes.get_errno()))
