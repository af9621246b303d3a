"""Which written files are executables or scripts, and their SHA-256."""

from __future__ import annotations

import hashlib
import os
import stat

from ciwatch.dataclass import dataclass


@dataclass(frozen=True)
class ExecutableFile:
    path: str
    sha256: str
    size: int
    mode: int
    file_type: str


#: What a file's inspection depends on: when these are the same, so is its content's hash
#: (a write, even through a shared mapping, moves the mtime; a replacement, the inode).
FileState = tuple[int, int, int, int, int]


def file_state(info: os.stat_result) -> FileState:
    return (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns, info.st_mode)


#: What says a file is as it was when looked at, content included: the ctime moves with every
#: write and every change of times or mode, and no process can set it back (utimensat sets
#: the mtime, not the ctime).
PlainState = tuple[int, int, int, int, int, int]


def plain_state(info: os.stat_result) -> PlainState:
    return (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns, info.st_mode)


def inspect_executable(
    path: str, fd: int | None = None, info: os.stat_result | None = None
) -> tuple[ExecutableFile, FileState] | None:
    """The file's type and hash if it is an ELF, a ``#!`` script or has an execute bit, with
    the state it was read in; None for anything else (or a file that is gone). ``fd``: the
    file already open for reading (left open), else ``path`` is opened; ``info``: its fstat,
    if the caller has it."""
    # os-level calls: thousands of files are looked at when a build ends (npm writes one per
    # file of every package), and ciwatch returns only after.
    if fd is None:
        try:
            own = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)  # a FIFO must not block us
        except OSError:
            return None
        try:
            return inspect_executable(path, own)
        finally:
            os.close(own)
    try:
        if info is None:
            info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            return None
        head = os.pread(fd, 4, 0)
        if head.startswith(b"\x7fELF"):
            file_type = "elf"
        elif head.startswith(b"#!"):
            file_type = "script"
        elif info.st_mode & 0o111:
            file_type = "executable"
        else:
            return None
        digest = hashlib.sha256(head)
        offset = len(head)
        while chunk := os.pread(fd, 1 << 20, offset):
            digest.update(chunk)
            offset += len(chunk)
    except OSError:
        return None
    found = ExecutableFile(path, digest.hexdigest(), info.st_size, stat.S_IMODE(info.st_mode), file_type)
    return found, file_state(info)
