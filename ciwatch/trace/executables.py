"""Which written files are executables or scripts, and their SHA-256."""

from __future__ import annotations

import hashlib
import os
import stat
from dataclasses import dataclass


@dataclass(frozen=True)
class ExecutableFile:
    path: str
    sha256: str
    size: int
    mode: int
    file_type: str


def inspect_executable(path: str) -> ExecutableFile | None:
    """The file's type and hash if it is an ELF, a ``#!`` script or has an execute bit;
    None for anything else (or a file that is gone)."""
    # os-level calls: thousands of files are looked at when a build ends (npm writes one per
    # file of every package), and ciwatch returns only after.
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)  # a FIFO must not block us
    except OSError:
        return None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            return None
        head = os.read(fd, 4)
        if head.startswith(b"\x7fELF"):
            file_type = "elf"
        elif head.startswith(b"#!"):
            file_type = "script"
        elif info.st_mode & 0o111:
            file_type = "executable"
        else:
            return None
        digest = hashlib.sha256(head)
        while chunk := os.read(fd, 1 << 20):
            digest.update(chunk)
    except OSError:
        return None
    finally:
        os.close(fd)
    return ExecutableFile(path, digest.hexdigest(), info.st_size, stat.S_IMODE(info.st_mode), file_type)
