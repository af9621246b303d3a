"""The syscall table: one row per syscall the tracer acts on, as strace's syscallent is.

A row says everything about its syscall: its x86_64 number, its subject, when the seccomp
filter hands it to the tracer (:mod:`ciwatch.trace.seccomp` generates both filters from
the rows), how its arguments are decoded (a pure function of :mod:`ciwatch.trace.decode`)
and what the tracer does with the decoded value. Adding a syscall is adding a row.

The rows are in the order the base filter tests them: the most frequent first, since each
test costs every syscall that reaches it. Foreign ABIs (i386 via int 0x80, x32) are not
rows: the filter hands all of their syscalls to the tracer, which reports them by name.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import StrEnum
from typing import Any

from ciwatch.dataclass import dataclass
from ciwatch.trace.decode import Args, MemoryReader
from ciwatch.trace.decode import escapes as e
from ciwatch.trace.decode import files as f
from ciwatch.trace.decode import network as n
from ciwatch.trace.decode import processes as p
from ciwatch.trace.decode import signals as sig

#: Set in the number of an x32-ABI syscall (a foreign ABI for this tracer).
X32_SYSCALL_BIT = 0x40000000

#: open flags that make an open a write: O_WRONLY | O_RDWR | O_CREAT | O_TRUNC.
WRITE_OPEN_FLAGS = 0o1 | 0o2 | 0o100 | 0o1000

CLONE_UNTRACED = 0x00800000
CLONE_NEWNET = 0x40000000
AF_NETLINK = 16
AF_PACKET = 17
SOCK_RAW = 3
SOCK_PACKET = 10
#: The low bits of socket()'s type are the type; SOCK_NONBLOCK and SOCK_CLOEXEC sit above.
SOCK_TYPE_MASK = 0xF
PR_SET_SECCOMP = 22

# Syscalls that are not rows but that a thread stepped syscall by syscall is watched at
# (the sends on a connected DNS or UDP socket, which carry no address).
WRITE = 1
CLOSE = 3
WRITEV = 20
SENDTO = 44


class Subject(StrEnum):
    """What a syscall is about (strace's TRACE_FILE, TRACE_NETWORK, TRACE_PROCESS)."""

    FILE = "file"
    NETWORK = "network"
    PROCESS = "process"
    ANOMALY = "anomaly"
    """Syscalls that evade or defeat tracing: worth reporting whatever they do."""


class When(StrEnum):
    """The seccomp filter's test for handing a syscall to the tracer."""

    ALWAYS = "always"
    WRITE_FLAGS = "write_flags"
    """Argument ``arg`` (open flags) has one of WRITE_OPEN_FLAGS: read-only opens run on."""
    HAS_ADDRESS = "has_address"
    """Argument ``arg`` (a sockaddr pointer) is not NULL: sends on connected sockets run on."""
    ANY_BIT = "any_bit"
    """Argument ``arg`` has one of the bits of ``value`` (clone's and unshare's flags)."""
    EQUALS = "equals"
    """Argument ``arg`` is ``value`` (prctl's option: only PR_SET_SECCOMP stops)."""
    RAW_SOCKET = "raw_socket"
    """socket(): the family (argument 0) is AF_PACKET, or the type (argument 1) is SOCK_RAW
    or SOCK_PACKET in a family other than AF_NETLINK; ordinary TCP, UDP, unix and netlink
    sockets run on."""
    ENOSYS = "enosys"
    """Never reaches the tracer: the filter fails it with ENOSYS (clone3, whose flags live in
    memory that BPF can't read; libc then falls back to clone, whose flags it can test)."""


class Action(StrEnum):
    """What the tracer does with a row's decoded value (it maps each to one handler)."""

    FILE = "file"
    """A FileWrite: recorded, and the path remembered as written (an open without write
    flags, which only the hook filter stops at, is a read: recorded only for credentials)."""
    EXEC = "exec"
    """The path being exec'd: kept until the exec event says whether it succeeded."""
    IO_URING = "io_uring"
    """An anomaly that block mode may also refuse."""
    REACH = "reach"
    """A call that reaches into other processes' memory or descriptors: refused when aimed at
    ciwatch's own (:mod:`ciwatch.trace.selfguard`); a hook's read of another process's memory
    is recorded."""
    CONNECT = "connect"
    SENDTO = "sendto"
    SENDMSG = "sendmsg"
    RECVFROM = "recvfrom"
    RECVMSG = "recvmsg"
    SIGNAL = "signal"
    """A signal sent to another process: refused when it would reach ciwatch's own
    (:mod:`ciwatch.trace.selfguard`)."""
    PTRACE = "ptrace"
    """A ptrace call: an anomaly, refused when aimed at ciwatch's own processes."""
    ESCAPE = "escape"
    """An Escape (a way around the tracer or the proxy being set up), or None: recorded, and
    refused in block mode when it would blind ciwatch (:mod:`ciwatch.trace.escape`)."""


#: A decoder: (the tracee's tgid, the syscall's arguments, its memory) -> the decoded value.
Decoder = Callable[[int, Args, MemoryReader], Any]


@dataclass(frozen=True, slots=True)
class Syscall:
    name: str
    number: int
    subject: Subject
    when: When
    decode: Decoder
    action: Action
    arg: int = -1
    """The argument ``when`` tests (WRITE_FLAGS, HAS_ADDRESS, ANY_BIT, EQUALS)."""
    value: int = 0
    """The bits (ANY_BIT) or the value (EQUALS) it is tested against."""
    hook: bool = False
    """Also in the hook filter, unconditionally: a hook's read-only opens are seen too."""
    receives_only: bool = False
    """Only in the filter that traces receives (redirect mode: DNS replies from ciwatch's
    listener get the resolver's address back as their source)."""
    fanotify: bool = False
    """What it does is reported by fanotify (:mod:`ciwatch.trace.fanwatch`): not in the
    filter when file events come from there, so the writer never stops."""


_F, _N, _P, _A = Subject.FILE, Subject.NETWORK, Subject.PROCESS, Subject.ANOMALY
_ALWAYS = When.ALWAYS

TABLE: tuple[Syscall, ...] = (
    Syscall("execve", 59, _P, _ALWAYS, p.decode_execve, Action.EXEC),
    Syscall("execveat", 322, _P, _ALWAYS, p.decode_execveat, Action.EXEC),
    Syscall("connect", 42, _N, _ALWAYS, n.decode_connect, Action.CONNECT),
    Syscall("sendmsg", 46, _N, _ALWAYS, n.decode_sendmsg, Action.SENDMSG),
    Syscall("sendmmsg", 307, _N, _ALWAYS, n.decode_sendmmsg, Action.SENDMSG),
    Syscall("creat", 85, _F, _ALWAYS, f.decode_creat, Action.FILE, fanotify=True),
    Syscall("openat2", 437, _F, _ALWAYS, f.decode_openat2, Action.FILE, hook=True, fanotify=True),
    Syscall("rename", 82, _F, _ALWAYS, f.decode_rename, Action.FILE, fanotify=True),
    Syscall("renameat", 264, _F, _ALWAYS, f.decode_renameat, Action.FILE, fanotify=True),
    Syscall("renameat2", 316, _F, _ALWAYS, f.decode_renameat, Action.FILE, fanotify=True),
    Syscall("link", 86, _F, _ALWAYS, f.decode_link, Action.FILE),
    Syscall("linkat", 265, _F, _ALWAYS, f.decode_linkat, Action.FILE),
    Syscall("symlink", 88, _F, _ALWAYS, f.decode_symlink, Action.FILE),
    Syscall("symlinkat", 266, _F, _ALWAYS, f.decode_symlinkat, Action.FILE),
    Syscall("chmod", 90, _F, _ALWAYS, f.decode_chmod, Action.FILE),
    Syscall("fchmod", 91, _F, _ALWAYS, f.decode_fchmod, Action.FILE),
    Syscall("fchmodat", 268, _F, _ALWAYS, f.decode_fchmodat, Action.FILE),
    Syscall("fchmodat2", 452, _F, _ALWAYS, f.decode_fchmodat, Action.FILE),
    Syscall("unlink", 87, _F, _ALWAYS, f.decode_unlink, Action.FILE, fanotify=True),
    Syscall("unlinkat", 263, _F, _ALWAYS, f.decode_unlinkat, Action.FILE, fanotify=True),
    Syscall("truncate", 76, _F, _ALWAYS, f.decode_truncate, Action.FILE),
    Syscall("memfd_create", 319, _F, _ALWAYS, f.decode_memfd_create, Action.FILE),
    Syscall("io_uring_setup", 425, _A, _ALWAYS, p.decode_io_uring_setup, Action.IO_URING),
    Syscall("ptrace", 101, _A, _ALWAYS, sig.decode_ptrace_call, Action.PTRACE),
    Syscall("seccomp", 317, _A, _ALWAYS, e.decode_seccomp, Action.ESCAPE),
    Syscall("setns", 308, _A, _ALWAYS, e.decode_setns, Action.ESCAPE),
    Syscall("open", 2, _F, When.WRITE_FLAGS, f.decode_open, Action.FILE, arg=1, hook=True, fanotify=True),
    Syscall("openat", 257, _F, When.WRITE_FLAGS, f.decode_openat, Action.FILE, arg=2, hook=True, fanotify=True),
    Syscall("sendto", 44, _N, When.HAS_ADDRESS, n.decode_sendto, Action.SENDTO, arg=4),
    Syscall("recvmsg", 47, _N, _ALWAYS, n.decode_recvmsg, Action.RECVMSG, receives_only=True),
    Syscall("recvfrom", 45, _N, When.HAS_ADDRESS, n.decode_recvfrom, Action.RECVFROM, arg=4, receives_only=True),
    Syscall("socket", 41, _A, When.RAW_SOCKET, e.decode_socket, Action.ESCAPE),
    Syscall("clone", 56, _A, When.ANY_BIT, e.decode_clone, Action.ESCAPE, arg=0, value=CLONE_UNTRACED | CLONE_NEWNET),
    Syscall("unshare", 272, _A, When.ANY_BIT, e.decode_unshare, Action.ESCAPE, arg=0, value=CLONE_NEWNET),
    Syscall("prctl", 157, _A, When.EQUALS, e.decode_prctl, Action.ESCAPE, arg=0, value=PR_SET_SECCOMP),
    Syscall("kill", 62, _P, _ALWAYS, sig.decode_kill, Action.SIGNAL),
    Syscall("tgkill", 234, _P, _ALWAYS, sig.decode_tgkill, Action.SIGNAL),
    Syscall("tkill", 200, _P, _ALWAYS, sig.decode_tkill, Action.SIGNAL),
    Syscall("rt_sigqueueinfo", 129, _P, _ALWAYS, sig.decode_rt_sigqueueinfo, Action.SIGNAL),
    Syscall("rt_tgsigqueueinfo", 297, _P, _ALWAYS, sig.decode_rt_tgsigqueueinfo, Action.SIGNAL),
    Syscall("pidfd_send_signal", 424, _P, _ALWAYS, sig.decode_pidfd_send_signal, Action.SIGNAL),
    Syscall("clone3", 435, _P, When.ENOSYS, e.decode_nothing, Action.ESCAPE),
    # Rare in builds, so stopping at them costs nothing; each can reach ciwatch's own processes.
    Syscall("process_vm_readv", 310, _P, _ALWAYS, sig.decode_process_vm_readv, Action.REACH),
    Syscall("process_vm_writev", 311, _P, _ALWAYS, sig.decode_process_vm_writev, Action.REACH),
    Syscall("kcmp", 312, _P, _ALWAYS, sig.decode_kcmp, Action.REACH),
    Syscall("pidfd_getfd", 438, _P, _ALWAYS, sig.decode_pidfd_getfd, Action.REACH),
    Syscall("process_madvise", 440, _P, _ALWAYS, sig.decode_process_madvise, Action.REACH),
)

BY_NUMBER: dict[int, Syscall] = {row.number: row for row in TABLE}
assert len(BY_NUMBER) == len(TABLE), "a syscall has two rows"
assert SENDTO in BY_NUMBER


def name_x86_64(number: int) -> str:
    row = BY_NUMBER.get(number)
    if row is not None:
        return row.name
    # Imported when a syscall outside the table is named (an anomaly): python-ptrace's syscall
    # package (its prototypes, argument formatting) costs ~10 ms at every start otherwise.
    from ptrace.syscall.linux import x86_64

    return str(x86_64.SYSCALL_NAMES.get(number) or f"syscall_{number}")


#: i386 syscalls newer than python-ptrace's table that the tracer acts on in x86_64.
_I386_NEWER = {
    345: "sendmmsg",
    346: "setns",
    353: "renameat2",
    354: "seccomp",
    356: "memfd_create",
    358: "execveat",
    359: "socket",
    362: "connect",
    369: "sendto",
    370: "sendmsg",
    425: "io_uring_setup",
    435: "clone3",
    437: "openat2",
    424: "pidfd_send_signal",
    452: "fchmodat2",
    347: "process_vm_readv",
    348: "process_vm_writev",
    349: "kcmp",
    438: "pidfd_getfd",
    440: "process_madvise",
}


def name_i386(number: int) -> str:
    from ptrace.syscall.linux import i386  # as in name_x86_64

    return _I386_NEWER.get(number) or str(i386.SYSCALL_NAMES.get(number, f"syscall_{number}"))


#: The syscalls that a foreign ABI must not make in block mode: the table's (but receives,
#: which reveal nothing), by name, and i386's socketcall, which multiplexes the socket calls.
ACTED_ON = frozenset({row.name for row in TABLE if not row.receives_only} | {"socketcall"})
