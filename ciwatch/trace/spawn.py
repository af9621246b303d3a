"""Starting the build's root process under the tracer.

The child waits on a pipe until the tracer has seized it, installs the seccomp filter as
its very last act, and execs the command. An exec failure is reported back on a
close-on-exec pipe, so the tracer knows "not found" (127) from "not executable" (126).
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ciwatch.trace.seccomp import build_filter, install_filter

#: Prefix of the error text a child sends when the filter could not be installed.
SECCOMP_FAILURE = "seccomp:"


@dataclass(frozen=True)
class SpawnedRoot:
    pid: int
    go_fd: int
    """Write one byte here once the child is seized: it then execs."""
    error_fd: int
    """Empty at EOF when exec succeeded; otherwise ``errno:message``."""


def _reset_signals() -> None:
    # Python ignores SIGPIPE and SIGXFSZ and ciwatch ignores SIGINT; ignored dispositions
    # survive exec, so the build must get the defaults back to behave as it would untraced.
    for number in range(1, signal.NSIG):
        if number in (signal.SIGKILL, signal.SIGSTOP):
            continue
        with contextlib.suppress(OSError, ValueError):
            signal.signal(number, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_SETMASK, [])


def spawn_waiting(command: Sequence[str], env: Mapping[str, str], *, trace_receives: bool = False) -> SpawnedRoot:
    program = build_filter(trace_receives=trace_receives)
    go_read, go_write = os.pipe()
    error_read, error_write = os.pipe2(os.O_CLOEXEC)
    pid = os.fork()
    if pid == 0:  # the build's root, until exec
        try:
            os.close(go_write)
            os.close(error_read)
            _reset_signals()
            if not os.read(go_read, 1):
                os._exit(127)  # the tracer gave up before seizing us
            os.close(go_read)
            try:
                install_filter(program)
            except OSError as error:
                os.write(error_write, f"{error.errno}:{SECCOMP_FAILURE} {error.strerror}".encode())
                os._exit(126)
            os.execvpe(command[0], list(command), dict(env))
        except OSError as error:
            os.write(error_write, f"{error.errno}:{error.strerror}".encode())
            os._exit(127 if error.errno == errno.ENOENT else 126)
        except BaseException:  # noqa: BLE001 - nothing may escape a forked child
            os._exit(127)
        os._exit(127)
    os.close(go_read)
    os.close(error_write)
    return SpawnedRoot(pid, go_write, error_read)


def release(root: SpawnedRoot) -> None:
    os.write(root.go_fd, b"g")
    os.close(root.go_fd)


def read_exec_error(root: SpawnedRoot) -> tuple[int, str] | None:
    """The child's exec error, once it has exec'd or exited; None if exec succeeded."""
    chunks = []
    while chunk := os.read(root.error_fd, 4096):
        chunks.append(chunk)
    os.close(root.error_fd)
    if not chunks:
        return None
    code, _, message = b"".join(chunks).decode(errors="replace").partition(":")
    return int(code or 0), message
