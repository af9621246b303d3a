"""The proxy's listening sockets, bound before the build starts and handed to mitmproxy and
the DNS forwarder once they have started.

Starting mitmproxy (importing it alone) takes most of a second; the build doesn't wait for it,
and a build that never connects doesn't start it at all (``EgressProxy``).
Its listeners exist from the start: a connection the build makes meanwhile completes into the
listener's backlog, a DNS query waits in the socket's receive queue, and both are served once
the proxy runs. Nothing can go around the proxy while it starts, since the addresses the
build is sent to (redirect, sandbox) or told about (env) are these sockets. Should the proxy
fail to start, the sockets are closed: what waits is refused, and the run fails with the
proxy's error (``EgressProxy``).
"""

from __future__ import annotations

import contextlib
import select
import socket
from typing import Any

from ciwatch.dataclass import dataclass, field
from ciwatch.errors import EnvironmentNotSupported

#: Connections the kernel completes before the proxy accepts them; more wait for a SYN retry.
_BACKLOG = 1024


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def _bound(host: str, kind: socket.SocketKind) -> socket.socket:
    sock = socket.socket(_family(host), kind)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, 0))
        if kind == socket.SOCK_STREAM:
            sock.listen(_BACKLOG)
    except OSError:
        sock.close()
        raise
    return sock


def _address(sock: socket.socket) -> tuple[str, int]:
    name = sock.getsockname()
    return str(name[0]), int(name[1])


@dataclass
class Listeners:
    """The sockets of one run's proxy: TCP listeners by address, and the DNS datagram sockets."""

    tcp: dict[tuple[str, int], socket.socket] = field(default_factory=dict)
    dns: list[socket.socket] = field(default_factory=list)

    @classmethod
    def bind(cls, tcp_hosts: list[str], dns_hosts: list[str]) -> Listeners:
        """Listen on each TCP host (a failure is this machine's: the run can't start) and on
        each DNS host that can be bound (a missing IPv6 loopback leaves IPv4's)."""
        listeners = cls()
        try:
            for host in tcp_hosts:
                sock = _bound(host, socket.SOCK_STREAM)
                listeners.tcp[_address(sock)] = sock
        except OSError as error:
            listeners.close()
            raise EnvironmentNotSupported(f"the egress proxy cannot listen on {host}: {error.strerror}") from None
        for host in dns_hosts:
            try:
                listeners.dns.append(_bound(host, socket.SOCK_DGRAM))
            except OSError:
                continue
        return listeners

    def address_of(self, host: str) -> tuple[str, int]:
        return next(address for address in self.tcp if address[0] == host)

    @property
    def dns_addresses(self) -> list[tuple[str, int]]:
        return [_address(sock) for sock in self.dns]

    def wait_for_use(self, timeout: float) -> None:
        """Return once something waits on a listener (a connection in a backlog, a query in a
        DNS socket's queue), or after ``timeout`` seconds; soon after they are closed."""
        with contextlib.suppress(OSError, ValueError):  # closed meanwhile: the build has ended
            select.select([*self.tcp.values(), *self.dns], [], [], timeout)

    def close(self) -> None:
        """Refuse whatever waits (a connection in the backlog gets a reset)."""
        for sock in [*self.tcp.values(), *self.dns]:
            sock.close()


def serve_prebound_in_mitmproxy(listeners: Listeners) -> None:
    """Make mitmproxy's servers listen on ``listeners``' sockets: a server whose address is one
    of theirs takes the socket instead of binding one of its own. Called on the proxy's thread,
    after mitmproxy is imported (mitmproxy 11 and 12 both bind in ``listen(host, port)``)."""
    import asyncio

    from mitmproxy.proxy import mode_servers

    server_class: Any = mode_servers.AsyncioServerInstance
    bind_own = server_class.listen

    async def listen(self: Any, host: str, port: int) -> list[Any]:
        sock = listeners.tcp.get((host, port))
        if sock is None:
            return await bind_own(self, host, port)  # type: ignore[no-any-return]
        return [await asyncio.start_server(self.handle_stream, sock=sock, backlog=_BACKLOG)]

    server_class.listen = listen
