"""A build step that tries to reach into ciwatch's processes (run as the build by
test_reach.py). It finds them from its own /proc entries, as an attacker would: its tracer
(TracerPid), the tracer's threads, and the front (the tracer's parent). It prints one JSON
object: each route -> "refused" (EPERM or EACCES), "reached", or another errno's name; and
"own" -> what its ordinary reads of its own /proc entries gave."""

from __future__ import annotations

import ctypes
import errno
import json
import os
import sys
from collections.abc import Callable

libc = ctypes.CDLL(None, use_errno=True)

SYS_PROCESS_VM_READV = 310
SYS_PROCESS_VM_WRITEV = 311
SYS_KCMP = 312
SYS_PIDFD_GETFD = 438
KCMP_FILE = 0


class IoVec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("length", ctypes.c_size_t)]


def status_field(pid: int, name: str) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(name + ":"):
                return int(line.split()[1])
    raise LookupError(name)


def syscall(number: int, *args: object) -> int:
    # Whole registers: ctypes would pass a bare int as a 32-bit int, leaving the upper half
    # of a register that the kernel reads as unsigned long undefined.
    result = libc.syscall(ctypes.c_long(number), *(ctypes.c_long(a) if isinstance(a, int) else a for a in args))
    if result < 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))
    return int(result)


def vm(number: int, pid: int, address: int) -> int:
    buffer = ctypes.create_string_buffer(16)
    local = IoVec(ctypes.addressof(buffer), 16)
    remote = IoVec(address, 16)
    return syscall(number, pid, ctypes.byref(local), 1, ctypes.byref(remote), 1, 0)


def an_address_of(pid: int) -> int:
    """A mapped address of ``pid`` when its maps can be read (so that a permitted call would
    succeed, not fail with EFAULT), else a likely one."""
    try:
        with open(f"/proc/{pid}/maps") as maps:
            return int(maps.readline().split("-")[0], 16)
    except (OSError, ValueError):
        return 0x400000


def outcome(attempt: Callable[[], object]) -> str:
    try:
        attempt()
    except OSError as error:
        if error.errno in (errno.EPERM, errno.EACCES):
            return "refused"
        return errno.errorcode.get(error.errno or 0, str(error.errno))
    return "reached"


def each_fd(pid: int, use: Callable[[int], object]) -> Callable[[], object]:
    """Try ``use`` on every descriptor of ``pid`` (the record's among them): reached if any works."""

    def attempt() -> None:
        try:
            fds = [int(fd) for fd in os.listdir(f"/proc/{pid}/fd")]
        except OSError:
            fds = list(range(0, 32))  # listing refused: guess
        failures: list[OSError] = []
        for fd in fds:
            try:
                use(fd)
                return
            except OSError as error:
                failures.append(error)
        raise failures[0] if failures else OSError(errno.ENOENT, "no descriptor")

    return attempt


def routes(tracer: int, front: int) -> dict[str, Callable[[], object]]:
    thread = max(int(tid) for tid in os.listdir(f"/proc/{tracer}/task"))
    address = an_address_of(tracer)
    pidfd = os.pidfd_open(tracer)
    return {
        "process_vm_readv tracer": lambda: vm(SYS_PROCESS_VM_READV, tracer, address),
        "process_vm_writev tracer": lambda: vm(SYS_PROCESS_VM_WRITEV, tracer, address),
        "process_vm_readv tracer thread": lambda: vm(SYS_PROCESS_VM_READV, thread, address),
        "process_vm_readv front": lambda: vm(SYS_PROCESS_VM_READV, front, an_address_of(front)),
        "open mem tracer": lambda: os.close(os.open(f"/proc/{tracer}/mem", os.O_RDWR)),
        "open task mem tracer": lambda: os.close(os.open(f"/proc/{tracer}/task/{thread}/mem", os.O_RDONLY)),
        "open mem front": lambda: os.close(os.open(f"/proc/{front}/mem", os.O_RDWR)),
        "open fd tracer": each_fd(tracer, lambda fd: os.close(os.open(f"/proc/{tracer}/fd/{fd}", os.O_RDONLY))),
        "readlink fd tracer": each_fd(tracer, lambda fd: os.readlink(f"/proc/{tracer}/fd/{fd}")),
        "open fd front": each_fd(front, lambda fd: os.close(os.open(f"/proc/{front}/fd/{fd}", os.O_RDONLY))),
        "pidfd_getfd tracer": each_fd(tracer, lambda fd: os.close(syscall(SYS_PIDFD_GETFD, pidfd, fd, 0))),
        "kcmp tracer": lambda: syscall(SYS_KCMP, os.getpid(), tracer, KCMP_FILE, 0, 0),
        "cwd tracer": lambda: os.readlink(f"/proc/{tracer}/cwd"),
    }


def read_child_memory() -> bool:
    """process_vm_readv of the build's own child (a debugger-free profiler does this)."""
    marker = ctypes.create_string_buffer(b"child's own bytes")
    ready_read, ready_write = os.pipe()
    done_read, done_write = os.pipe()
    child = os.fork()
    if child == 0:
        os.read(os.open("/proc/self/environ", os.O_RDONLY), 64)
        os.write(ready_write, b"r")
        os.read(done_read, 1)  # until the parent has read
        os._exit(0)
    os.read(ready_read, 1)
    buffer = ctypes.create_string_buffer(len(marker.raw))
    local, remote = IoVec(ctypes.addressof(buffer), len(marker.raw)), IoVec(ctypes.addressof(marker), len(marker.raw))
    try:
        syscall(SYS_PROCESS_VM_READV, child, ctypes.byref(local), 1, ctypes.byref(remote), 1, 0)
    finally:
        os.write(done_write, b"d")
        _, status = os.waitpid(child, 0)
    return buffer.raw == marker.raw and os.waitstatus_to_exitcode(status) == 0


def own_reads() -> dict[str, bool]:
    """What any build does with its own /proc entries, and with a child's."""
    own_mem = os.open("/proc/self/mem", os.O_RDWR)
    os.close(own_mem)
    return {
        "status": status_field(os.getpid(), "Pid") == os.getpid(),
        "environ": bool(open("/proc/self/environ", "rb").read()),
        "maps": bool(open("/proc/self/maps").read()),
        "fd": bool(os.listdir("/proc/self/fd")),
        "child": read_child_memory(),
    }


def main() -> None:
    tracer = status_field(os.getpid(), "TracerPid")
    front = status_field(tracer, "PPid")
    results = {name: outcome(attempt) for name, attempt in routes(tracer, front).items()}
    json.dump({"routes": results, "own": own_reads(), "tracer": tracer, "front": front}, sys.stdout)


if __name__ == "__main__":
    main()
