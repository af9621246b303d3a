"""Pure syscall decoders: a syscall's arguments and a view of the tracee's memory in, a
record event or a decoded value out.

They never touch ptrace or /proc themselves: the tracer hands them a :class:`MemoryReader`
over the stopped tracee, and the unit tests a fake one over a dict, so that every decoder
can be checked without tracing anything.
"""

from __future__ import annotations

import os
from collections.abc import Callable
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

    def canonical(self, path: str, follow: bool) -> str:
        """The absolute ``path`` (joined, not normalised: ``..`` after a symlink is not the
        textual parent) as the tracee's kernel would resolve it: ``/proc/self``, magic links
        (``/proc/PID/root|cwd|fd/N``), symlinks in every directory, and the last component too
        when ``follow`` (the syscall follows it)."""
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


def canonical_at(mem: MemoryReader, dirfd: int, address: int, follow: bool) -> tuple[str, str | None]:
    """The C string at ``address`` as the file it names (see :meth:`MemoryReader.canonical`),
    and the string as written when that differs (None otherwise): rules judge what a path is,
    the record keeps how it was spelled."""
    written = string(mem, address)
    if written.startswith("/"):
        joined = written
    else:
        dirfd = signed32(dirfd)
        base = mem.cwd() if dirfd == AT_FDCWD else mem.fd_path(dirfd)
        if not base.startswith("/"):  # a dirfd that is no directory (or gone): the call fails
            return resolve(mem, dirfd, written), None
        joined = f"{base}/{written}" if written else base
    path = mem.canonical(joined, follow)
    return path, (written if written != path else None)


#: What a readlink of a path gives: the link's text, or None when it is no symlink (or absent).
Readlink = Callable[[str], "str | None"]

#: Symlink hops before giving up, as the kernel's MAXSYMLINKS.
_MAX_HOPS = 40


def canonicalise(path: str, readlink: Readlink, pid: int, tid: int, follow: bool) -> str:
    """``path`` (absolute) resolved component by component, as the kernel walks it in the
    process ``pid`` (thread ``tid``): ``/proc/self`` and ``/proc/thread-self`` are that
    process's, every symlink met in a directory is followed (the last component only when
    ``follow``), ``..`` goes up from where the walk really is, not from the text before it.

    The slow path of :meth:`MemoryReader.canonical`, and all of it in the unit tests:
    ``readlink`` reads a link (a magic link of /proc gives the path of what it points at)."""
    pending = [part for part in reversed(path.split("/")) if part]
    current = ""
    hops = 0
    while pending:
        part = pending.pop()
        if part == ".":
            continue
        if part == "..":
            current = current.rpartition("/")[0]
            continue
        candidate = f"{current}/{part}"
        if candidate == "/proc/self":
            current = f"/proc/{pid}"
            continue
        if candidate == "/proc/thread-self":
            current = f"/proc/{pid}/task/{tid}"
            continue
        target = readlink(candidate) if (pending or follow) else None
        if not target or hops >= _MAX_HOPS or (not target.startswith("/") and candidate.startswith("/proc/")):
            # Not a link (or absent); a loop, which the kernel refuses with ELOOP; or a magic
            # link to something that is no path (socket:[N], pipe:[N], anon_inode:...).
            current = candidate
            continue
        hops += 1
        if target.startswith("/"):
            current = ""
        pending.extend(part for part in reversed(target.split("/")) if part)
    return current or "/"
