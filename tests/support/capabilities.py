"""Starting a test's stand-in process with no capabilities, as an unprivileged user's."""

from __future__ import annotations

import ctypes
import errno

_PR_CAPBSET_DROP = 24
_SYS_CAPSET = 126
_LINUX_CAPABILITY_VERSION_3 = 0x20080522
_LAST_CAPABILITY = 63


def drop_all_capabilities() -> None:
    """A preexec_fn: the process stays root by uid, with a root user's files, but holds no
    privilege, even after it execs (an exec as root would give it the bounding set again)."""
    libc = ctypes.CDLL(None, use_errno=True)
    for capability in range(_LAST_CAPABILITY + 1):
        if libc.prctl(_PR_CAPBSET_DROP, capability, 0, 0, 0) != 0 and ctypes.get_errno() != errno.EINVAL:
            raise OSError(ctypes.get_errno(), "PR_CAPBSET_DROP")
    header = (ctypes.c_uint32 * 2)(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (ctypes.c_uint32 * 6)()  # two words of (effective, permitted, inheritable), all 0
    if libc.syscall(_SYS_CAPSET, header, data) != 0:
        raise OSError(ctypes.get_errno(), "capset")
