"""Decoders of the syscalls about processes: exec, and the ones that evade or defeat
tracing (reported as anomalies) or read another process's memory."""

from __future__ import annotations

from ciwatch.record.events import Anomaly, FileRead
from ciwatch.record.vocabulary import AnomalyKind, ReadHow
from ciwatch.trace.decode import (
    AT_EMPTY_PATH,
    AT_FDCWD,
    Args,
    MemoryReader,
    path_at,
    resolve,
    signed32,
    signed64,
    string,
)


def decode_execve(pid: int, args: Args, mem: MemoryReader) -> str:
    """The path being exec'd, as the caller named it (the exec event, if the exec succeeds,
    gives the binary it really ran)."""
    return path_at(mem, AT_FDCWD, args[0])


def decode_execveat(pid: int, args: Args, mem: MemoryReader) -> str:
    path = string(mem, args[1])
    if not path and args[4] & AT_EMPTY_PATH:
        return mem.fd_path(signed32(args[0]))  # fexecve: the fd is the program
    return resolve(mem, args[0], path)


def decode_process_vm_readv(pid: int, args: Args, mem: MemoryReader) -> FileRead | None:
    """A read of another process's memory (a hook scraping secrets from a sibling), or None
    for a process reading itself."""
    target = signed32(args[0])
    if target == pid:
        return None
    return FileRead(pid=pid, path=f"/proc/{target}/mem", how=ReadHow.PROCESS_VM_READV)


def decode_ptrace(pid: int, args: Args, mem: MemoryReader) -> Anomaly:
    detail = f"ptrace(request={signed64(args[0])}, pid={signed32(args[1])})"
    return Anomaly(pid=pid, anomaly=AnomalyKind.PTRACE, detail=detail)


_IO_URING_DETAIL = "io_uring_setup: its I/O bypasses syscall tracing"


def decode_io_uring_setup(pid: int, args: Args, mem: MemoryReader) -> Anomaly:
    return Anomaly(pid=pid, anomaly=AnomalyKind.IO_URING, detail=_IO_URING_DETAIL)
