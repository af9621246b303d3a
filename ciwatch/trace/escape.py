"""What the tracer does when the build sets up a way around it (the table's ESCAPE rows).

Every one is recorded as an anomaly (the tracer-evasion rule judges it). Block mode refuses
the ones that would blind ciwatch (the syscall fails with EPERM, and the refusal is itself an
event, so the verdict says so); ``--net sandbox`` always refuses joining another network
namespace, the one way out of the sandbox. An untraced clone that audit mode lets through
loses its CLONE_UNTRACED, so the child is traced like any other.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from ptrace.binding.func import ptrace_getregs, ptrace_setregs

from ciwatch.record.events import Anomaly, Event
from ciwatch.record.vocabulary import AnomalyKind
from ciwatch.trace.decode.escapes import Escape
from ciwatch.trace.decode.network import Messages, UnixConnect
from ciwatch.trace.options import TracerOptions
from ciwatch.trace.ptrace_api import AUDIT_ARCH_I386
from ciwatch.trace.refuse import refuse_as_evasion
from ciwatch.trace.table import ACTED_ON, X32_SYSCALL_BIT, name_i386, name_x86_64
from ciwatch.trace.tasks import TracedThread


class EscapeWatch:
    def __init__(self, options: TracerOptions, emit: Callable[[Event], None], root: Callable[[], int]) -> None:
        self._emit = emit
        self._blocking = options.gate is not None
        self._root = root
        self._sandbox: int | None = None
        """The inode of the sandbox's network namespace (0: not in a sandbox), once known."""

    def on_foreign_abi(self, thread: TracedThread, arch: int, number: int) -> None:
        """A syscall of another ABI (i386 int 0x80, x32): its arguments aren't decoded, so
        block mode refuses the ones the tracer acts on in x86_64 (a connect it can't redirect,
        an open it can't see), rather than let them pass unjudged."""
        if arch == AUDIT_ARCH_I386:
            name, abi = name_i386(number), "i386 (int 0x80)"
        else:
            name, abi = name_x86_64(number & ~X32_SYSCALL_BIT), "x32"
        detail = f"{abi} syscall {name}"
        self._emit(Anomaly(pid=thread.tgid, anomaly=AnomalyKind.FOREIGN_ABI, detail=detail))
        if self._blocking and name in ACTED_ON:
            refuse_as_evasion(thread, AnomalyKind.FOREIGN_ABI, detail, self._emit)

    def _sandbox_namespace(self) -> int:
        """The build's network namespace if it is one of its own (``--net sandbox``: the root
        unshared it before it was traced), else 0. Learned at the first network syscall."""
        if self._sandbox is None:
            try:
                root = os.stat(f"/proc/{self._root()}/ns/net").st_ino
                self._sandbox = root if root != os.stat("/proc/self/ns/net").st_ino else 0
            except OSError:
                return 0  # the root is gone before anything connected: nothing to compare with
        return self._sandbox

    def _in_sandbox(self) -> bool:
        return self._sandbox_namespace() != 0

    def guard(self, handler: Callable[[TracedThread, Any], None]) -> Callable[[TracedThread, Any], None]:
        """``handler`` (connect, sendto, sendmsg), behind a check in ``--net sandbox``: a process
        whose network namespace is not the sandbox's would reach the outside other than through
        the proxy, so what it sends to an address is refused, whatever the mode. Outside a
        sandbox the check is one comparison."""

        def guarded(thread: TracedThread, call: Any) -> None:
            sandbox = self._sandbox_namespace() if call is not None else 0
            if sandbox and _has_destination(call):
                try:
                    namespace = os.stat(f"/proc/{thread.tgid}/ns/net").st_ino
                except OSError:
                    namespace = sandbox  # gone: its syscall won't run either
                if namespace != sandbox:
                    detail = f"a send or connect from network namespace net:[{namespace}], not the sandbox's"
                    self._emit(Anomaly(pid=thread.tgid, anomaly=AnomalyKind.NETWORK_NAMESPACE, detail=detail))
                    refuse_as_evasion(thread, AnomalyKind.NETWORK_NAMESPACE, detail, self._emit)
                    return
            handler(thread, call)

        return guarded

    def on_escape(self, thread: TracedThread, escape: Escape | None) -> None:
        if escape is None or thread.injection is not None:
            return  # ciwatch's own seccomp() call, adding the hook filter
        anomaly = escape.anomaly
        self._emit(anomaly)
        if (self._blocking and escape.blinds) or (escape.joins_namespace and self._in_sandbox()):
            refuse_as_evasion(thread, anomaly.anomaly, anomaly.detail, self._emit)
        elif escape.strip:
            # The kernel reads the arguments after the tracer has seen them (and runs the
            # filter again): the clone goes on without the flag.
            regs = ptrace_getregs(thread.tid)
            regs.rdi &= ~escape.strip & 0xFFFFFFFFFFFFFFFF
            ptrace_setregs(thread.tid, regs)


def _has_destination(call: object) -> bool:
    if isinstance(call, UnixConnect):
        return False  # a local socket, whatever the namespace
    if isinstance(call, Messages):
        return any(message.destination is not None for message in call.messages)
    return True  # a connect or a sendto with an address
