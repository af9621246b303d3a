"""Reading processes from /proc, for tests that kill ciwatch and look for what it left behind."""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class RunProcess:
    pid: int
    parent: int
    start_time: int
    netns: str
    command: bytes


def _pids() -> list[int]:
    return [int(name) for name in os.listdir("/proc") if name.isdigit()]


def _stat_fields(pid: int) -> list[str] | None:
    """Fields 3 and on of /proc/PID/stat (after the command name, which may hold spaces)."""
    try:
        with open(f"/proc/{pid}/stat") as stream:
            return stream.read().rpartition(")")[2].split()
    except OSError:
        return None


def parent_pid(pid: int) -> int | None:
    fields = _stat_fields(pid)
    return int(fields[1]) if fields else None


def running(pid: int) -> bool:
    """The process exists and is not a zombie (a zombie runs nothing and holds nothing)."""
    fields = _stat_fields(pid)
    return fields is not None and fields[0] not in ("Z", "X")


def child_pids(pid: int) -> list[int]:
    return [child for child in _pids() if parent_pid(child) == pid and running(child)]


def read_cmdline(pid: int) -> bytes | None:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as stream:
            return stream.read()
    except OSError:
        return None


def _status_field(pid: int, name: str) -> str | None:
    try:
        with open(f"/proc/{pid}/status") as stream:
            for line in stream:
                if line.startswith(name + ":"):
                    return line.split()[1]
    except OSError:
        pass
    return None


def tracer_of(pid: int) -> int | None:
    """The pid tracing ``pid`` (0 when untraced)."""
    value = _status_field(pid, "TracerPid")
    return int(value) if value is not None else None


def ignores(pid: int, signum: int) -> bool | None:
    """Whether ``pid`` ignores signal ``signum`` (SigIgn), None when it is gone."""
    value = _status_field(pid, "SigIgn")
    return bool(int(value, 16) & (1 << (signum - 1))) if value is not None else None


def _readlink(path: str) -> str:
    try:
        return os.readlink(path)
    except OSError:
        return ""


def own_netns() -> str:
    return _readlink("/proc/self/ns/net")


def list_run_processes(token: str) -> list[RunProcess]:
    """Every running process whose environment carries ``token`` (``NAME=token``): a run's
    front, tracer, build and helpers all inherit the environment the test gave the front."""
    needle = b"=" + token.encode() + b"\0"
    found = []
    for pid in _pids():
        try:
            with open(f"/proc/{pid}/environ", "rb") as stream:
                environ = stream.read()
        except OSError:
            continue
        fields = _stat_fields(pid)
        if needle in environ and fields is not None and fields[0] not in ("Z", "X"):
            netns = _readlink(f"/proc/{pid}/ns/net")
            found.append(RunProcess(pid, int(fields[1]), int(fields[19]), netns, read_cmdline(pid) or b""))
    return found


def ticks_since_boot() -> int:
    """Now, in the unit of /proc/PID/stat's start time."""
    with open("/proc/uptime") as stream:
        return int(float(stream.read().split()[0]) * os.sysconf("SC_CLK_TCK"))


def netns_holders(namespaces: set[str], started_by: int) -> list[str]:
    """Processes still in, or holding a descriptor of, one of ``namespaces`` (``net:[INODE]``)
    that started at the latest at ``started_by`` (ticks since boot). A namespace's inode
    number is reused once it is freed: a process started later, in a namespace of that
    number, is in another namespace (entering a freed one is impossible)."""
    if not namespaces:
        return []
    holders = []
    for pid in _pids():
        fields = _stat_fields(pid)
        if fields is None or fields[0] in ("Z", "X") or int(fields[19]) > started_by:
            continue
        if _readlink(f"/proc/{pid}/ns/net") in namespaces:
            holders.append(f"{pid} (in it: {read_cmdline(pid)!r})")
            continue
        try:
            descriptors = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        if any(_readlink(f"/proc/{pid}/fd/{fd}") in namespaces for fd in descriptors):
            holders.append(f"{pid} (a descriptor: {read_cmdline(pid)!r})")
    return holders
