"""The tracer's process table: what it knows of each traced thread and process."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ciwatch.dataclass import dataclass, field
from ciwatch.net.address import SocketAddress
from ciwatch.record.events import ProcessExec
from ciwatch.trace.memory import TraceeMemory

#: Called with a syscall's return value at its exit stop.
ExitAction = Callable[[int], None]


@dataclass
class Injection:
    saved_regs: Any = None
    """The registers at the syscall entry that was borrowed; restored (and the syscall
    instruction replayed) once seccomp() has returned."""


@dataclass
class TracedThread:
    tid: int
    tgid: int
    started: bool = False
    pending_exec: str | None = None
    pending_exit: ExitAction | None = None
    """What to do when the current syscall returns (connect's result, undoing a rewrite)."""
    dns_sockets: dict[int, SocketAddress] = field(default_factory=dict)
    dns_tcp: set[int] = field(default_factory=set)
    """Those of ``dns_sockets`` that are TCP: their messages carry a 2-byte length."""
    udp_sockets: dict[int, SocketAddress] = field(default_factory=dict)
    """Connected UDP sockets (not DNS): their sends carry no address, so the thread is
    stepped for a while to see them (a connect alone is often just getaddrinfo's probe)."""
    watch_budget: int = 0

    deep: bool = False
    """In a hook's subtree where the hook filter could not be added: stopped at every
    syscall instead, so reads are seen too (credential-read)."""
    injection: Injection | None = None
    """Adding the hook filter: the tracee makes a seccomp() call on ciwatch's behalf."""
    memory: TraceeMemory = field(init=False, repr=False)
    """The decoders' view of this thread's memory."""

    def __post_init__(self) -> None:
        self.memory = TraceeMemory(self.tid)

    @property
    def steps_syscalls(self) -> bool:
        watching = bool(self.dns_sockets) or bool(self.udp_sockets)
        stepping = self.deep or self.injection is not None or self.pending_exit is not None
        return stepping or (watching and self.watch_budget > 0)


@dataclass
class TracedProcess:
    pid: int
    ppid: int
    argv: list[str] = field(default_factory=list)
    exited: bool = False
    last_exec: ProcessExec | None = None
    in_hook: bool = False
