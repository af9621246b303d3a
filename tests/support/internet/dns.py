"""The little of the DNS wire format that the test internet's resolver needs (stdlib only).

The server answers A and AAAA from a fixed zone, says NOERROR with no answer for other types of
a known name, NXDOMAIN for every other name, and never forwards anything anywhere.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass

TYPE_A = 1
TYPE_AAAA = 28
CLASS_IN = 1
RCODE_OK = 0
RCODE_FORMERR = 1
RCODE_NXDOMAIN = 3
RCODE_NOTIMP = 4

TYPE_NAMES = {1: "A", 2: "NS", 5: "CNAME", 6: "SOA", 12: "PTR", 15: "MX", 16: "TXT", 28: "AAAA", 33: "SRV", 65: "HTTPS"}


class DnsFormatError(ValueError):
    pass


@dataclass(frozen=True)
class Question:
    id: int
    flags: int
    name: str  # as received, without the trailing dot
    qtype: int
    qclass: int
    end: int  # offset just past the question

    @property
    def type_name(self) -> str:
        return TYPE_NAMES.get(self.qtype, str(self.qtype))


def read_name(message: bytes, offset: int) -> tuple[str, int]:
    """Decode a (possibly compressed) name; returns it and the offset after it."""
    labels: list[str] = []
    end: int | None = None
    for _ in range(128):  # bounded: a name has at most 127 labels, pointers included
        if offset >= len(message):
            raise DnsFormatError("name runs past the message")
        length = message[offset]
        if length == 0:
            return ".".join(labels), (offset + 1 if end is None else end)
        if length & 0xC0 == 0xC0:
            if offset + 1 >= len(message):
                raise DnsFormatError("truncated pointer")
            if end is None:
                end = offset + 2
            offset = ((length & 0x3F) << 8) | message[offset + 1]
            continue
        if length & 0xC0:
            raise DnsFormatError("bad label type")
        label = message[offset + 1 : offset + 1 + length]
        if len(label) != length:
            raise DnsFormatError("truncated label")
        labels.append(label.decode("ascii", errors="backslashreplace"))
        offset += 1 + length
    raise DnsFormatError("name too long or pointer loop")


def encode_name(name: str) -> bytes:
    out = b""
    for label in name.strip(".").split("."):
        raw = label.encode("ascii")
        if not raw or len(raw) > 63:
            raise ValueError(f"bad DNS label in {name!r}")
        out += bytes([len(raw)]) + raw
    return out + b"\0"


def parse_question(message: bytes) -> Question:
    if len(message) < 12:
        raise DnsFormatError("short header")
    ident, flags, qdcount = struct.unpack("!HHH", message[:6])
    if qdcount != 1:
        raise DnsFormatError(f"{qdcount} questions")
    name, offset = read_name(message, 12)
    if offset + 4 > len(message):
        raise DnsFormatError("truncated question")
    qtype, qclass = struct.unpack("!HH", message[offset : offset + 4])
    return Question(ident, flags, name, qtype, qclass, offset + 4)


def build_query(name: str, qtype: int = TYPE_A, ident: int = 0x4321) -> bytes:
    return struct.pack("!HHHHHH", ident, 0x0100, 1, 0, 0, 0) + encode_name(name) + struct.pack("!HH", qtype, CLASS_IN)


def error_response(message: bytes, rcode: int) -> bytes:
    ident = struct.unpack("!H", message[:2])[0] if len(message) >= 2 else 0
    return struct.pack("!HHHHHH", ident, 0x8180 | rcode, 0, 0, 0, 0)


def build_response(query: bytes, question: Question, rcode: int, addresses: list[str], ttl: int = 60) -> bytes:
    """The answer to ``query``: the question echoed, then one record per address."""
    rd = question.flags & 0x0100
    flags = 0x8000 | 0x0400 | rd | 0x0080 | rcode  # QR, AA, RD as asked, RA
    header = struct.pack("!HHHHHH", question.id, flags, 1, len(addresses), 0, 0)
    body = query[12 : question.end]
    for address in addresses:
        packed = ipaddress.ip_address(address).packed
        rtype = TYPE_A if len(packed) == 4 else TYPE_AAAA
        body += struct.pack("!HHHIH", 0xC00C, rtype, CLASS_IN, ttl, len(packed)) + packed
    return header + body


def parse_response_addresses(message: bytes) -> tuple[int, list[str]]:
    """(rcode, addresses of the A/AAAA answers) of a response; enough for the fixture's own probe."""
    if len(message) < 12:
        raise DnsFormatError("short response")
    _ident, flags, qdcount, ancount = struct.unpack("!HHHH", message[:8])
    offset = 12
    for _ in range(qdcount):
        _name, offset = read_name(message, offset)
        offset += 4
    addresses: list[str] = []
    for _ in range(ancount):
        _name, offset = read_name(message, offset)
        rtype, _rclass, _ttl, rdlength = struct.unpack("!HHIH", message[offset : offset + 10])
        offset += 10
        rdata = message[offset : offset + rdlength]
        offset += rdlength
        if rtype in (TYPE_A, TYPE_AAAA):
            addresses.append(str(ipaddress.ip_address(rdata)))
    return flags & 0x000F, addresses
