"""What the tracer needs from the egress proxy in ``redirect`` mode."""

from __future__ import annotations

from typing import Protocol

from ciwatch.trace.netdecode import SocketAddress


class Redirector(Protocol):
    def target(self, destination: SocketAddress, protocol: str) -> SocketAddress | None:
        """The proxy listener this connection or datagram should go to instead, or None to
        leave it alone (loopback, UDP other than DNS, a family with no listener)."""
        ...

    def register(self, inode: int, pid: int, destination: SocketAddress) -> None:
        """Remember the original destination of the socket with this inode, before the
        kernel connects it to the proxy."""
        ...
