"""Decoders of the syscalls that change files: each gives the FileWrite to record.

An open's event carries its flags: the tracer tells a write (recorded) from a read-only
open (which only a hook's processes stop at, and which matters only for credentials).
"""

from __future__ import annotations

from ciwatch.record.events import FileOp, FileWrite
from ciwatch.trace.decode import AT_FDCWD, Args, MemoryReader, path_at, signed32, string


def decode_open(pid: int, args: Args, mem: MemoryReader) -> FileWrite:
    path = path_at(mem, AT_FDCWD, args[0])
    return FileWrite(pid=pid, op=FileOp.OPEN, path=path, flags=args[1] & 0xFFFFFFFF)


def decode_openat(pid: int, args: Args, mem: MemoryReader) -> FileWrite:
    path = path_at(mem, args[0], args[1])
    return FileWrite(pid=pid, op=FileOp.OPEN, path=path, flags=args[2] & 0xFFFFFFFF)


def decode_openat2(pid: int, args: Args, mem: MemoryReader) -> FileWrite:
    # openat2's flags are the first field of the struct open_how it points at.
    flags = (mem.read_u64(args[2]) or 0) & 0xFFFFFFFF
    return FileWrite(pid=pid, op=FileOp.OPEN, path=path_at(mem, args[0], args[1]), flags=flags)


def decode_creat(pid: int, args: Args, mem: MemoryReader) -> FileWrite:
    path = path_at(mem, AT_FDCWD, args[0])
    return FileWrite(pid=pid, op=FileOp.CREAT, path=path, flags=args[1] & 0o7777)


def decode_rename(pid: int, args: Args, mem: MemoryReader) -> FileWrite:
    old = path_at(mem, AT_FDCWD, args[0])
    return FileWrite(pid=pid, op=FileOp.RENAME, path=old, target=path_at(mem, AT_FDCWD, args[1]))


def decode_renameat(pid: int, args: Args, mem: MemoryReader) -> FileWrite:
    """renameat and renameat2 (whose flags don't change what is renamed to what)."""
    old = path_at(mem, args[0], args[1])
    return FileWrite(pid=pid, op=FileOp.RENAME, path=old, target=path_at(mem, args[2], args[3]))


def decode_link(pid: int, args: Args, mem: MemoryReader) -> FileWrite:
    old = path_at(mem, AT_FDCWD, args[0])
    return FileWrite(pid=pid, op=FileOp.LINK, path=old, target=path_at(mem, AT_FDCWD, args[1]))


def decode_linkat(pid: int, args: Args, mem: MemoryReader) -> FileWrite:
    old = path_at(mem, args[0], args[1])
    return FileWrite(pid=pid, op=FileOp.LINK, path=old, target=path_at(mem, args[2], args[3]))


def decode_symlink(pid: int, args: Args, mem: MemoryReader) -> FileWrite:
    # The target is recorded as written: it is text, resolved only when the link is followed.
    link = path_at(mem, AT_FDCWD, args[1])
    return FileWrite(pid=pid, op=FileOp.SYMLINK, path=link, target=string(mem, args[0]))


def decode_symlinkat(pid: int, args: Args, mem: MemoryReader) -> FileWrite:
    link = path_at(mem, args[1], args[2])
    return FileWrite(pid=pid, op=FileOp.SYMLINK, path=link, target=string(mem, args[0]))


def decode_chmod(pid: int, args: Args, mem: MemoryReader) -> FileWrite:
    path = path_at(mem, AT_FDCWD, args[0])
    return FileWrite(pid=pid, op=FileOp.CHMOD, path=path, flags=args[1] & 0o7777)


def decode_fchmod(pid: int, args: Args, mem: MemoryReader) -> FileWrite:
    path = mem.fd_path(signed32(args[0]))
    return FileWrite(pid=pid, op=FileOp.CHMOD, path=path, flags=args[1] & 0o7777)


def decode_fchmodat(pid: int, args: Args, mem: MemoryReader) -> FileWrite:
    """fchmodat and fchmodat2 (whose flags only choose whether a final symlink is followed)."""
    path = path_at(mem, args[0], args[1])
    return FileWrite(pid=pid, op=FileOp.CHMOD, path=path, flags=args[2] & 0o7777)


def decode_unlink(pid: int, args: Args, mem: MemoryReader) -> FileWrite:
    return FileWrite(pid=pid, op=FileOp.UNLINK, path=path_at(mem, AT_FDCWD, args[0]))


def decode_unlinkat(pid: int, args: Args, mem: MemoryReader) -> FileWrite:
    path = path_at(mem, args[0], args[1])
    return FileWrite(pid=pid, op=FileOp.UNLINK, path=path, flags=args[2] & 0xFFFFFFFF)


def decode_memfd_create(pid: int, args: Args, mem: MemoryReader) -> FileWrite:
    # An anonymous file: a memfd that is later exec'd runs code that never touched the disk.
    path = "memfd:" + string(mem, args[0])
    return FileWrite(pid=pid, op=FileOp.MEMFD, path=path, flags=args[1] & 0xFFFFFFFF)
