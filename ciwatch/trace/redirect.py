"""What the tracer needs from the egress proxy in ``redirect`` mode."""

from __future__ import annotations

from typing import Protocol

from ciwatch.net.address import SocketAddress
from ciwatch.record.vocabulary import Transport


class Redirector(Protocol):
    def target(self, destination: SocketAddress, protocol: Transport) -> SocketAddress | None:
        """The proxy listener this connection or datagram should go to instead, or None to
        leave it alone (loopback, UDP other than DNS, a family with no listener)."""
        ...

    def register(self, inode: int, pid: int, destination: SocketAddress) -> None:
        """Remember the original destination of the socket with this inode, before the
        kernel connects it to the proxy."""
        ...


class TrafficGate(Protocol):
    """Block mode's say on traffic that the proxy will not see."""

    def direct_traffic_refusal(self, address: str, port: int, protocol: Transport, pid: int) -> str | None:
        """A reason to refuse this connect or datagram, or None to let it go."""
        ...

    def io_uring_allowed(self, pid: int) -> bool: ...
