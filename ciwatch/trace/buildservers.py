"""Build servers outside the trace: a process of the build that connects to a local server
(loopback TCP, a unix stream socket) held by a process the tracer doesn't follow (a Gradle
daemon, a compiler cache's server started before ``ciwatch run``) hands it work whose
execs, writes and fetches the record never shows. Recorded as a ``build-server`` event.

Looked up when the connect returns, while the server is certainly there. What the build
connects to locally is mostly itself (a test's server, a database its tests started) or the
machine's services (nscd, dbus, journald): only known build servers, and servers caught
running compilers or build tools of their own, are recorded. Loopback connects are frequent
in some builds, so the cost is one sock_diag query (TCP) or one getsockopt (unix) per
connect, and the search for a listener's holder is made once per listening socket.
"""

from __future__ import annotations

import os
import socket
import struct
from collections.abc import Callable, Collection, Iterator

from ciwatch.facts.buildservers import adopts_orphans, build_tool_among, known_server
from ciwatch.net.address import SocketAddress, is_loopback
from ciwatch.net.sockdiag import TcpListeners
from ciwatch.record.events import BuildServer, Event
from ciwatch.trace import procfs
from ciwatch.trace.decode.network import UnixConnect
from ciwatch.trace.sockets import SocketInspector
from ciwatch.trace.tasks import TracedThread

_STREAM_TYPES = frozenset({int(socket.SOCK_STREAM), int(socket.SOCK_SEQPACKET)})


class BuildServerWatch:
    def __init__(
        self,
        emit: Callable[[Event], None],
        is_traced: Callable[[int], bool],
        own_pids: Collection[int] = (),
        own_loopback: bool = True,
    ) -> None:
        self._emit = emit
        self._own_loopback = own_loopback
        """False in ``--net sandbox``: the build's loopback is its namespace's, where only the
        build is (a process that changes namespace otherwise is tracer-evasion's), so loopback
        TCP can't reach a server outside; unix sockets (by path) still can."""
        self._is_traced = is_traced
        self._ignored = frozenset(own_pids) | _ancestors(os.getpid())
        """ciwatch's own processes (its proxy is a local server) and those that started it
        (the CI runner runs build tools: the build itself)."""
        self._holders: dict[int, int | None] = {}
        """Listening socket's inode -> the untraced process holding it (None: the build's, or
        nobody's that can be seen)."""
        self._servers: dict[int, str | None] = {}
        """Untraced process -> what build server it is (None: not one)."""
        self._reported: set[tuple[int, int]] = set()
        self._listeners = TcpListeners()
        self._unix_checked: set[str] = set()
        """Unix socket names whose server is not an outside build server (or that nothing
        listened on): later connects to them are not stopped at their return."""

    def on_tcp(self, tgid: int, destination: SocketAddress) -> None:
        """A TCP connect of ``tgid`` succeeded (or is in progress)."""
        if not self._own_loopback or not is_loopback(destination.address):
            return
        try:
            inode = self._listeners.inode((destination.address, destination.port))
        except (OSError, ValueError):
            return
        if inode is None:
            return
        if inode not in self._holders:
            self._holders[inode] = self._outside_holder(inode)
        holder = self._holders[inode]
        if holder is not None:
            self._judge(tgid, holder, f"tcp {destination.address}:{destination.port}")

    def watch_unix_connect(self, thread: TracedThread, call: UnixConnect, sockets: SocketInspector) -> None:
        """A unix connect's entry: its server is asked for once it has connected, unless that
        socket's server was already found not to be an outside build server (nscd, dbus and
        journald are connected to again and again: their connects then cost no extra stop)."""
        if call.path in self._unix_checked:
            return

        def connected(result: int) -> None:
            found: list[bool] = []
            if result == 0:
                sockets.with_duplicate(
                    thread.tgid, call.fd, lambda fd: found.append(self.on_unix(thread.tgid, fd, call.path))
                )
            if not any(found):
                self._unix_checked.add(call.path)

        thread.pending_exit = connected

    def on_unix(self, tgid: int, socket_fd: int, path: str) -> bool:
        """A unix stream connect of ``tgid`` succeeded; ``socket_fd`` is a duplicate of its
        socket (the caller closes it). The kernel gave it the credentials of the process that
        listened: the server, asked without searching anything. True: an outside build server."""
        try:
            duplicate = socket.socket(fileno=socket_fd)
            try:
                if duplicate.getsockopt(socket.SOL_SOCKET, socket.SO_TYPE) not in _STREAM_TYPES:
                    return False
                credentials = duplicate.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12)
            finally:
                duplicate.detach()  # the caller closes it
        except OSError:
            return False
        (server_pid,) = struct.unpack_from("=i", credentials)
        if server_pid <= 0 or self._is_traced(server_pid) or server_pid in self._ignored:
            return False
        return self._judge(tgid, server_pid, f"unix {path}")

    def _judge(self, tgid: int, server_pid: int, endpoint: str) -> bool:
        """Record ``tgid``'s connect to ``server_pid`` if that is a build server (True)."""
        if (tgid, server_pid) in self._reported:
            return True
        if server_pid not in self._servers:
            self._servers[server_pid] = _what_server(server_pid)
        server = self._servers[server_pid]
        if server is None:
            return False
        self._reported.add((tgid, server_pid))
        argv = procfs.cmdline(server_pid)
        self._emit(BuildServer(pid=tgid, server_pid=server_pid, server=server, argv=argv, endpoint=endpoint))
        return True

    def _outside_holder(self, inode: int) -> int | None:
        """The process outside the trace that holds the listening socket ``inode``; None when
        it is the build's (its processes are searched as the others: a listener can't be told
        apart otherwise) or ciwatch's. Newest first: a build's own servers are recent."""
        wanted = f"socket:[{inode}]"
        for pid in _pids_newest_first():
            if _holds(pid, wanted):
                if self._is_traced(pid) or pid in self._ignored:
                    return None
                return pid
        return None


def _what_server(pid: int) -> str | None:
    """The known build server ``pid`` is, or what build tool it runs (its children now)."""
    argv = procfs.cmdline(pid)
    known = known_server(argv)
    if known is not None:
        return known.name
    if pid == 1 or adopts_orphans(argv):
        return None  # its children are whatever was orphaned or started as a service
    tool = build_tool_among(procfs.cmdline(child) for child in _children(pid))
    return f"a server running {tool}" if tool is not None else None


def _children(pid: int) -> Iterator[int]:
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return
    for task in tasks:
        for child in procfs.read_file(f"/proc/{pid}/task/{task}/children").split():
            yield int(child)


def _ancestors(pid: int) -> frozenset[int]:
    found: set[int] = set()
    while pid > 1 and pid not in found:
        found.add(pid)
        parents = procfs.tgid_and_ppid(pid)
        if parents is None:
            break
        pid = parents[1]
    return frozenset(found)


def _pids_newest_first() -> list[int]:
    return sorted((int(name) for name in os.listdir("/proc") if name.isdigit()), reverse=True)


def _holds(pid: int, wanted: str) -> bool:
    try:
        directory = os.open(f"/proc/{pid}/fd", os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return False  # gone, or another user's (unreadable without privileges)
    try:
        for fd in os.listdir(directory):
            try:
                if os.readlink(fd, dir_fd=directory) == wanted:
                    return True
            except OSError:
                continue
    except OSError:
        return False
    finally:
        os.close(directory)
    return False
