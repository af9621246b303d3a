"""The tracing loop: one ``waitpid(-1, __WALL)`` loop over the build's whole process tree.

The build's root is seized (PTRACE_SEIZE, so group-stops can be told from signals) before it
installs the seccomp filter and execs. The kernel then stops a tracee only at the syscalls
the filter selects (a SECCOMP stop) and at fork/clone/exec events; the loop decodes the stop
into a record event and lets the tracee run on. A thread that needs the result of a syscall
(connect) or whose next few syscalls matter (a DNS socket) is resumed with PTRACE_SYSCALL
instead of PTRACE_CONT for just that stretch.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import logging
import os
import signal
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ptrace import PtraceError
from ptrace.binding.func import ptrace_getregs, ptrace_setregs

from ciwatch.attribution.hooks import detect_hook, pip_build_hook
from ciwatch.facts.paths import is_credential_path
from ciwatch.net.address import SocketAddress, decode_sockaddr, encode_sockaddr, is_loopback
from ciwatch.net.dns import decode_dns_query
from ciwatch.record.events import (
    Anomaly,
    AnomalyKind,
    ConnectVia,
    DnsQuery,
    Event,
    FileHash,
    FileOp,
    FileRead,
    FileWrite,
    NetConnect,
    NetSend,
    ProcessExec,
    ProcessExit,
    ProcessStart,
    ReadHow,
    Transport,
)
from ciwatch.trace import procfs
from ciwatch.trace import ptrace_api as pt
from ciwatch.trace import syscalls as nr
from ciwatch.trace.executables import inspect_executable
from ciwatch.trace.memory import read_bytes, read_cstring, read_u64, write_bytes
from ciwatch.trace.redirect import Redirector, TrafficGate
from ciwatch.trace.seccomp import build_hook_filter

log = logging.getLogger(__name__)

_WALL = 0x40000000
_AT_FDCWD = -100
_AT_EMPTY_PATH = 0x1000
_STOP_SIGNALS = frozenset({signal.SIGSTOP, signal.SIGTSTP, signal.SIGTTIN, signal.SIGTTOU})
_DNS_PORT = 53
#: How many syscalls a thread stays stepped after it connects a DNS socket: enough for the
#: resolver's sends, small enough that a long-lived socket doesn't slow the process.
_DNS_WATCH_BUDGET = 64

_libc = ctypes.CDLL(None, use_errno=True)
_SYS_PIDFD_GETFD = 438


#: Called with a syscall's return value at its exit stop.
_ExitAction = Callable[[int], None]

_SYS_SECCOMP = 317
_SECCOMP_SET_MODE_FILTER = 1
#: Below the stack pointer, past the red zone: scratch space for the injected filter.
_SCRATCH_BELOW_SP = 128 + 512
_HOOK_FILTER = build_hook_filter()


@dataclass
class _Injection:
    saved_regs: Any = None
    """The registers at the syscall entry that was borrowed; restored (and the syscall
    instruction replayed) once seccomp() has returned."""


@dataclass
class _Thread:
    tid: int
    tgid: int
    started: bool = False
    pending_exec: str | None = None
    pending_exit: _ExitAction | None = None
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
    injection: _Injection | None = None
    """Adding the hook filter: the tracee makes a seccomp() call on ciwatch's behalf."""

    @property
    def steps_syscalls(self) -> bool:
        watching = bool(self.dns_sockets) or bool(self.udp_sockets)
        stepping = self.deep or self.injection is not None or self.pending_exit is not None
        return stepping or (watching and self.watch_budget > 0)


@dataclass
class _Process:
    pid: int
    ppid: int
    argv: list[str] = field(default_factory=list)
    exited: bool = False
    last_exec: ProcessExec | None = None
    in_hook: bool = False


@dataclass(frozen=True)
class BuildExit:
    exit_code: int | None
    signal: int | None


EventSink = Callable[[Event], None]


def _signed32(value: int) -> int:
    value &= 0xFFFFFFFF
    return value - (1 << 32) if value & 0x80000000 else value


def _signed64(value: int) -> int:
    return value - (1 << 64) if value & (1 << 63) else value


class Tracer:
    """Traces one build. ``start`` seizes the root; ``run_until_root_exits`` is the loop."""

    def __init__(self, sink: EventSink) -> None:
        self.sink = sink
        self._pending: list[Event] = []
        self.on_idle: Callable[[], None] = lambda: None
        """Called before the tracer blocks waiting for the build."""
        self.threads: dict[int, _Thread] = {}
        self.processes: dict[int, _Process] = {}
        self.written: dict[str, int] = {}
        """Paths written during the run (after renames), with the pid that wrote them last."""
        self.root_pid = 0
        self.root_exit: BuildExit | None = None
        self.stops = 0
        self.redirect: Redirector | None = None
        """Set in redirect mode: connect()s and DNS go to the proxy's listeners."""
        self.follow_hooks = False
        """Follow hooks' subtrees syscall by syscall, recording reads of credential files."""
        self.home = ""
        self.gate: TrafficGate | None = None
        """Set in block mode: refuses traffic that would not pass the proxy."""
        self.gate_direct_tcp = False
        """Also gate TCP connects that aren't redirected (env mode: those bypass the proxy)."""
        self.dns_via_namespace = False
        """Set in sandbox mode: nftables sends the namespace's DNS to ciwatch's DNS listener,
        which judges each name, so DNS to the configured resolver is not the gate's to refuse."""
        self.dns_redirected: dict[tuple[int, int], bytes] = {}
        """(pid, fd) of DNS sockets sent to ciwatch's listener -> the resolver's sockaddr."""
        self._pidfds: dict[int, int] = {}
        self._handlers: dict[int, Callable[[_Thread, tuple[int, ...]], None]] = {
            nr.EXECVE: self._on_execve,
            nr.EXECVEAT: self._on_execveat,
            nr.OPEN: self._on_open,
            nr.OPENAT: self._on_openat,
            nr.OPENAT2: self._on_openat2,
            nr.CREAT: self._on_creat,
            nr.RENAME: self._on_rename,
            nr.RENAMEAT: self._on_renameat,
            nr.RENAMEAT2: self._on_renameat,
            nr.LINK: self._on_link,
            nr.LINKAT: self._on_linkat,
            nr.SYMLINK: self._on_symlink,
            nr.SYMLINKAT: self._on_symlinkat,
            nr.CHMOD: self._on_chmod,
            nr.FCHMOD: self._on_fchmod,
            nr.FCHMODAT: self._on_fchmodat,
            nr.FCHMODAT2: self._on_fchmodat,
            nr.UNLINK: self._on_unlink,
            nr.UNLINKAT: self._on_unlinkat,
            nr.MEMFD_CREATE: self._on_memfd_create,
            nr.CONNECT: self._on_connect,
            nr.SENDTO: self._on_sendto,
            nr.SENDMSG: self._on_sendmsg,
            nr.SENDMMSG: self._on_sendmmsg,
            nr.RECVFROM: self._on_recvfrom,
            nr.RECVMSG: self._on_recvmsg,
            nr.IO_URING_SETUP: self._on_io_uring_setup,
            nr.PTRACE: self._on_ptrace,
            nr.PROCESS_VM_READV: self._on_process_vm_readv,
        }

    # -- lifecycle -----------------------------------------------------------------------

    def start(self, root_pid: int, parent_pid: int) -> None:
        """Seize the build's root, which waits (blocked on a pipe) until we have."""
        pt.seize(root_pid)
        self.root_pid = root_pid
        self.threads[root_pid] = _Thread(root_pid, root_pid, started=True)
        self.processes[root_pid] = _Process(root_pid, parent_pid)
        self.sink(ProcessStart(pid=root_pid, ppid=parent_pid))

    def run_until_root_exits(self) -> BuildExit:
        while self.root_exit is None and self.threads:
            self._step()
        assert self.root_exit is not None
        return self.root_exit

    def run_until_all_exit(self) -> None:
        while self.threads:
            self._step()

    def live_processes(self) -> list[int]:
        return [p.pid for p in self.processes.values() if not p.exited and procfs.is_alive(p.pid)]

    def argv_of(self, pid: int) -> list[str]:
        process = self.processes.get(pid)
        return process.argv if process else []

    def kill_all(self) -> None:
        for pid in self.live_processes():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    # -- the loop ------------------------------------------------------------------------

    def _emit(self, event: Event) -> None:
        # Events wait until the tracee has been resumed: building, scrubbing and writing a
        # record line then overlaps with the build instead of stalling it.
        self._pending.append(event)

    def flush(self) -> None:
        """Hand the events gathered so far to the sink (the loop does it after each stop)."""
        if self._pending:
            events, self._pending = self._pending, []
            for event in events:
                self.sink(event)

    def _step(self) -> None:
        try:
            self._handle_stop()
        finally:
            self.flush()

    def _handle_stop(self) -> None:
        try:
            tid, status = os.waitpid(-1, _WALL | os.WNOHANG)
            if tid == 0:
                self.on_idle()  # nothing to do until the build stops again: write the record
                tid, status = os.waitpid(-1, _WALL)
        except ChildProcessError:
            self.threads.clear()
            return
        self.stops += 1
        if os.WIFEXITED(status) or os.WIFSIGNALED(status):
            self._on_gone(tid, status)
            return
        if not os.WIFSTOPPED(status):
            return
        thread = self.threads.get(tid) or self._adopt(tid)
        sig = os.WSTOPSIG(status)
        event = status >> 16
        try:
            if sig == signal.SIGTRAP | 0x80:
                self._on_syscall_stop(thread)
            elif sig == signal.SIGTRAP and event:
                self._on_ptrace_event(thread, event)
            elif event == pt.EVENT_STOP:
                self._on_event_stop(thread, sig)
            else:
                # A signal on its way to the tracee: deliver it.
                pt.resume(tid, sig, step_syscalls=thread.steps_syscalls)
        except PtraceError as error:
            if error.errno != errno.ESRCH:
                raise
            # The tracee was killed while we looked at it; its exit comes next.

    def _adopt(self, tid: int) -> _Thread:
        """A stop from a tid we have not met: a new child whose first stop came before its
        parent's fork event. Its parent is read from /proc now, so the record never holds
        an event from a process it hasn't introduced."""
        ids = procfs.tgid_and_ppid(tid)
        tgid, ppid = ids if ids else (tid, 0)
        owner = self.processes.get(tgid if tgid != tid else ppid)
        thread = _Thread(tid, tgid, deep=bool(owner and owner.in_hook))
        self.threads[tid] = thread
        if tgid == tid and tid not in self.processes:
            parent = self.processes.get(ppid)
            in_hook = parent.in_hook if parent else False
            self.processes[tid] = _Process(tid, ppid, argv=list(parent.argv) if parent else [], in_hook=in_hook)
            self._emit(ProcessStart(pid=tid, ppid=ppid))
        return thread

    def _resume(self, thread: _Thread, sig: int = 0) -> None:
        pt.resume(thread.tid, sig, step_syscalls=thread.steps_syscalls)

    def _on_gone(self, tid: int, status: int) -> None:
        thread = self.threads.pop(tid, None)
        tgid = thread.tgid if thread else tid
        pidfd = self._pidfds.pop(tid, None)
        if pidfd is not None:
            os.close(pidfd)
        if tgid != tid:
            return  # a thread ended; its process goes on
        self._forget_dns_sockets(tid)
        code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else None
        sig = os.WTERMSIG(status) if os.WIFSIGNALED(status) else None
        process = self.processes.get(tid)
        if process is not None and not process.exited:
            process.exited = True
            self._emit(ProcessExit(pid=tid, exit_code=code, signal=sig))
        for other in [t for t in self.threads.values() if t.tgid == tid]:
            del self.threads[other.tid]
        if tid == self.root_pid and self.root_exit is None:
            self.root_exit = BuildExit(code, sig)

    def _on_event_stop(self, thread: _Thread, sig: int) -> None:
        if not thread.started:
            thread.started = True  # the first stop of an auto-attached child
            self._resume(thread)
        elif sig in _STOP_SIGNALS:
            pt.listen(thread.tid)  # a real group-stop: stay stopped until SIGCONT
        else:
            self._resume(thread)

    def _on_ptrace_event(self, thread: _Thread, event: int) -> None:
        if event in (pt.EVENT_FORK, pt.EVENT_VFORK, pt.EVENT_CLONE):
            self._on_new_task(thread, pt.event_message(thread.tid), event)
        elif event == pt.EVENT_EXEC:
            self._on_exec_done(thread, pt.event_message(thread.tid))
        elif event == pt.EVENT_SECCOMP:
            self._on_seccomp(thread)
            return
        self._resume(thread)

    def _on_new_task(self, parent: _Thread, child_tid: int, event: int) -> None:
        if child_tid in self.threads:
            return  # already adopted from its own first stop
        tgid = child_tid
        if event == pt.EVENT_CLONE:
            ids = procfs.tgid_and_ppid(child_tid)
            tgid = ids[0] if ids else child_tid
        self.threads[child_tid] = _Thread(child_tid, tgid, deep=parent.deep)
        if tgid == child_tid:
            parent_process = self.processes.get(parent.tgid)
            argv = list(parent_process.argv) if parent_process else []
            in_hook = parent_process.in_hook if parent_process else False
            self.processes[child_tid] = _Process(child_tid, parent.tgid, argv=argv, in_hook=in_hook)
            self._emit(ProcessStart(pid=child_tid, ppid=parent.tgid))

    def _on_exec_done(self, thread: _Thread, former_tid: int) -> None:
        pid = thread.tid
        if former_tid != pid:
            # A non-leader thread exec'd: it now has the leader's pid, the others are gone.
            execing = self.threads.pop(former_tid, None)
            if execing is not None:
                thread.pending_exec = execing.pending_exec
            for other in [t for t in self.threads.values() if t.tgid == pid and t.tid != pid]:
                del self.threads[other.tid]
        pidfd = self._pidfds.pop(pid, None)
        if pidfd is not None:
            os.close(pidfd)
        thread.dns_sockets.clear()
        thread.dns_tcp.clear()
        thread.udp_sockets.clear()
        thread.pending_exit = None
        self._forget_dns_sockets(pid)
        exe = procfs.readlink(f"/proc/{pid}/exe")
        argv = procfs.cmdline(pid)
        cwd = procfs.cwd(pid)
        path = thread.pending_exec or exe
        thread.pending_exec = None
        package = {}
        if pip_build_hook(argv) is not None:  # PEP 517 or legacy setup.py: the sdist's PKG-INFO is in the cwd
            package = procfs.python_build_package(cwd)
        process = self.processes.setdefault(pid, _Process(pid, 0))
        process.argv = argv
        event = ProcessExec(
            pid=pid,
            path=path,
            exe=exe,
            argv=argv,
            cwd=cwd,
            env=procfs.attribution_env(pid),
            package=package,
            from_tid=former_tid if former_tid != pid else None,
            stdin=procfs.fd_path(pid, 0),
            stdout=procfs.fd_path(pid, 1),
        )
        self._emit(event)
        if self.follow_hooks and not process.in_hook:
            parent = self.processes.get(process.ppid)
            if detect_hook(event, parent.last_exec if parent else None, pid, 0) is not None:
                # From here on this process and its descendants stop at every syscall: a
                # hook's reads of credentials are invisible to the write-only filter.
                process.in_hook = True
                thread.injection = _Injection()
        process.last_exec = event
        if exe.startswith("/memfd:"):
            self._emit(Anomaly(pid=pid, anomaly=AnomalyKind.MEMFD_EXEC, detail=exe))
        if path in self.written:
            # Written earlier in this run and now run: hash it as it is executed, since it
            # may be gone (or different) by the end of the run.
            self.hash_written(path)

    def hash_written(self, path: str) -> None:
        found = inspect_executable(path)
        if found is not None:
            self._emit(
                FileHash(
                    path=found.path,
                    sha256=found.sha256,
                    size=found.size,
                    mode=found.mode,
                    file_type=found.file_type,
                    written_by=self.written.get(path, 0),
                )
            )

    def _on_syscall_stop(self, thread: _Thread) -> None:
        info = pt.syscall_info(thread.tid)
        if info.op == pt.SYSCALL_INFO_EXIT:
            action = thread.pending_exit
            if action is not None:
                thread.pending_exit = None
                action(info.rval)
        elif info.op == pt.SYSCALL_INFO_ENTRY and thread.injection is not None:
            if info.arch == pt.AUDIT_ARCH_X86_64:
                self._inject_hook_filter(thread)
        elif info.op == pt.SYSCALL_INFO_ENTRY:
            if thread.deep and info.arch == pt.AUDIT_ARCH_X86_64:
                self._on_hook_syscall(thread, info.nr, info.args)
            if thread.dns_sockets or thread.udp_sockets:
                thread.watch_budget -= 1
                if info.arch == pt.AUDIT_ARCH_X86_64:
                    self._on_dns_socket_syscall(thread, info.nr, info.args)
        self._resume(thread)

    def _on_seccomp(self, thread: _Thread) -> None:
        info = pt.syscall_info(thread.tid)
        if info.arch != pt.AUDIT_ARCH_X86_64 or info.nr & nr.X32_SYSCALL_BIT:
            self._on_foreign_abi(thread, info.arch, info.nr)
        else:
            handler = self._handlers.get(info.nr)
            if handler is not None:
                handler(thread, info.args)
        self._resume(thread)

    def _on_foreign_abi(self, thread: _Thread, arch: int, number: int) -> None:
        if arch == pt.AUDIT_ARCH_I386:
            name, abi = nr.name_i386(number), "i386 (int 0x80)"
        else:
            name, abi = nr.name_x86_64(number & ~nr.X32_SYSCALL_BIT), "x32"
        self._emit(Anomaly(pid=thread.tgid, anomaly=AnomalyKind.FOREIGN_ABI, detail=f"{abi} syscall {name}"))

    # -- paths ---------------------------------------------------------------------------

    def _string(self, thread: _Thread, address: int) -> str:
        return procfs.fsdecode(read_cstring(thread.tid, address))

    def _resolve(self, thread: _Thread, dirfd: int, path: str) -> str:
        if path.startswith("/"):
            return os.path.normpath(path)
        dirfd = _signed32(dirfd)
        base = procfs.cwd(thread.tid) if dirfd == _AT_FDCWD else procfs.fd_path(thread.tid, dirfd)
        return os.path.normpath(os.path.join(base, path)) if path else base

    def _path_at(self, thread: _Thread, dirfd: int, address: int) -> str:
        return self._resolve(thread, dirfd, self._string(thread, address))

    def _write(
        self, thread: _Thread, op: FileOp, path: str, target: str | None = None, flags: int | None = None
    ) -> None:
        self._emit(FileWrite(pid=thread.tgid, op=op, path=path, target=target, flags=flags))
        match op:
            case FileOp.OPEN | FileOp.CREAT | FileOp.CHMOD:
                self.written[path] = thread.tgid
            case FileOp.RENAME | FileOp.LINK if target is not None:
                if path in self.written:
                    self.written[target] = thread.tgid
                    if op is FileOp.RENAME:
                        del self.written[path]
            case FileOp.UNLINK:
                self.written.pop(path, None)
            case _:
                pass

    # -- syscall handlers (args as the kernel passed them) -------------------------------

    def _on_execve(self, thread: _Thread, args: tuple[int, ...]) -> None:
        thread.pending_exec = self._path_at(thread, _AT_FDCWD, args[0])

    def _on_execveat(self, thread: _Thread, args: tuple[int, ...]) -> None:
        path = self._string(thread, args[1])
        if not path and args[4] & _AT_EMPTY_PATH:
            thread.pending_exec = procfs.fd_path(thread.tid, _signed32(args[0]))
        else:
            thread.pending_exec = self._resolve(thread, args[0], path)

    def _opened(self, thread: _Thread, path: str, flags: int) -> None:
        if flags & nr.WRITE_OPEN_FLAGS:
            self._write(thread, FileOp.OPEN, path, flags=flags)
        elif is_credential_path(path, self.home, thread.tgid):
            # Only a hook's processes stop at read-only opens (the hook filter).
            self._emit(FileRead(pid=thread.tgid, path=path, how=ReadHow.OPEN))

    def _on_open(self, thread: _Thread, args: tuple[int, ...]) -> None:
        self._opened(thread, self._path_at(thread, _AT_FDCWD, args[0]), args[1] & 0xFFFFFFFF)

    def _on_openat(self, thread: _Thread, args: tuple[int, ...]) -> None:
        self._opened(thread, self._path_at(thread, args[0], args[1]), args[2] & 0xFFFFFFFF)

    def _on_openat2(self, thread: _Thread, args: tuple[int, ...]) -> None:
        flags = (read_u64(thread.tid, args[2]) or 0) & 0xFFFFFFFF
        self._opened(thread, self._path_at(thread, args[0], args[1]), flags)

    def _on_process_vm_readv(self, thread: _Thread, args: tuple[int, ...]) -> None:
        target = _signed32(args[0])
        if target != thread.tgid:
            self._emit(FileRead(pid=thread.tgid, path=f"/proc/{target}/mem", how=ReadHow.PROCESS_VM_READV))

    def _on_creat(self, thread: _Thread, args: tuple[int, ...]) -> None:
        self._write(thread, FileOp.CREAT, self._path_at(thread, _AT_FDCWD, args[0]), flags=args[1] & 0o7777)

    def _on_rename(self, thread: _Thread, args: tuple[int, ...]) -> None:
        old = self._path_at(thread, _AT_FDCWD, args[0])
        self._write(thread, FileOp.RENAME, old, target=self._path_at(thread, _AT_FDCWD, args[1]))

    def _on_renameat(self, thread: _Thread, args: tuple[int, ...]) -> None:
        old = self._path_at(thread, args[0], args[1])
        self._write(thread, FileOp.RENAME, old, target=self._path_at(thread, args[2], args[3]))

    def _on_link(self, thread: _Thread, args: tuple[int, ...]) -> None:
        old = self._path_at(thread, _AT_FDCWD, args[0])
        self._write(thread, FileOp.LINK, old, target=self._path_at(thread, _AT_FDCWD, args[1]))

    def _on_linkat(self, thread: _Thread, args: tuple[int, ...]) -> None:
        old = self._path_at(thread, args[0], args[1])
        self._write(thread, FileOp.LINK, old, target=self._path_at(thread, args[2], args[3]))

    def _on_symlink(self, thread: _Thread, args: tuple[int, ...]) -> None:
        link = self._path_at(thread, _AT_FDCWD, args[1])
        self._write(thread, FileOp.SYMLINK, link, target=self._string(thread, args[0]))

    def _on_symlinkat(self, thread: _Thread, args: tuple[int, ...]) -> None:
        link = self._path_at(thread, args[1], args[2])
        self._write(thread, FileOp.SYMLINK, link, target=self._string(thread, args[0]))

    def _on_chmod(self, thread: _Thread, args: tuple[int, ...]) -> None:
        self._write(thread, FileOp.CHMOD, self._path_at(thread, _AT_FDCWD, args[0]), flags=args[1] & 0o7777)

    def _on_fchmod(self, thread: _Thread, args: tuple[int, ...]) -> None:
        path = procfs.fd_path(thread.tid, _signed32(args[0]))
        self._write(thread, FileOp.CHMOD, path, flags=args[1] & 0o7777)

    def _on_fchmodat(self, thread: _Thread, args: tuple[int, ...]) -> None:
        self._write(thread, FileOp.CHMOD, self._path_at(thread, args[0], args[1]), flags=args[2] & 0o7777)

    def _on_unlink(self, thread: _Thread, args: tuple[int, ...]) -> None:
        self._write(thread, FileOp.UNLINK, self._path_at(thread, _AT_FDCWD, args[0]))

    def _on_unlinkat(self, thread: _Thread, args: tuple[int, ...]) -> None:
        self._write(thread, FileOp.UNLINK, self._path_at(thread, args[0], args[1]), flags=args[2] & 0xFFFFFFFF)

    def _on_memfd_create(self, thread: _Thread, args: tuple[int, ...]) -> None:
        self._write(thread, FileOp.MEMFD, "memfd:" + self._string(thread, args[0]), flags=args[1] & 0xFFFFFFFF)

    def _on_io_uring_setup(self, thread: _Thread, args: tuple[int, ...]) -> None:
        detail = "io_uring_setup: its I/O bypasses syscall tracing"
        self._emit(Anomaly(pid=thread.tgid, anomaly=AnomalyKind.IO_URING, detail=detail))
        if self.gate is not None and not self.gate.io_uring_allowed(thread.tgid):
            self._refuse_syscall(thread, errno.EPERM)  # programs fall back to ordinary syscalls

    def _refused_by_gate(self, thread: _Thread, destination: SocketAddress, protocol: Transport) -> bool:
        if self.gate is None or is_loopback(destination.address):
            return False
        if protocol == Transport.TCP and not self.gate_direct_tcp:
            return False
        if protocol == Transport.UDP and destination.port == 0:
            return False  # getaddrinfo's source-address probe: a UDP connect that sends nothing
        if (
            protocol == Transport.UDP
            and destination.port == _DNS_PORT
            and (self.redirect is not None or self.dns_via_namespace)
        ):
            return False  # goes to ciwatch's DNS listener, which judges the name
        reason = self.gate.direct_traffic_refusal(destination.address, destination.port, protocol, thread.tgid)
        if reason is None:
            return False
        self._refuse_syscall(thread, errno.EPERM)
        return True

    def _refuse_syscall(self, thread: _Thread, error: int) -> None:
        """Skip the syscall the tracee is stopped in and make it fail with ``error``."""
        regs = ptrace_getregs(thread.tid)
        regs.orig_rax = 0xFFFFFFFFFFFFFFFF  # -1: the kernel skips it
        ptrace_setregs(thread.tid, regs)

        def set_result(_result: int) -> None:
            after = ptrace_getregs(thread.tid)
            after.rax = (-error) & 0xFFFFFFFFFFFFFFFF
            ptrace_setregs(thread.tid, after)

        thread.pending_exit = set_result

    def _on_ptrace(self, thread: _Thread, args: tuple[int, ...]) -> None:
        detail = f"ptrace(request={_signed64(args[0])}, pid={_signed32(args[1])})"
        self._emit(Anomaly(pid=thread.tgid, anomaly=AnomalyKind.PTRACE, detail=detail))

    # -- network -------------------------------------------------------------------------

    def _socket_info(self, thread: _Thread, fd: int) -> tuple[Transport, int]:
        """(tcp, udp or raw; the socket's inode), asked of a duplicate of the tracee's socket
        (pidfd_getfd): cheaper and surer than parsing /proc/net for every connect."""
        try:
            pidfd = self._pidfds.get(thread.tgid)
            if pidfd is None:
                pidfd = os.pidfd_open(thread.tgid)
                self._pidfds[thread.tgid] = pidfd
            dup = _libc.syscall(_SYS_PIDFD_GETFD, pidfd, fd, 0)
            if dup < 0:
                return Transport.UNKNOWN, 0
            inode = os.fstat(dup).st_ino
            with socket.socket(fileno=dup) as duplicate:  # closes the duplicate, not the tracee's
                kind = duplicate.getsockopt(socket.SOL_SOCKET, socket.SO_TYPE)
        except OSError:
            return Transport.UNKNOWN, 0
        names = {
            int(socket.SOCK_STREAM): Transport.TCP,
            int(socket.SOCK_DGRAM): Transport.UDP,
            int(socket.SOCK_RAW): Transport.RAW,
        }
        return names.get(int(kind), Transport.UNKNOWN), inode

    def _forget_dns_sockets(self, pid: int) -> None:
        if self.dns_redirected:
            for key in [key for key in self.dns_redirected if key[0] == pid]:
                del self.dns_redirected[key]

    def _redirect(
        self,
        thread: _Thread,
        fd: int,
        address: int,
        raw: bytes,
        destination: SocketAddress,
        protocol: Transport,
        inode: int,
    ) -> bool:
        """Point the sockaddr the tracee passed at the proxy's listener (redirect mode) and
        register the original destination under the socket's inode first."""
        if self.redirect is None or not inode or is_loopback(destination.address):
            return False
        target = self.redirect.target(destination, protocol)
        if target is None:
            return False
        self.redirect.register(inode, thread.tgid, destination)
        if not write_bytes(thread.tid, address, encode_sockaddr(raw, target)):
            return False
        if destination.port == _DNS_PORT and protocol == Transport.UDP:
            self.dns_redirected[(thread.tgid, fd)] = raw
        return True

    def _undo_rewrite(self, thread: _Thread, address: int, raw: bytes) -> None:
        # The program's own buffer gets its bytes back: it may reuse or compare them.
        write_bytes(thread.tid, address, raw)

    def _on_connect(self, thread: _Thread, args: tuple[int, ...]) -> None:
        raw = read_bytes(thread.tid, args[1], min(args[2], 128))
        destination = decode_sockaddr(raw)
        if destination is None:
            return
        fd = _signed32(args[0])
        protocol, inode = self._socket_info(thread, fd)
        redirected = self._redirect(thread, fd, args[1], raw, destination, protocol, inode)
        if not redirected and self._refused_by_gate(thread, destination, protocol):
            self._emit(_connect_event(thread.tgid, destination, protocol, -errno.EPERM, ConnectVia.REFUSED))
            return

        def connected(result: int) -> None:
            if redirected:
                self._undo_rewrite(thread, args[1], raw)
            self._connected(thread, fd, destination, protocol, result, redirected)

        thread.pending_exit = connected

    def _connected(
        self, thread: _Thread, fd: int, destination: SocketAddress, protocol: Transport, result: int, redirected: bool
    ) -> None:
        self._emit(
            _connect_event(
                thread.tgid, destination, protocol, result, ConnectVia.PROXY if redirected else ConnectVia.DIRECT
            )
        )
        if destination.port == _DNS_PORT and result in (0, -errno.EINPROGRESS):
            thread.dns_sockets[fd] = destination
            if protocol == Transport.TCP:
                thread.dns_tcp.add(fd)
            else:
                thread.dns_tcp.discard(fd)
            thread.watch_budget = _DNS_WATCH_BUDGET
        elif (
            protocol == Transport.UDP and destination.port != 0 and result == 0 and not is_loopback(destination.address)
        ):
            thread.udp_sockets[fd] = destination
            thread.watch_budget = _DNS_WATCH_BUDGET

    def _sent(
        self, thread: _Thread, destination: SocketAddress, protocol: Transport, payload: bytes, size: int
    ) -> None:
        self._emit(
            NetSend(
                pid=thread.tgid,
                family=destination.family,
                address=destination.address,
                port=destination.port,
                protocol=protocol,
                size=size,
            )
        )
        if destination.port == _DNS_PORT:
            self._dns(thread, destination, payload, protocol == Transport.TCP)

    def _dns(self, thread: _Thread, server: SocketAddress, payload: bytes, tcp: bool) -> None:
        for question in decode_dns_query(payload, tcp=tcp):
            query = DnsQuery(
                pid=thread.tgid, name=question.name, qtype=question.qtype, server=server.address, port=server.port
            )
            self._emit(query)

    def _on_sendto(self, thread: _Thread, args: tuple[int, ...]) -> None:
        raw = read_bytes(thread.tid, args[4], min(args[5], 128))
        destination = decode_sockaddr(raw)
        if destination is None:
            return
        fd = _signed32(args[0])
        payload = read_bytes(thread.tid, args[1], min(args[2], 4096)) if destination.port == _DNS_PORT else b""
        protocol, inode = self._socket_info(thread, fd)
        self._sent(thread, destination, protocol, payload, args[2])
        if destination.port != _DNS_PORT and self._refused_by_gate(thread, destination, protocol):
            return
        if self._redirect(thread, fd, args[4], raw, destination, protocol, inode):
            thread.pending_exit = lambda _result: self._undo_rewrite(thread, args[4], raw)

    def _on_recvfrom(self, thread: _Thread, args: tuple[int, ...]) -> None:
        original = self.dns_redirected.get((thread.tgid, _signed32(args[0])))
        if original is not None:
            address, length_address = args[4], args[5]
            thread.pending_exit = lambda result: self._restore_source(thread, result, address, length_address, original)

    def _on_recvmsg(self, thread: _Thread, args: tuple[int, ...]) -> None:
        original = self.dns_redirected.get((thread.tgid, _signed32(args[0])))
        if original is None:
            return
        header = read_bytes(thread.tid, args[1], 16)
        if len(header) == 16:
            name = struct.unpack_from("<Q", header)[0]
            thread.pending_exit = lambda result: self._restore_source(thread, result, name, args[1] + 8, original)

    def _restore_source(self, thread: _Thread, result: int, address: int, length_address: int, original: bytes) -> None:
        """A DNS reply from ciwatch's listener shows the resolver's address as its source:
        glibc and c-ares drop replies that don't come from the server they asked."""
        if result < 0 or not address:
            return
        length = int.from_bytes(read_bytes(thread.tid, length_address, 4) or b"\0\0\0\0", "little")
        written = decode_sockaddr(read_bytes(thread.tid, address, min(length, 128)))
        if written is None or self.redirect is None or not is_loopback(written.address):
            return
        if len(original) <= length:
            write_bytes(thread.tid, address, original[:length])

    def _read_iovecs(self, thread: _Thread, address: int, count: int) -> tuple[bytes, int]:
        """(the bytes of an iovec array up to 4 KiB, their total size): one message can span
        several buffers (glibc's DNS over TCP writes the length and the query apart)."""
        vectors = read_bytes(thread.tid, address, 16 * min(count, 64))
        data = bytearray()
        total = 0
        for index in range(len(vectors) // 16):
            base, length = struct.unpack_from("<QQ", vectors, index * 16)
            if len(data) < 4096:
                data += read_bytes(thread.tid, base, min(length, 4096 - len(data)))
            total += length
        return bytes(data), total

    def _read_msghdr(self, thread: _Thread, address: int) -> tuple[SocketAddress | None, bytes, int]:
        """(destination, the iovecs' bytes up to 4 KiB, total size) of a struct msghdr."""
        header = read_bytes(thread.tid, address, 56)
        if len(header) < 56:
            return None, b"", 0
        name, namelen, iov, iovlen = struct.unpack_from("<QI4xQQ", header)
        destination = decode_sockaddr(read_bytes(thread.tid, name, min(namelen, 128))) if name else None
        payload, total = self._read_iovecs(thread, iov, iovlen)
        return destination, payload, total

    def _on_msg(self, thread: _Thread, fd: int, address: int) -> bool:
        """Record one message; True if the whole syscall was refused (block mode)."""
        destination, payload, size = self._read_msghdr(thread, address)
        if destination is None:
            server = thread.dns_sockets.get(fd)
            if server is not None:  # a connected DNS socket (glibc's resolver)
                self._dns(thread, server, payload, tcp=fd in thread.dns_tcp)
            peer = thread.udp_sockets.get(fd)
            if peer is not None:
                self._sent(thread, peer, Transport.UDP, b"", size)
            return False
        protocol = self._socket_info(thread, fd)[0]
        self._sent(thread, destination, protocol, payload, size)
        return destination.port != _DNS_PORT and self._refused_by_gate(thread, destination, protocol)

    def _on_sendmsg(self, thread: _Thread, args: tuple[int, ...]) -> None:
        self._on_msg(thread, _signed32(args[0]), args[1])

    def _on_sendmmsg(self, thread: _Thread, args: tuple[int, ...]) -> None:
        for index in range(min(args[2], 64)):
            if self._on_msg(thread, _signed32(args[0]), args[1] + 64 * index):
                break

    def _inject_hook_filter(self, thread: _Thread) -> None:
        """At a syscall entry of a hook's process: turn it into seccomp(SET_MODE_FILTER, hook
        filter); at its exit, restore the registers and step back over the syscall
        instruction, so that the original syscall runs as if nothing had happened."""
        injection = thread.injection
        assert injection is not None
        regs = ptrace_getregs(thread.tid)
        injection.saved_regs = _copy_regs(regs)
        program = _HOOK_FILTER
        fprog = (regs.rsp - _SCRATCH_BELOW_SP) & ~0xF
        filter_address = fprog + 16
        ok = write_bytes(thread.tid, filter_address, program) and write_bytes(
            thread.tid, fprog, struct.pack("<HxxxxxxQ", len(program) // 8, filter_address)
        )
        if not ok:
            self._hook_filter_failed(thread)
            return
        regs.orig_rax = _SYS_SECCOMP
        regs.rdi = _SECCOMP_SET_MODE_FILTER
        regs.rsi = 0
        regs.rdx = fprog
        ptrace_setregs(thread.tid, regs)
        thread.pending_exit = lambda result: self._finish_hook_filter(thread, result)

    def _finish_hook_filter(self, thread: _Thread, result: int) -> None:
        injection = thread.injection
        thread.injection = None
        if injection is None or injection.saved_regs is None:
            return
        regs = injection.saved_regs
        regs.rip -= 2  # the syscall instruction, to run the original syscall again
        regs.rax = regs.orig_rax
        ptrace_setregs(thread.tid, regs)
        if result != 0:  # no_new_privs and no CAP_SYS_ADMIN, or seccomp refused
            self._hook_filter_failed(thread)

    def _hook_filter_failed(self, thread: _Thread) -> None:
        log.debug("could not add the hook filter to %d: following it syscall by syscall", thread.tid)
        thread.injection = None
        thread.deep = True

    def _on_hook_syscall(self, thread: _Thread, number: int, args: tuple[int, ...]) -> None:
        """A syscall entry of a process inside a hook: reads of credentials and of other
        processes' memory (writes already stopped at the filter)."""
        if number == nr.OPENAT or number == nr.OPENAT2:
            path = self._path_at(thread, args[0], args[1])
        elif number == nr.OPEN:
            path = self._path_at(thread, _AT_FDCWD, args[0])
        elif number == nr.PROCESS_VM_READV:
            target = _signed32(args[0])
            if target != thread.tgid:
                self._emit(FileRead(pid=thread.tgid, path=f"/proc/{target}/mem", how=ReadHow.PROCESS_VM_READV))
            return
        else:
            return
        if is_credential_path(path, self.home, thread.tgid):
            self._emit(FileRead(pid=thread.tgid, path=path, how=ReadHow.OPEN))

    def _on_dns_socket_syscall(self, thread: _Thread, number: int, args: tuple[int, ...]) -> None:
        """A syscall entry of a thread that holds a connected DNS or UDP socket (stepped mode)."""
        fd = _signed32(args[0]) if args else -1
        peer = thread.udp_sockets.get(fd)
        if peer is not None:
            if number == nr.CLOSE:
                del thread.udp_sockets[fd]
            elif number in (nr.WRITE, nr.WRITEV) or (number == nr.SENDTO and args[4] == 0):
                size = args[2] if number != nr.WRITEV else self._read_iovecs(thread, args[1], args[2])[1]
                self._sent(thread, peer, Transport.UDP, b"", size)
            return
        server = thread.dns_sockets.get(fd)
        if server is None:
            return
        tcp = fd in thread.dns_tcp
        if number == nr.CLOSE:
            del thread.dns_sockets[fd]
            thread.dns_tcp.discard(fd)
        elif number in (nr.WRITE, nr.SENDTO) and (number == nr.WRITE or args[4] == 0):
            self._dns(thread, server, read_bytes(thread.tid, args[1], min(args[2], 4096)), tcp=tcp)
        elif number == nr.WRITEV:
            self._dns(thread, server, self._read_iovecs(thread, args[1], args[2])[0], tcp=tcp)


def _copy_regs(regs: Any) -> Any:
    """A copy of a ctypes register structure (ptrace_getregs returns one)."""
    import ctypes as c

    copy = type(regs)()
    c.memmove(c.addressof(copy), c.addressof(regs), c.sizeof(regs))
    return copy


def _connect_event(
    pid: int, destination: SocketAddress, protocol: Transport, result: int, via: ConnectVia
) -> NetConnect:
    return NetConnect(
        pid=pid,
        family=destination.family,
        address=destination.address,
        port=destination.port,
        protocol=protocol,
        result=result,
        via=via,
    )
