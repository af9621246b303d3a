"""Waiting for the build's next stop while fanotify's queue keeps filling.

With file events from fanotify a build may run for seconds without a single stop (a compiler
writing thousands of files). A tracer blocked in ``waitpid`` would then find every event at
once when the build ends, and spend the run's last seconds on them. So while it waits, it
drains the queue every DRAIN_INTERVAL_MS, and wakes at once for a stop: every ptrace stop and
exit sends the tracer SIGCHLD, whose handler writes to a pipe (Python's wakeup fd) that the
wait polls along with its timer. A stop that comes between the last ``waitpid`` and the poll
has already written its byte: it is not missed.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import threading
from collections.abc import Callable

#: waitpid's flags for the tracer: every tracee (``__WALL``: threads and clone children too),
#: and only the tracer thread's own children and tracees (``__WNOTHREAD``): the registry
#: discovery thread's tools are children of this process too, and a wait for any child would
#: reap them under that thread's feet (it then takes a failed tool's exit code for 0).
TRACEE_WAIT = 0x40000000 | 0x20000000
#: How often the queue is drained while the build runs without stopping (or stops only at
#: what needs no drain). Each drain has a cost of its own (three groups read, every directory
#: of its events resolved again), and the kernel merges a file's creation, changes and close
#: into one event only while it waits in the queue. But an event's path is its directory's
#: path when it is drained: the longer the wait, the more of the build's directory renames and
#: copies fall between an event and its drain, to be undone from the batch's own events. At
#: 100 ms a pip PEP 517 build (setuptools moves its egg-info aside and back) lost a file's
#: write about one run in four (tests/test_recall_strace.py); at 20 ms none in 8.
DRAIN_INTERVAL_MS = 20


class IdleWaiter:
    """``wait`` is ``waitpid(-1, TRACEE_WAIT)`` that calls ``on_tick`` every DRAIN_INTERVAL_MS."""

    def __init__(self) -> None:
        self._read, self._write = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._poll = select.poll()
        self._poll.register(self._read, select.POLLIN)
        self.active = threading.current_thread() is threading.main_thread()
        """Signals reach Python's handlers in the main thread only: elsewhere, ``wait`` is a
        plain blocking waitpid."""
        if self.active:
            signal.signal(signal.SIGCHLD, _nothing)
            signal.set_wakeup_fd(self._write, warn_on_full_buffer=False)

    def wait(self, on_tick: Callable[[], None]) -> tuple[int, int]:
        if not self.active:
            return os.waitpid(-1, TRACEE_WAIT)
        while True:
            tid, status = os.waitpid(-1, TRACEE_WAIT | os.WNOHANG)
            if tid != 0:
                return tid, status
            if not self._poll.poll(DRAIN_INTERVAL_MS):
                on_tick()
            with contextlib.suppress(BlockingIOError):
                while os.read(self._read, 512):
                    pass

    def close(self) -> None:
        if self.active:
            signal.set_wakeup_fd(-1)
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            self.active = False
        os.close(self._read)
        os.close(self._write)


def _nothing(_signal: int, _frame: object) -> None:
    """SIGCHLD's handler: its only effect is the byte Python writes to the wakeup fd."""
