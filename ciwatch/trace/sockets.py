"""What a tracee's socket is, asked of a duplicate of it (pidfd_getfd): cheaper and surer
than parsing /proc/net at every connect. One pidfd per traced process, kept until it goes."""

from __future__ import annotations

import ctypes
import os
import socket
from collections.abc import Callable

from ciwatch.net.address import SocketAddress
from ciwatch.record.events import NetConnect
from ciwatch.record.vocabulary import ConnectVia, Transport

_libc = ctypes.CDLL(None, use_errno=True)
_SYS_PIDFD_GETFD = 438
_TRANSPORTS = {
    int(socket.SOCK_STREAM): Transport.TCP,
    int(socket.SOCK_DGRAM): Transport.UDP,
    int(socket.SOCK_RAW): Transport.RAW,
}


class SocketInspector:
    def __init__(self) -> None:
        self._pidfds: dict[int, int] = {}

    def close_pidfd(self, pid: int) -> None:
        pidfd = self._pidfds.pop(pid, None)
        if pidfd is not None:
            os.close(pidfd)

    def _duplicate(self, pid: int, fd: int) -> int:
        pidfd = self._pidfds.get(pid)
        if pidfd is None:
            pidfd = os.pidfd_open(pid)
            self._pidfds[pid] = pidfd
        return int(_libc.syscall(_SYS_PIDFD_GETFD, pidfd, fd, 0))

    def with_duplicate(self, pid: int, fd: int, use: Callable[[int], None]) -> None:
        """``use`` a duplicate of the tracee's ``fd`` (closed afterwards); nothing if it's gone."""
        try:
            dup = self._duplicate(pid, fd)
        except OSError:
            return
        if dup < 0:
            return
        try:
            use(dup)
        finally:
            os.close(dup)

    def transport(self, pid: int, fd: int) -> tuple[Transport, int]:
        """(tcp, udp or raw; the socket's inode)."""
        try:
            dup = self._duplicate(pid, fd)
            if dup < 0:
                return Transport.UNKNOWN, 0
            inode = os.fstat(dup).st_ino
            with socket.socket(fileno=dup) as duplicate:  # closes the duplicate, not the tracee's
                kind = duplicate.getsockopt(socket.SOL_SOCKET, socket.SO_TYPE)
        except OSError:
            return Transport.UNKNOWN, 0
        return _TRANSPORTS.get(int(kind), Transport.UNKNOWN), inode

    def family(self, pid: int, fd: int) -> tuple[int, int]:
        """(SO_DOMAIN, SO_PROTOCOL) of the socket, or (-1, -1)."""
        try:
            dup = self._duplicate(pid, fd)
            if dup < 0:
                return -1, -1
            with socket.socket(fileno=dup) as duplicate:
                return int(duplicate.family), duplicate.proto
        except OSError:
            return -1, -1


def connect_event(
    pid: int, destination: SocketAddress, protocol: Transport, result: int, via: ConnectVia, inode: int = 0
) -> NetConnect:
    """The record's line for a connect (redirected, refused or let through)."""
    return NetConnect(
        pid=pid,
        family=destination.family,
        address=destination.address,
        port=destination.port,
        protocol=protocol,
        result=result,
        via=via,
        inode=inode,
    )
