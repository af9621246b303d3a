"""Decoding what a tracee hands to the network syscalls: socket addresses and DNS queries."""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass

AF_UNIX = 1
AF_INET = 2
AF_INET6 = 10

#: DNS record types worth naming; anything else is shown as TYPE<n>.
_QTYPES = {
    1: "A",
    2: "NS",
    5: "CNAME",
    6: "SOA",
    12: "PTR",
    15: "MX",
    16: "TXT",
    28: "AAAA",
    33: "SRV",
    35: "NAPTR",
    64: "SVCB",
    65: "HTTPS",
    255: "ANY",
}


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


@dataclass(frozen=True, slots=True)
class DnsQuestion:
    name: str
    qtype: str


def decode_dns_query(payload: bytes, *, tcp: bool = False) -> list[DnsQuestion]:
    """The questions of a DNS query message; [] if it is not one (or is malformed)."""
    if tcp:
        payload = payload[2:]
    if len(payload) < 12:
        return []
    flags, qdcount = struct.unpack_from(">HH", payload, 2)
    if flags & 0x8000 or qdcount == 0 or qdcount > 16:
        return []
    questions: list[DnsQuestion] = []
    offset = 12
    for _ in range(qdcount):
        labels = []
        while True:
            if offset >= len(payload):
                return questions
            length = payload[offset]
            offset += 1
            if length == 0:
                break
            if length & 0xC0:  # compression pointers do not occur in a question we send first
                return questions
            labels.append(payload[offset : offset + length].decode("ascii", "backslashreplace"))
            offset += length
        if offset + 4 > len(payload):
            return questions
        qtype = struct.unpack_from(">H", payload, offset)[0]
        offset += 4
        questions.append(DnsQuestion(".".join(labels) or ".", _QTYPES.get(qtype, f"TYPE{qtype}")))
    return questions
