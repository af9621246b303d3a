"""The C library for python-ptrace, without ``ldconfig``.

python-ptrace loads libc with ``ctypes.util.find_library('c')``, which on Linux runs
``/sbin/ldconfig -p`` (and may fall back to gcc) at every start of ciwatch: a fork, an exec
and ~10 ms of CPU for a name that the dynamic linker resolves itself. Its module
``ptrace.ctypes_libc`` is put in place here first, with the same two names, loaded by soname.
"""

from __future__ import annotations

import ctypes
import sys
import types

#: glibc's soname (the name the dynamic linker knows; musl's libc answers to "libc.so").
_SONAMES = ("libc.so.6", "libc.so")


def install() -> None:
    """Give python-ptrace its libc before anything imports ``ptrace.binding``."""
    if "ptrace.ctypes_libc" in sys.modules:
        return
    for soname in _SONAMES:
        try:
            libc = ctypes.CDLL(soname, use_errno=True)
        except OSError:
            continue
        module = types.ModuleType("ptrace.ctypes_libc", __doc__)
        module.LIBC_FILENAME = soname  # type: ignore[attr-defined]
        module.libc = libc  # type: ignore[attr-defined]
        sys.modules["ptrace.ctypes_libc"] = module
        return
    # Neither name: python-ptrace's own search (ldconfig) decides.


install()
