"""Decoders of the syscalls that change files: each gives the FileWrite to record.

Every path is canonicalised here, at the syscall's entry, before any rule sees it: an alias
(``/proc/self/root/...``, ``/proc/PID/cwd/...``, ``/proc/self/fd/N/..``, a symlinked
directory, ``..`` chains, a dirfd) names the file it really is, and the record keeps the
spelling in ``as_written``. The last component is followed where the syscall follows it.

An open's event carries its flags: the tracer tells a write (recorded) from a read-only
open (which only a hook's processes stop at, and which matters only for credentials).
"""

from __future__ import annotations

from ciwatch.record.events import FileWrite
from ciwatch.record.vocabulary import FileOp
from ciwatch.trace.decode import AT_FDCWD, Args, MemoryReader, canonical_at, signed32, string

_O_CREAT = 0o100
_O_EXCL = 0o200
_O_NOFOLLOW = 0o400000
_AT_SYMLINK_FOLLOW = 0x400


def _open_follows(flags: int) -> bool:
    """An open follows a final symlink unless O_NOFOLLOW, or O_CREAT|O_EXCL (which fails on one)."""
    return not flags & _O_NOFOLLOW and (flags & (_O_CREAT | _O_EXCL)) != (_O_CREAT | _O_EXCL)


def _open(pid: int, mem: MemoryReader, dirfd: int, address: int, flags: int) -> FileWrite:
    path, written = canonical_at(mem, dirfd, address, _open_follows(flags))
    return FileWrite(pid=pid, op=FileOp.OPEN, path=path, flags=flags, as_written=written)


def decode_open(pid: int, args: Args, mem: MemoryReader) -> FileWrite:
    return _open(pid, mem, AT_FDCWD, args[0], args[1] & 0xFFFFFFFF)


def decode_openat(pid: int, args: Args, mem: MemoryReader) -> FileWrite:
    return _open(pid, mem, args[0], args[1], args[2] & 0xFFFFFFFF)


def decode_openat2(pid: int, args: Args, mem: MemoryReader) -> FileWrite:
    # openat2's flags are the first field of the struct open_how it points at.
    return _open(pid, mem, args[0], args[1], (mem.read_u64(args[2]) or 0) & 0xFFFFFFFF)


def decode_creat(pid: int, args: Args, mem: MemoryReader) -> FileWrite:
    path, written = canonical_at(mem, AT_FDCWD, args[0], True)
    return FileWrite(pid=pid, op=FileOp.CREAT, path=path, flags=args[1] & 0o7777, as_written=written)


def _two(
    pid: int, op: FileOp, mem: MemoryReader, old: tuple[int, int], new: tuple[int, int], follow_old: bool = False
) -> FileWrite:
    """A rename or link: neither end's last component is followed (linkat's AT_SYMLINK_FOLLOW
    aside), both ends are canonical."""
    path, written = canonical_at(mem, old[0], old[1], follow_old)
    target, target_written = canonical_at(mem, new[0], new[1], False)
    return FileWrite(pid=pid, op=op, path=path, target=target, as_written=written, target_as_written=target_written)


def decode_rename(pid: int, args: Args, mem: MemoryReader) -> FileWrite:
    return _two(pid, FileOp.RENAME, mem, (AT_FDCWD, args[0]), (AT_FDCWD, args[1]))


def decode_renameat(pid: int, args: Args, mem: MemoryReader) -> FileWrite:
    """renameat and renameat2 (whose flags don't change what is renamed to what)."""
    return _two(pid, FileOp.RENAME, mem, (args[0], args[1]), (args[2], args[3]))


def decode_link(pid: int, args: Args, mem: MemoryReader) -> FileWrite:
    return _two(pid, FileOp.LINK, mem, (AT_FDCWD, args[0]), (AT_FDCWD, args[1]))


def decode_linkat(pid: int, args: Args, mem: MemoryReader) -> FileWrite:
    follow = bool(args[4] & _AT_SYMLINK_FOLLOW)
    return _two(pid, FileOp.LINK, mem, (args[0], args[1]), (args[2], args[3]), follow)


def decode_symlink(pid: int, args: Args, mem: MemoryReader) -> FileWrite:
    # The target is recorded as written: it is text, resolved only when the link is followed.
    link, written = canonical_at(mem, AT_FDCWD, args[1], False)
    return FileWrite(pid=pid, op=FileOp.SYMLINK, path=link, target=string(mem, args[0]), as_written=written)


def decode_symlinkat(pid: int, args: Args, mem: MemoryReader) -> FileWrite:
    link, written = canonical_at(mem, args[1], args[2], False)
    return FileWrite(pid=pid, op=FileOp.SYMLINK, path=link, target=string(mem, args[0]), as_written=written)


def decode_chmod(pid: int, args: Args, mem: MemoryReader) -> FileWrite:
    path, written = canonical_at(mem, AT_FDCWD, args[0], True)
    return FileWrite(pid=pid, op=FileOp.CHMOD, path=path, flags=args[1] & 0o7777, as_written=written)


def decode_fchmod(pid: int, args: Args, mem: MemoryReader) -> FileWrite:
    path = mem.fd_path(signed32(args[0]))
    return FileWrite(pid=pid, op=FileOp.CHMOD, path=path, flags=args[1] & 0o7777)


def decode_fchmodat(pid: int, args: Args, mem: MemoryReader) -> FileWrite:
    """fchmodat and fchmodat2. Followed as fchmodat does: fchmodat has no fourth argument to
    read, and fchmodat2's AT_SYMLINK_NOFOLLOW fails with EOPNOTSUPP on a link anyway."""
    path, written = canonical_at(mem, args[0], args[1], True)
    return FileWrite(pid=pid, op=FileOp.CHMOD, path=path, flags=args[2] & 0o7777, as_written=written)


def decode_unlink(pid: int, args: Args, mem: MemoryReader) -> FileWrite:
    path, written = canonical_at(mem, AT_FDCWD, args[0], False)
    return FileWrite(pid=pid, op=FileOp.UNLINK, path=path, as_written=written)


def decode_unlinkat(pid: int, args: Args, mem: MemoryReader) -> FileWrite:
    path, written = canonical_at(mem, args[0], args[1], False)
    return FileWrite(pid=pid, op=FileOp.UNLINK, path=path, flags=args[2] & 0xFFFFFFFF, as_written=written)


def decode_truncate(pid: int, args: Args, mem: MemoryReader) -> FileWrite:
    # truncate(2) follows a final symlink (ftruncate needs a write-open's fd: recorded there).
    path, written = canonical_at(mem, AT_FDCWD, args[0], True)
    return FileWrite(pid=pid, op=FileOp.TRUNCATE, path=path, as_written=written)


def decode_memfd_create(pid: int, args: Args, mem: MemoryReader) -> FileWrite:
    # An anonymous file: a memfd that is later exec'd runs code that never touched the disk.
    path = "memfd:" + string(mem, args[0])
    return FileWrite(pid=pid, op=FileOp.MEMFD, path=path, flags=args[1] & 0xFFFFFFFF)
