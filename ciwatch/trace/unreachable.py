"""The build can't reach into ciwatch's processes: their memory, descriptors and /proc files.

A build runs as ciwatch's user (often root). The self-guard (:mod:`ciwatch.trace.selfguard`)
refuses the signals and ptrace calls it aims at ciwatch, but a process of the same user has
many more ways in, all guarded in the kernel by one check (``ptrace_may_access``):
process_vm_readv/writev, /proc/PID/mem and /proc/PID/task/TID/mem, /proc/PID/fd/N,
pidfd_getfd, kcmp, perf_event_open... A path check can't close that class (any spelling of a
/proc path; with fanotify, opens never stop at all), so ciwatch makes the kernel refuse it:

- ciwatch's own processes (the front and the tracer, whose threads run the proxy) are not
  dumpable: their /proc files belong to root, and every ptrace-mode access to them needs
  CAP_SYS_PTRACE, even from a process of their own user;
- the build's root gives up CAP_SYS_PTRACE before it execs, from every set (bounding included,
  so no setuid program or file capability in the build gets it back). Nothing under ciwatch
  could use it: every build process already has ciwatch as its tracer.

Each route then fails in the kernel with EPERM or EACCES, whatever the syscall or the path.
"""

from __future__ import annotations

import ctypes
import errno
import os

_PR_SET_DUMPABLE = 4
_PR_CAPBSET_DROP = 24
_PR_CAP_AMBIENT = 47
_PR_CAP_AMBIENT_LOWER = 3
_SYS_CAPGET = 125
_SYS_CAPSET = 126
_LINUX_CAPABILITY_VERSION_3 = 0x20080522
CAP_SYS_PTRACE = 19

_libc = ctypes.CDLL(None, use_errno=True)


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


def _prctl(option: int, arg: int, arg3: int = 0) -> int:
    """0, or the errno of the failure."""
    if _libc.prctl(option, arg, arg3, 0, 0) == 0:
        return 0
    return ctypes.get_errno()


def make_unreachable() -> None:
    """Make the calling process (and what it forks, until they exec) not dumpable: only a
    holder of CAP_SYS_PTRACE may then read or write its memory or open its /proc files."""
    code = _prctl(_PR_SET_DUMPABLE, 0)
    if code:
        raise OSError(code, "PR_SET_DUMPABLE: " + os.strerror(code))


def make_reachable() -> None:
    """In a child forked from an unreachable process, before its tracer seizes it: a tracer
    without CAP_SYS_PTRACE (ciwatch run as a user) can't seize a process that isn't dumpable.
    Its exec would make it dumpable anyway; until then it holds only a copy of ciwatch's
    memory taken before the build existed."""
    code = _prctl(_PR_SET_DUMPABLE, 1)
    if code:
        raise OSError(code, "PR_SET_DUMPABLE: " + os.strerror(code))


def drop_ptrace_capability() -> None:
    """Give up CAP_SYS_PTRACE in every set, before exec: the build's root, as root.

    The bounding set needs CAP_SETPCAP to change; a process without it is not root, and
    under the no_new_privs the seccomp filter then needs, nothing it runs gains a capability."""
    code = _prctl(_PR_CAPBSET_DROP, CAP_SYS_PTRACE)
    if code not in (0, errno.EPERM, errno.EINVAL):
        raise OSError(code, "PR_CAPBSET_DROP: " + os.strerror(code))
    _prctl(_PR_CAP_AMBIENT, _PR_CAP_AMBIENT_LOWER, CAP_SYS_PTRACE)  # EINVAL on old kernels: none then
    header = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    if _libc.syscall(_SYS_CAPGET, ctypes.byref(header), data) != 0:
        code = ctypes.get_errno()
        raise OSError(code, "capget: " + os.strerror(code))
    mask = ~(1 << CAP_SYS_PTRACE) & 0xFFFFFFFF  # CAP_SYS_PTRACE is in the first word
    data[0].effective &= mask
    data[0].permitted &= mask
    data[0].inheritable &= mask
    if _libc.syscall(_SYS_CAPSET, ctypes.byref(header), data) != 0:
        code = ctypes.get_errno()
        raise OSError(code, "capset: " + os.strerror(code))
