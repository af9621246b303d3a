"""The tracing loop: one ``waitpid(-1, __WALL)`` loop over the build's whole process tree.

The build's root is seized (PTRACE_SEIZE, so group-stops can be told from signals) before it
installs the seccomp filter and execs. The kernel then stops a tracee only at the syscalls
the filter selects (a SECCOMP stop) and at fork/clone/exec events; the loop decodes the stop
into a record event and lets the tracee run on. A thread that needs the result of a syscall
(connect) or whose next few syscalls matter (a DNS socket) is resumed with PTRACE_SYSCALL
instead of PTRACE_CONT for just that stretch.

What a SECCOMP stop means is the syscall table's (:mod:`ciwatch.trace.table`): its row's
pure decoder, then the handler for the row's action. The write stops are waited for, read and
resumed in compiled code where it is built (:mod:`ciwatch.trace.batch`).
"""

from __future__ import annotations

import errno
import os
import signal
from collections.abc import Callable

from ptrace import PtraceError

from ciwatch.attribution.hooks import detect_hook
from ciwatch.dataclass import dataclass
from ciwatch.record.events import Anomaly, Event, ProcessExit, ProcessStart
from ciwatch.record.vocabulary import AnomalyKind
from ciwatch.trace import procfs
from ciwatch.trace import ptrace_api as pt
from ciwatch.trace.batch import CompiledLoop, Handler, PythonWait, StopWaiter
from ciwatch.trace.buildservers import BuildServerWatch
from ciwatch.trace.decode.signals import Reach
from ciwatch.trace.escape import EscapeWatch
from ciwatch.trace.fanwatch import DRAIN_EVERY, FanWatch, open_fan_watch
from ciwatch.trace.filewatch import FileWatch
from ciwatch.trace.hookfilter import inject_hook_filter
from ciwatch.trace.netredirect import NetworkWatch
from ciwatch.trace.options import TracerOptions
from ciwatch.trace.redirect import Redirector
from ciwatch.trace.selfguard import SelfGuard
from ciwatch.trace.table import TABLE, X32_SYSCALL_BIT, Action, Decoder
from ciwatch.trace.tasks import Injection, TracedProcess, TracedThread

_STOP_SIGNALS = frozenset({signal.SIGSTOP, signal.SIGTSTP, signal.SIGTTIN, signal.SIGTTOU})

#: A table row as the loop uses it: its decoder and the handler of its action.
_Entry = tuple[Decoder, Handler]


@dataclass(frozen=True)
class BuildExit:
    exit_code: int | None
    signal: int | None


EventSink = Callable[[list[Event]], None]
"""Takes the events of a stop, or of a batch of stops, at once (the recording's ``sink_all``)."""


class Tracer:
    """Traces one build. ``start`` seizes the root; ``run_until_root_exits`` is the loop."""

    def __init__(self, sink: EventSink, options: TracerOptions | None = None) -> None:
        self.sink = sink
        self.options = options = options or TracerOptions()
        self._pending: list[Event] = []
        self._on_idle = options.on_idle
        self.threads: dict[int, TracedThread] = {}
        self.processes: dict[int, TracedProcess] = {}
        self.files = files = FileWatch(options.home, self._emit)
        self._adopted_early: dict[int, int] = {}
        """Tasks met at their own first stop, whose creator's fork/clone event is still to
        come (that event must not introduce them a second time: they may be gone by then),
        with the process that created them (a creator killed before its event never sends it)."""
        self.root_pid = 0
        self.root_exit: BuildExit | None = None
        self.stops = 0
        own = (os.getpid(), os.getppid())
        servers = BuildServerWatch(
            self._emit, self.is_build_process, own, own_loopback=not options.own_network_namespace
        )
        self.network = network = NetworkWatch(options, self._emit, servers)
        self._escape = escape = EscapeWatch(options, self._emit, lambda: self.root_pid)
        # This process (the tracer, the proxy's threads) and the front that forked it.
        self.guard = guard = SelfGuard((os.getpid(), os.getppid()), self._emit)
        self.fan: FanWatch | None = open_fan_watch(options, files, self.processes)
        handlers: dict[Action, Handler] = {
            Action.FILE: files.on_file if self.fan is None else self.fan.after(files.on_file),
            Action.EXEC: self._on_exec,
            Action.SIGNAL: guard.on_signal,
            Action.PTRACE: guard.on_ptrace,
            Action.IO_URING: self._on_io_uring,
            Action.REACH: self._on_reach,
            Action.CONNECT: escape.guard(network.on_connect),
            Action.SENDTO: escape.guard(network.on_sendto),
            Action.SENDMSG: escape.guard(network.on_sendmsg),
            Action.RECVFROM: network.on_recvfrom,
            Action.RECVMSG: network.on_recvmsg,
            Action.ESCAPE: escape.on_escape,
        }
        self._entries: dict[int, _Entry] = {row.number: (row.decode, handlers[row.action]) for row in TABLE}
        """The table as the SECCOMP stop reads it: number -> (decoder, handler)."""
        # Write stops handled in compiled code (none with fanotify: writes don't stop there).
        compiled = CompiledLoop.open(self._entries, self.threads, options.home) if self.fan is None else None
        self._waiter: StopWaiter = compiled or PythonWait(self.fan)
        # A hook's thread followed syscall by syscall sees the hook rows at their entry, where
        # every open is a read (the writes have already stopped at the filter).
        # (The hook rows are all opens.)
        self._hook_entries: dict[int, _Entry] = {row.number: (row.decode, files.on_read) for row in TABLE if row.hook}

    @property
    def reads_judged_in_loop(self) -> int:
        """A hook's read-only opens of paths that can't be credentials, resumed by the compiled
        loop without reaching Python (they are stops: counted in ``stops`` too)."""
        return self._waiter.reads_judged_in_loop

    def redirect_through(self, redirector: Redirector | None) -> None:
        """Send connect()s and DNS to the proxy's listeners from now on (None: directly)."""
        self.network.redirect = redirector

    # -- lifecycle -----------------------------------------------------------------------

    def start(self, root_pid: int, parent_pid: int) -> None:
        """Seize the build's root, which waits (blocked on a pipe) until we have."""
        pt.seize(root_pid)
        self.root_pid = root_pid
        self.threads[root_pid] = TracedThread(root_pid, root_pid, started=True)
        self.processes[root_pid] = TracedProcess(root_pid, parent_pid)
        self.sink([ProcessStart(pid=root_pid, ppid=parent_pid)])

    def run_until_root_exits(self) -> BuildExit:
        while self.root_exit is None and self.threads:
            self._step()
        assert self.root_exit is not None
        return self.root_exit

    def run_until_all_exit(self) -> None:
        while self.threads:
            self._step()

    def build_pids(self) -> list[int]:
        """The build's processes as the table knows them (none exited): cheap, and safe to call
        from the proxy's thread (the list is taken in one step, under the GIL)."""
        return [p.pid for p in list(self.processes.values()) if not p.exited]

    def is_build_process(self, pid: int) -> bool:
        """Whether ``pid`` is one of the build's running processes (from any thread)."""
        process = self.processes.get(pid)
        return process is not None and not process.exited

    def live_processes(self) -> list[int]:
        """The build's processes still running: each confirmed to be the one we traced, not an
        unrelated process that was given its pid after it went."""
        return [pid for pid in self.build_pids() if procfs.traced_by(pid, os.getpid())]

    def drain_file_events(self, reaped: int = 0) -> None:
        """Record the file events fanotify has queued (nothing without fanotify)."""
        if self.fan is not None:
            self.fan.drain(reaped)

    def close(self) -> None:
        """Release the fanotify groups, once their last events are recorded."""
        if self.fan is not None:
            self.fan.drain()
            self.flush()
            self.fan.close()
            self.fan = None

    def argv_of(self, pid: int) -> list[str]:
        process = self.processes.get(pid)
        return process.argv if process else []

    def kill_all(self) -> None:
        for pid in self.live_processes():
            procfs.kill_if_traced_by(pid, os.getpid(), signal.SIGKILL)

    # -- the loop ------------------------------------------------------------------------

    def _emit(self, event: Event) -> None:
        # Events wait until the tracee has been resumed: building, scrubbing and writing a
        # record line then overlaps with the build instead of stalling it.
        self._pending.append(event)

    def flush(self) -> None:
        """Hand the events gathered so far to the sink (the loop does it after each stop)."""
        if self._pending:
            events, self._pending = self._pending, []
            self.sink(events)

    def _step(self) -> None:
        try:
            self._handle_stop()
        finally:
            self.flush()

    def _idle(self) -> None:
        """Nothing to do until the build stops again: record fanotify's events (when due), write the record."""
        if self.fan is not None:
            self.fan.tick()
        self.flush()
        self._on_idle()

    def _handle_stop(self) -> None:
        try:
            tid, status, batched = self._waiter.next_stop(self._idle)
        except ChildProcessError:
            self.threads.clear()
            return
        self.stops += batched + 1
        if self.fan is not None and self.stops % DRAIN_EVERY == 0:
            self.fan.drain()
        if os.WIFEXITED(status) or os.WIFSIGNALED(status):
            self.drain_file_events(reaped=tid)  # all queued before it became a zombie: before its exit
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

    def _adopt(self, tid: int) -> TracedThread:
        """A stop from a tid we have not met: a new child whose first stop came before its
        parent's fork event. Its parent is read from /proc now, so the record never holds
        an event from a process it hasn't introduced."""
        ids = procfs.tgid_and_ppid(tid)
        tgid, ppid = ids if ids else (tid, 0)
        creator = tgid if tgid != tid else ppid
        # Stepped only if its creator is (a hook's filter is inherited): which thread forked isn't known.
        deep = any(t.deep for t in self.threads.values() if t.tgid == creator)
        self.threads[tid] = thread = TracedThread(tid, tgid, deep=deep)
        self.network.inherit(self.threads.get(creator), thread)  # forker unknown: its leader
        self._adopted_early[tid] = creator
        known = self.processes.get(tid)
        if tgid == tid and (known is None or known.exited):
            parent = self.processes.get(ppid)
            in_hook = parent.in_hook if parent else False
            self.processes[tid] = TracedProcess(tid, ppid, argv=list(parent.argv) if parent else [], in_hook=in_hook)
            self._emit(ProcessStart(pid=tid, ppid=ppid))
        return thread

    def _resume(self, thread: TracedThread, sig: int = 0) -> None:
        pt.resume(thread.tid, sig, step_syscalls=thread.steps_syscalls)

    def _on_gone(self, tid: int, status: int) -> None:
        thread = self.threads.pop(tid, None)
        tgid = thread.tgid if thread else tid
        self.network.close_pidfd(tid)
        if tgid != tid:
            return  # a thread ended; its process goes on
        self.network.forget_dns_sockets(tid)
        code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else None
        sig = os.WTERMSIG(status) if os.WIFSIGNALED(status) else None
        process = self.processes.get(tid)
        if process is not None and not process.exited:
            process.exited = True
            self._emit(ProcessExit(pid=tid, exit_code=code, signal=sig))
        for other in [t for t in self.threads.values() if t.tgid == tid]:
            del self.threads[other.tid]
        for orphan in [child for child, creator in self._adopted_early.items() if creator == tid]:
            del self._adopted_early[orphan]
        if tid == self.root_pid and self.root_exit is None:
            self.root_exit = BuildExit(code, sig)

    def _on_event_stop(self, thread: TracedThread, sig: int) -> None:
        if not thread.started:
            thread.started = True  # the first stop of an auto-attached child
            self._resume(thread)
        elif sig in _STOP_SIGNALS:
            pt.listen(thread.tid)  # a real group-stop: stay stopped until SIGCONT
        else:
            self._resume(thread)

    def _on_ptrace_event(self, thread: TracedThread, event: int) -> None:
        if event in (pt.EVENT_FORK, pt.EVENT_VFORK, pt.EVENT_CLONE):
            self._on_new_task(thread, pt.event_message(thread.tid), event)
        elif event == pt.EVENT_EXEC:
            self.drain_file_events()  # a file written and now run must be known as written
            self._on_exec_done(thread, pt.event_message(thread.tid))
        elif event == pt.EVENT_SECCOMP:
            self._on_seccomp(thread)
            return
        self._resume(thread)

    def _on_new_task(self, parent: TracedThread, child_tid: int, event: int) -> None:
        if child_tid in self._adopted_early:
            # Already introduced at its own first stop, and perhaps already gone: its pid can't
            # have been reused yet, since its parent, stopped here, hasn't reaped it.
            del self._adopted_early[child_tid]
            return
        tgid = child_tid
        if event == pt.EVENT_CLONE:
            ids = procfs.tgid_and_ppid(child_tid)
            tgid = ids[0] if ids else child_tid
        self.threads[child_tid] = child = TracedThread(child_tid, tgid, deep=parent.deep)
        self.network.inherit(parent, child)
        if tgid == child_tid:
            parent_process = self.processes.get(parent.tgid)
            argv = list(parent_process.argv) if parent_process else []
            in_hook = parent_process.in_hook if parent_process else False
            self.processes[child_tid] = TracedProcess(child_tid, parent.tgid, argv=argv, in_hook=in_hook)
            self._emit(ProcessStart(pid=child_tid, ppid=parent.tgid))

    def _on_exec_done(self, thread: TracedThread, former_tid: int) -> None:
        pid = thread.tid
        if former_tid != pid:
            # A non-leader thread exec'd: it now has the leader's pid, the others are gone.
            execing = self.threads.pop(former_tid, None)
            if execing is not None:
                thread.pending_exec = execing.pending_exec
            for other in [t for t in self.threads.values() if t.tgid == pid and t.tid != pid]:
                del self.threads[other.tid]
        self.network.exec_done(thread)
        thread.pending_exit = None
        event = procfs.exec_event(pid, thread.pending_exec, former_tid)
        thread.pending_exec = None
        process = self.processes.setdefault(pid, TracedProcess(pid, 0))
        process.argv = event.argv
        self._emit(event)
        if self.options.follow_hooks and not process.in_hook:
            parent = self.processes.get(process.ppid)
            if detect_hook(event, parent.last_exec if parent else None, pid, 0) is not None:
                # From here on this process and its descendants stop at every syscall: a
                # hook's reads of credentials are invisible to the write-only filter.
                process.in_hook = True
                if self.fan is not None:
                    self.fan.watch_reads(True)  # a hook's reads are its open events
                else:
                    thread.injection = Injection()
        process.last_exec = event
        if event.exe.startswith("/memfd:"):
            self._emit(Anomaly(pid=pid, anomaly=AnomalyKind.MEMFD_EXEC, detail=event.exe))
        if event.path in self.files.written:
            # Written earlier in this run and now run: hash it as it is executed, since it
            # may be gone (or different) by the end of the run.
            self.files.hash_written(event.path)

    def _on_syscall_stop(self, thread: TracedThread) -> None:
        info = pt.syscall_info(thread.tid)
        if info.op == pt.SYSCALL_INFO_EXIT:
            action = thread.pending_exit
            if action is not None:
                thread.pending_exit = None
                action(info.rval)
        elif info.op == pt.SYSCALL_INFO_ENTRY and thread.injection is not None:
            if info.arch == pt.AUDIT_ARCH_X86_64:
                inject_hook_filter(thread)
        elif info.op == pt.SYSCALL_INFO_ENTRY:
            if thread.deep and info.arch == pt.AUDIT_ARCH_X86_64:
                entry = self._hook_entries.get(info.nr)
                if entry is not None:
                    decode, handle = entry
                    handle(thread, decode(thread.tgid, info.args, thread.memory))
            if thread.dns_sockets or thread.udp_sockets:
                thread.watch_budget -= 1
                if info.arch == pt.AUDIT_ARCH_X86_64:
                    self.network.on_stepped_syscall(thread, info.nr, info.args)
        self._resume(thread)

    def _on_seccomp(self, thread: TracedThread) -> None:
        info = pt.syscall_info(thread.tid)
        if info.arch != pt.AUDIT_ARCH_X86_64 or info.nr & X32_SYSCALL_BIT:
            self._escape.on_foreign_abi(thread, info.arch, info.nr)
        else:
            entry = self._entries.get(info.nr)
            if entry is not None:
                decode, handle = entry
                handle(thread, decode(thread.tgid, info.args, thread.memory))
        self._resume(thread)

    # -- handlers of the table's actions (the network's are NetworkWatch's) --------------

    def _on_exec(self, thread: TracedThread, path: str) -> None:
        thread.pending_exec = path  # recorded if the exec event follows

    def _on_io_uring(self, thread: TracedThread, event: Anomaly) -> None:
        self._emit(event)
        self.network.refuse_io_uring(thread)

    def _on_reach(self, thread: TracedThread, reach: Reach) -> None:
        process = self.processes.get(thread.tgid)
        # Only a hook's reads of another process's memory count (credential-read).
        if not self.guard.on_reach(thread, reach) and reach.read and process is not None and process.in_hook:
            self._emit(reach.read)
