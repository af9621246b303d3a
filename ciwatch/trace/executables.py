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
    try:
        with open(path, "rb", buffering=0) as stream:
            info = os.fstat(stream.fileno())
            if not stat.S_ISREG(info.st_mode):
                return None
            head = stream.read(4)
            if head.startswith(b"\x7fELF"):
                file_type = "elf"
            elif head.startswith(b"#!"):
                file_type = "script"
            elif info.st_mode & 0o111:
                file_type = "executable"
            else:
                return None
            digest = hashlib.sha256(head)
            while chunk := stream.read(1 << 20):
                digest.update(chunk)
    except OSError:
        return None
    return ExecutableFile(path, digest.hexdigest(), info.st_size, stat.S_IMODE(info.st_mode), file_type)
