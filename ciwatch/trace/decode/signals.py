"""Decoders of the syscalls that send a signal to another process, attach a tracer to it, or
reach into its memory or descriptors: who the target is, as the caller named it. Whether that
target is one of ciwatch's own processes is the self-guard's question
(:mod:`ciwatch.trace.selfguard`), asked of /proc."""

from __future__ import annotations

from enum import StrEnum

from ciwatch.dataclass import dataclass
from ciwatch.record.events import Anomaly, FileRead
from ciwatch.trace.decode import Args, MemoryReader, signed32, signed64
from ciwatch.trace.decode.processes import decode_process_vm_readv as decode_memory_read
from ciwatch.trace.decode.processes import decode_ptrace


class Aim(StrEnum):
    """How a syscall names the process(es) it acts on."""

    PROCESS = "process"
    """A thread group, by its pid."""
    THREAD = "thread"
    """One thread, by its tid."""
    GROUP = "group"
    """A process group, by its id."""
    CALLER_GROUP = "caller-group"
    """The caller's own process group (kill(0, ...))."""
    EVERYONE = "everyone"
    """Every process the caller may signal (kill(-1, ...))."""
    PIDFD = "pidfd"
    """A process by a file descriptor of the caller (a pidfd, or a /proc/PID directory)."""


@dataclass(frozen=True, slots=True)
class Aimed:
    syscall: str
    aim: Aim
    target: int
    """The pid, tid, process group id or file descriptor, by ``aim``."""
    signal: int
    """The signal number; 0 asks only whether the target exists (sends nothing); REACH: no
    signal, the call reads or changes the target's memory or descriptors."""

    @property
    def detail(self) -> str:
        if self.signal == REACH:
            return f"{self.syscall}({self.aim} {self.target})"
        return f"{self.syscall}({self.aim} {self.target}, signal {self.signal})"


#: Not a signal: marks a call that reaches into its target's memory or descriptors.
REACH = -2


def _kill_aim(pid: int) -> tuple[Aim, int]:
    if pid > 0:
        return Aim.PROCESS, pid
    if pid == 0:
        return Aim.CALLER_GROUP, 0
    if pid == -1:
        return Aim.EVERYONE, -1
    return Aim.GROUP, -pid


def decode_kill(pid: int, args: Args, mem: MemoryReader) -> Aimed:
    aim, target = _kill_aim(signed32(args[0]))
    return Aimed("kill", aim, target, signed32(args[1]))


def decode_tkill(pid: int, args: Args, mem: MemoryReader) -> Aimed:
    return Aimed("tkill", Aim.THREAD, signed32(args[0]), signed32(args[1]))


def decode_tgkill(pid: int, args: Args, mem: MemoryReader) -> Aimed:
    # The thread id names the target; its group id only has to match.
    return Aimed("tgkill", Aim.THREAD, signed32(args[1]), signed32(args[2]))


def decode_rt_sigqueueinfo(pid: int, args: Args, mem: MemoryReader) -> Aimed:
    return Aimed("rt_sigqueueinfo", Aim.PROCESS, signed32(args[0]), signed32(args[1]))


def decode_rt_tgsigqueueinfo(pid: int, args: Args, mem: MemoryReader) -> Aimed:
    return Aimed("rt_tgsigqueueinfo", Aim.THREAD, signed32(args[1]), signed32(args[2]))


def decode_pidfd_send_signal(pid: int, args: Args, mem: MemoryReader) -> Aimed:
    return Aimed("pidfd_send_signal", Aim.PIDFD, signed32(args[0]), signed32(args[1]))


PTRACE_TRACEME = 0
PTRACE_ATTACH = 16
PTRACE_SEIZE = 0x4206
#: Not a signal: marks a ptrace call, which can stop, read or change its target.
PTRACE_CALL = -1


@dataclass(frozen=True, slots=True)
class PtraceCall:
    anomaly: Anomaly
    request: int
    aimed: Aimed | None
    """The process it acts on; None for TRACEME (which names no other process)."""

    @property
    def becomes_tracer(self) -> bool:
        """The caller asks to trace a process (or to be traced): a debugger, strace, a
        sanitizer's leak checker. Under ciwatch every process already has its tracer."""
        return self.request in (PTRACE_TRACEME, PTRACE_ATTACH, PTRACE_SEIZE)


def decode_ptrace_call(pid: int, args: Args, mem: MemoryReader) -> PtraceCall:
    request = signed64(args[0])
    aimed = None if request == PTRACE_TRACEME else Aimed("ptrace", Aim.THREAD, signed32(args[1]), PTRACE_CALL)
    return PtraceCall(decode_ptrace(pid, args, mem), request, aimed)


@dataclass(frozen=True, slots=True)
class Reach:
    """A syscall that reaches into other processes: reads or writes their memory
    (process_vm_readv/writev), takes one of their descriptors (pidfd_getfd), compares their
    descriptors (kcmp) or advises on their memory (process_madvise)."""

    targets: tuple[Aimed, ...]
    read: FileRead | None = None
    """A read of another process's memory, which counts when a hook makes it (credential-read)."""


def decode_process_vm_readv(pid: int, args: Args, mem: MemoryReader) -> Reach:
    # The pid may name any thread of the target (the kernel looks the task up by tid).
    aimed = Aimed("process_vm_readv", Aim.THREAD, signed32(args[0]), REACH)
    return Reach((aimed,), decode_memory_read(pid, args, mem))


def decode_process_vm_writev(pid: int, args: Args, mem: MemoryReader) -> Reach:
    return Reach((Aimed("process_vm_writev", Aim.THREAD, signed32(args[0]), REACH),))


def decode_pidfd_getfd(pid: int, args: Args, mem: MemoryReader) -> Reach:
    return Reach((Aimed("pidfd_getfd", Aim.PIDFD, signed32(args[0]), REACH),))


def decode_process_madvise(pid: int, args: Args, mem: MemoryReader) -> Reach:
    return Reach((Aimed("process_madvise", Aim.PIDFD, signed32(args[0]), REACH),))


def decode_kcmp(pid: int, args: Args, mem: MemoryReader) -> Reach:
    # Either pid may name any thread (the kernel looks the task up by tid).
    first, second = signed32(args[0]), signed32(args[1])
    return Reach((Aimed("kcmp", Aim.THREAD, first, REACH), Aimed("kcmp", Aim.THREAD, second, REACH)))
