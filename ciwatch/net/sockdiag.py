"""One TCP socket looked up by its addresses, asked of the kernel (sock_diag): a hash look-up,
where reading /proc/net/tcp walks the whole connection table (12 ms on a 2-core VM with an idle
table). The kernel looks the id up as a packet from ``remote`` to ``local`` would be: an
established socket first, then a listener (one bound to the wildcard address too), so asking
with no remote end (``0.0.0.0:0``) finds the listener a connect to ``local`` reaches."""

from __future__ import annotations

import ipaddress
import socket
import struct

Address = tuple[str, int]

# linux/sock_diag.h, linux/inet_diag.h
_NETLINK_SOCK_DIAG = 4
_SOCK_DIAG_BY_FAMILY = 20
_NLM_F_REQUEST = 1
_NO_COOKIE = 0xFFFFFFFF
_ALL_STATES = 0xFFFFFFFF
_NLMSG_HEADER = 16
_INODE_OFFSET = 4 + 48 + 16
"""In inet_diag_msg: family, state, timer, retrans; the socket id; expires, queues, uid."""


def tcp_socket_inode(local: Address, remote: Address) -> int | None:
    """The inode of the TCP socket whose local end is ``local`` and remote end ``remote``
    (a listener for a remote end of ``("0.0.0.0", 0)``, or ``("::", 0)``). None: no such
    socket, or a socket no process holds (not yet accepted, orphaned). Raises OSError when
    sock_diag can't be used (an old kernel, a seccomp'd container)."""
    with socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, _NETLINK_SOCK_DIAG) as diag:
        diag.settimeout(1.0)
        return _ask(diag, local, remote, 1)


class TcpListeners:
    """``tcp_listener_inode`` over one netlink socket kept open: a third of the cost of a query
    on a new socket, for the tracer's look-up at every loopback connect (one thread only)."""

    def __init__(self) -> None:
        self._diag: socket.socket | None = None
        self._sequence = 0

    def inode(self, local: Address) -> int | None:
        if self._diag is None:
            self._diag = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, _NETLINK_SOCK_DIAG)
            self._diag.settimeout(1.0)
        self._sequence = self._sequence % 0xFFFFFFFF + 1
        try:
            return _ask(self._diag, local, _nowhere(local), self._sequence)
        except OSError:
            self._diag.close()  # a reply may be left behind: start afresh next time
            self._diag = None
            raise


def _ask(diag: socket.socket, local: Address, remote: Address, sequence: int) -> int | None:
    family = socket.AF_INET6 if ":" in local[0] else socket.AF_INET
    socket_id = (
        struct.pack(">HH", local[1], remote[1])
        + ipaddress.ip_address(local[0]).packed.ljust(16, b"\0")
        + ipaddress.ip_address(remote[0]).packed.ljust(16, b"\0")
        + struct.pack("=III", 0, _NO_COOKIE, _NO_COOKIE)
    )
    request = struct.pack("=BBBBI", family, socket.IPPROTO_TCP, 0, 0, _ALL_STATES) + socket_id
    header = struct.pack("=IHHII", _NLMSG_HEADER + len(request), _SOCK_DIAG_BY_FAMILY, _NLM_F_REQUEST, sequence, 0)
    diag.send(header + request)
    reply = diag.recv(65536)
    while len(reply) >= _NLMSG_HEADER and struct.unpack_from("=I", reply, 8)[0] != sequence:
        reply = diag.recv(65536)  # a reply to an earlier question
    if len(reply) < _NLMSG_HEADER + _INODE_OFFSET + 4:
        return None  # an NLMSG_ERROR: no socket has these addresses
    (message_type,) = struct.unpack_from("=H", reply, 4)
    if message_type != _SOCK_DIAG_BY_FAMILY:
        return None
    (inode,) = struct.unpack_from("=I", reply, _NLMSG_HEADER + _INODE_OFFSET)
    return inode or None


def tcp_listener_inode(local: Address) -> int | None:
    """The inode of the listening socket a TCP connect to ``local`` reaches (see the module)."""
    return tcp_socket_inode(local, _nowhere(local))


def _nowhere(local: Address) -> Address:
    return ("::", 0) if ":" in local[0] else ("0.0.0.0", 0)
