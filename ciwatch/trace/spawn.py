"""Starting the build's root process under the tracer.

The child waits on a pipe until the tracer has seized it, installs the seccomp filter as
its very last act, and execs the command. An exec failure is reported back on a
close-on-exec pipe, so the tracer knows "not found" (127) from "not executable" (126).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import signal
from collections.abc import Mapping, Sequence

from ciwatch import terminal
from ciwatch.dataclass import dataclass
from ciwatch.trace.seccomp import build_filter, install_filter
from ciwatch.trace.unreachable import drop_ptrace_capability, make_reachable

#: Prefixes of the error text a child sends when the filter, the capability drop or the
#: namespace failed.
SECCOMP_FAILURE = "seccomp:"
CAPABILITY_FAILURE = "capabilities:"
NETNS_FAILURE = "network namespace:"
_CLONE_NEWNET = 0x40000000


@dataclass(frozen=True)
class Credentials:
    """Whom the build's root becomes before it execs (ciwatch runs as root to watch)."""

    uid: int
    gid: int
    groups: tuple[int, ...]


@dataclass(frozen=True)
class SpawnedRoot:
    pid: int
    go_fd: int
    """Carries the build's environment once the child is seized; at EOF it execs."""
    error_fd: int
    """Empty at EOF when exec succeeded; otherwise ``errno:message``."""
    ready_fd: int
    """One byte once the child is ready (in its own network namespace, if asked)."""


def _reset_signals() -> None:
    # Python ignores SIGPIPE and SIGXFSZ and ciwatch ignores SIGINT; ignored dispositions
    # survive exec, so the build must get the defaults back to behave as it would untraced.
    for number in range(1, signal.NSIG):
        if number in (signal.SIGKILL, signal.SIGSTOP):
            continue
        with contextlib.suppress(OSError, ValueError):
            signal.signal(number, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_SETMASK, [])


def _read_all(fd: int) -> bytes:
    chunks = []
    while chunk := os.read(fd, 1 << 16):
        chunks.append(chunk)
    return b"".join(chunks)


def encode_env(env: Mapping[str, str]) -> bytes:
    return b"".join(os.fsencode(k) + b"=" + os.fsencode(v) + b"\0" for k, v in env.items())


def _decode_env(data: bytes) -> dict[bytes, bytes]:
    env = {}
    for entry in data.split(b"\0"):
        name, sep, value = entry.partition(b"=")
        if sep:
            env[name] = value
    return env


def spawn_waiting(
    command: Sequence[str],
    *,
    trace_receives: bool = False,
    new_network_namespace: bool = False,
    fanotify: bool = False,
    run_as: Credentials | None = None,
) -> SpawnedRoot:
    """Fork the build's root. It waits until ``release`` sends its environment: by then the
    tracer has seized it, and the network it will run in is ready."""
    program = build_filter(trace_receives=trace_receives, fanotify=fanotify)
    go_read, go_write = os.pipe()
    ready_read, ready_write = os.pipe()
    error_read, error_write = os.pipe2(os.O_CLOEXEC)
    pid = os.fork()
    if pid == 0:  # the build's root, until exec
        try:
            os.close(go_write)
            os.close(error_read)
            os.close(ready_read)
            # A process group of its own: the build's `kill 0` must not reach ciwatch.
            os.setpgid(0, 0)
            _reset_signals()
            if new_network_namespace:
                libc = ctypes.CDLL(None, use_errno=True)  # os.unshare is 3.12+
                if libc.unshare(_CLONE_NEWNET) != 0:
                    code = ctypes.get_errno()
                    os.write(error_write, f"{code}:{NETNS_FAILURE} {os.strerror(code)}".encode())
                    os._exit(126)
            # Forked from ciwatch, which is not dumpable (:mod:`ciwatch.trace.unreachable`):
            # a tracer without CAP_SYS_PTRACE could not seize it otherwise.
            make_reachable()
            os.write(ready_write, b"r")
            os.close(ready_write)
            message = _read_all(go_read)
            if not message.startswith(b"g"):
                os._exit(127)  # the tracer gave up before releasing us
            os.close(go_read)
            env = _decode_env(message[1:])
            try:
                # The kernel's guard of ciwatch's memory and /proc files: without it, a root
                # build could open /proc/<tracer>/mem or process_vm_writev into the tracer.
                drop_ptrace_capability()
            except OSError as error:
                os.write(error_write, f"{error.errno}:{CAPABILITY_FAILURE} {error.strerror}".encode())
                os._exit(126)
            try:
                # As root still: the filter needs no no_new_privs then, so setuid programs
                # (sudo) keep working in the build as they would untraced.
                install_filter(program)
            except OSError as error:
                os.write(error_write, f"{error.errno}:{SECCOMP_FAILURE} {error.strerror}".encode())
                os._exit(126)
            if run_as is not None:
                os.setgroups(list(run_as.groups))
                os.setgid(run_as.gid)
                os.setuid(run_as.uid)
            os.execvpe(command[0], list(command), env)
        except OSError as error:
            os.write(error_write, f"{error.errno}:{error.strerror}".encode())
            os._exit(127 if error.errno == errno.ENOENT else 126)
        except BaseException:  # noqa: BLE001 - nothing may escape a forked child
            os._exit(127)
        os._exit(127)
    with contextlib.suppress(OSError):
        os.setpgid(pid, pid)  # also here: whichever of the two runs first, the group exists
    os.close(go_read)
    os.close(error_write)
    os.close(ready_write)
    return SpawnedRoot(pid, go_write, error_read, ready_read)


def wait_ready(root: SpawnedRoot) -> bool:
    """True once the child is ready; False if it failed (its error is in ``error_fd``)."""
    ready = os.read(root.ready_fd, 1) == b"r"
    os.close(root.ready_fd)
    return ready


def release(root: SpawnedRoot, env: Mapping[str, str]) -> None:
    """Hand the child its environment (and the terminal, if ciwatch has it); it then
    installs the filter and execs."""
    terminal.hand_to(root.pid)
    data = b"g" + encode_env(env)
    view = memoryview(data)
    try:
        while view:
            written = os.write(root.go_fd, view)
            view = view[written:]
    except BrokenPipeError:
        pass  # the root was killed before it could exec: its death is the build's end
    finally:
        os.close(root.go_fd)


def read_exec_error(root: SpawnedRoot) -> tuple[int, str] | None:
    """The child's exec error, once it has exec'd or exited; None if exec succeeded."""
    data = _read_all(root.error_fd)
    os.close(root.error_fd)
    if not data:
        return None
    code, _, message = data.decode(errors="replace").partition(":")
    return int(code or 0), message
