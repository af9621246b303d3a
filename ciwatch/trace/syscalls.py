"""x86_64 syscall numbers the tracer acts on, and names for the record."""

from __future__ import annotations

from ptrace.syscall.linux import i386, x86_64

READ = 0
WRITE = 1
OPEN = 2
CLOSE = 3
SENDTO = 44
RECVFROM = 45
RECVMSG = 47
SENDMSG = 46
CONNECT = 42
EXECVE = 59
CREAT = 85
LINK = 86
UNLINK = 87
SYMLINK = 88
RENAME = 82
CHMOD = 90
FCHMOD = 91
PTRACE = 101
UNLINKAT = 263
RENAMEAT = 264
LINKAT = 265
SYMLINKAT = 266
FCHMODAT = 268
OPENAT = 257
SENDMMSG = 307
PROCESS_VM_READV = 310
RENAMEAT2 = 316
MEMFD_CREATE = 319
EXECVEAT = 322
IO_URING_SETUP = 425
OPENAT2 = 437
FCHMODAT2 = 452
WRITEV = 20

#: Set in the number of an x32-ABI syscall (a foreign ABI for this tracer).
X32_SYSCALL_BIT = 0x40000000

#: open flags that make an open a write: O_WRONLY | O_RDWR | O_CREAT | O_TRUNC.
WRITE_OPEN_FLAGS = 0o1 | 0o2 | 0o100 | 0o1000

#: Syscalls the seccomp filter always hands to the tracer.
ALWAYS_TRACED = (
    EXECVE,
    EXECVEAT,
    CONNECT,
    SENDMSG,
    SENDMMSG,
    CREAT,
    OPENAT2,
    RENAME,
    RENAMEAT,
    RENAMEAT2,
    LINK,
    LINKAT,
    SYMLINK,
    SYMLINKAT,
    CHMOD,
    FCHMOD,
    FCHMODAT,
    FCHMODAT2,
    UNLINK,
    UNLINKAT,
    MEMFD_CREATE,
    IO_URING_SETUP,
    PTRACE,
)

_EXTRA_NAMES = {FCHMODAT2: "fchmodat2"}


def name_x86_64(number: int) -> str:
    return str(x86_64.SYSCALL_NAMES.get(number) or _EXTRA_NAMES.get(number) or f"syscall_{number}")


def name_i386(number: int) -> str:
    return str(i386.SYSCALL_NAMES.get(number, f"syscall_{number}"))
