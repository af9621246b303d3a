"""Socket addresses as the kernel lays them out, and the address facts every stage asks
(is it loopback, is it a v4-mapped IPv6 address)."""

from __future__ import annotations

import ipaddress
import struct

from ciwatch.dataclass import dataclass

AF_UNIX = 1
AF_INET = 2
AF_INET6 = 10


@dataclass(frozen=True, slots=True)
class SocketAddress:
    family: str
    """``inet`` or ``inet6``."""
    address: str
    port: int


def decode_sockaddr(data: bytes) -> SocketAddress | None:
    """An IPv4 or IPv6 address with its port; None for other families (unix, netlink...)."""
    if len(data) < 2:
        return None
    family = struct.unpack_from("<H", data)[0]
    if family == AF_INET and len(data) >= 8:
        port = struct.unpack_from(">H", data, 2)[0]
        return SocketAddress("inet", str(ipaddress.IPv4Address(data[4:8])), port)
    if family == AF_INET6 and len(data) >= 24:
        port = struct.unpack_from(">H", data, 2)[0]
        return SocketAddress("inet6", str(ipaddress.IPv6Address(data[8:24])), port)
    return None


def encode_sockaddr(original: bytes, target: SocketAddress) -> bytes:
    """``original`` (a sockaddr_in or sockaddr_in6) pointing at ``target`` instead, the same
    length, so it can be written over the tracee's buffer. An IPv4 target in an IPv6
    sockaddr is written as a v4-mapped address."""
    family = struct.unpack_from("<H", original)[0]
    out = bytearray(original)
    struct.pack_into(">H", out, 2, target.port)
    if family == AF_INET:
        out[4:8] = ipaddress.IPv4Address(target.address).packed
    else:
        address = ipaddress.ip_address(target.address)
        packed = address.packed if address.version == 6 else b"\0" * 10 + b"\xff\xff" + address.packed
        out[8:24] = packed
        if len(out) >= 28:
            out[24:28] = b"\0\0\0\0"  # scope id: the loopback listener needs none
    return bytes(out)


def is_loopback(address: str) -> bool:
    """127.0.0.0/8, ::1 or a v4-mapped loopback address; False for anything not an address."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback


def ipv4_mapped(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    return isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None
