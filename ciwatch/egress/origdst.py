"""Handing the original destination of a redirected connection from the tracer to the proxy.

In ``redirect`` mode the tracer rewrites a connect() to the proxy's loopback listener. Before
it lets the kernel connect, it registers the socket's inode with the original destination
(and the pid that connects). When the proxy accepts, it maps the peer's port to the client
socket's inode through /proc/net/{tcp,tcp6,udp,udp6}, so there is no race: the entry exists
before the connection does.
"""

from __future__ import annotations

import ipaddress
import threading

from ciwatch.dataclass import dataclass


@dataclass(frozen=True)
class OriginalDestination:
    pid: int
    address: str
    port: int


def _hex_address(address: str) -> str:
    """An address as /proc/net/* spells it (each 32-bit word in host byte order)."""
    packed = ipaddress.ip_address(address).packed
    return "".join(packed[i : i + 4][::-1].hex().upper() for i in range(0, len(packed), 4))


def socket_inode(local: tuple[str, int], remote: tuple[str, int] | None, protocol: str) -> int | None:
    """The inode of the socket bound to ``local`` and connected to ``remote`` (any peer when
    ``remote`` is None), from the kernel's socket tables; None if there is none."""
    family6 = ":" in local[0]
    table = f"/proc/net/{protocol}{'6' if family6 else ''}"
    want_local = f"{_hex_address(local[0])}:{local[1]:04X}"
    want_remote = f"{_hex_address(remote[0])}:{remote[1]:04X}" if remote else None
    try:
        with open(table) as stream:
            next(stream)
            for line in stream:
                fields = line.split()
                if fields[1] == want_local and (want_remote is None or protocol == "udp" or fields[2] == want_remote):
                    return int(fields[9])
    except (OSError, StopIteration, IndexError, ValueError):
        return None
    return None


def parse_proc_net_address(text: str) -> tuple[str, int]:
    """An address as /proc/net/* spells it (each 32-bit word in host byte order); a v4-mapped
    IPv6 address as the IPv4 address the listener sees."""
    address_hex, port_hex = text.split(":")
    raw = bytes.fromhex(address_hex)
    packed = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    address = ipaddress.ip_address(packed)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return str(address), int(port_hex, 16)


def lookup_in_namespace(
    namespace_pid: int, local: tuple[str, int], protocol: str
) -> tuple[tuple[str, int], int] | None:
    """(the peer the socket bound to ``local`` is connected to, its inode), read from the
    socket table of another network namespace (a process in it names it). In sandbox mode,
    that peer is the original destination: the NAT happened below the socket."""
    want_local = f"{_hex_address(local[0])}:{local[1]:04X}"
    for table in (f"/proc/{namespace_pid}/net/{protocol}", f"/proc/{namespace_pid}/net/{protocol}6"):
        try:
            with open(table) as stream:
                next(stream)
                for line in stream:
                    fields = line.split()
                    if fields[1] == want_local:
                        return parse_proc_net_address(fields[2]), int(fields[9])
        except (OSError, StopIteration, IndexError, ValueError):
            continue
    return None


class OriginalDestinations:
    """inode -> original destination; written by the tracer thread, read by the proxy's."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_inode: dict[int, OriginalDestination] = {}
        self._by_peer: dict[tuple[str, int], OriginalDestination] = {}
        self.namespace_pids: list[int] = []
        """sandbox mode: processes in the build's network namespace, to read its socket tables."""

    def register(self, inode: int, destination: OriginalDestination) -> None:
        with self._lock:
            self._by_inode[inode] = destination

    def claim(self, inode: int, peer: tuple[str, int]) -> OriginalDestination | None:
        """Take the entry of a socket the proxy just accepted; remembered by peer address
        so the proxy's later hooks for this connection can find the pid."""
        with self._lock:
            destination = self._by_inode.pop(inode, None)
            if destination is not None:
                self._by_peer[peer] = destination
            return destination

    def remember_peer(self, peer: tuple[str, int], destination: OriginalDestination) -> None:
        with self._lock:
            self._by_peer[peer] = destination

    def by_peer(self, peer: tuple[str, int]) -> OriginalDestination | None:
        with self._lock:
            return self._by_peer.get(peer)

    def lookup_inode(self, inode: int) -> OriginalDestination | None:
        with self._lock:
            return self._by_inode.get(inode)
