"""Pure syscall decoders: a syscall's arguments and a view of the tracee's memory in, a
record event or a decoded value out.

They never touch ptrace or /proc themselves: the tracer hands them a :class:`MemoryReader`
over the stopped tracee, and the unit tests a fake one over a dict, so that every decoder
can be checked without tracing anything.
"""

from __future__ import annotations

import os
from typing import Protocol

#: A syscall's six arguments as the kernel passed them (unsigned 64-bit).
Args = tuple[int, ...]

AT_FDCWD = -100
AT_EMPTY_PATH = 0x1000


class MemoryReader(Protocol):
    """What a decoder may ask of the stopped tracee: its memory, its cwd and its fds."""

    def read_bytes(self, address: int, size: int) -> bytes:
        """Up to ``size`` bytes at ``address`` (fewer if the mapping ends); b"" if unreadable."""
        ...

    def read_cstring(self, address: int) -> bytes:
        """The NUL-terminated string at ``address``, without its NUL."""
        ...

    def read_u64(self, address: int) -> int | None:
        """The little-endian u64 at ``address``, or None if unreadable."""
        ...

    def cwd(self) -> str:
        """The tracee's working directory, which relative paths are resolved against."""
        ...

    def fd_path(self, fd: int) -> str:
        """What the tracee's ``fd`` points at (a dirfd's directory, an fchmod's file)."""
        ...


def signed32(value: int) -> int:
    value &= 0xFFFFFFFF
    return value - (1 << 32) if value & 0x80000000 else value


def signed64(value: int) -> int:
    return value - (1 << 64) if value & (1 << 63) else value


def string(mem: MemoryReader, address: int) -> str:
    """A C string of the tracee as str, losslessly (undecodable bytes become lone surrogates)."""
    return mem.read_cstring(address).decode("utf-8", "surrogateescape")


def resolve(mem: MemoryReader, dirfd: int, path: str) -> str:
    """``path`` made absolute the way the kernel would: against ``dirfd`` (AT_FDCWD: the
    cwd); symlinks are not followed, the tracee may be about to create them."""
    if path.startswith("/"):
        return os.path.normpath(path)
    dirfd = signed32(dirfd)
    base = mem.cwd() if dirfd == AT_FDCWD else mem.fd_path(dirfd)
    return os.path.normpath(os.path.join(base, path)) if path else base


def path_at(mem: MemoryReader, dirfd: int, address: int) -> str:
    """The absolute path of the C string at ``address``, relative to ``dirfd``."""
    return resolve(mem, dirfd, string(mem, address))
