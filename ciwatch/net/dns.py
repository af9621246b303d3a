"""DNS messages on the wire: the questions of a query and the answers of a response."""

from __future__ import annotations

import ipaddress
import struct

from ciwatch.dataclass import dataclass

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
class DnsQuestion:
    name: str
    qtype: str


def decode_dns_query(payload: bytes, *, tcp: bool = False) -> list[DnsQuestion]:
    """The questions of a DNS query message; [] if it is not one (or is malformed). Over TCP,
    ``payload`` is a stream of messages, each after its 2-byte length."""
    if tcp:
        # glibc writes its A and AAAA queries with one writev: decode every message.
        found: list[DnsQuestion] = []
        while len(payload) >= 2:
            length = struct.unpack_from(">H", payload)[0]
            found += decode_dns_query(payload[2 : 2 + length])
            payload = payload[2 + length :]
        return found
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


_RCODES = {0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP", 5: "REFUSED"}


def _read_name(payload: bytes, offset: int) -> tuple[str, int]:
    """A possibly compressed name at ``offset``; returns it and the offset after it."""
    labels: list[str] = []
    end = -1
    for _ in range(128):  # bounded: a pointer loop in a hostile reply must not hang us
        if offset >= len(payload):
            break
        length = payload[offset]
        if length & 0xC0 == 0xC0:
            if offset + 1 >= len(payload):
                break
            if end < 0:
                end = offset + 2
            offset = ((length & 0x3F) << 8) | payload[offset + 1]
            continue
        offset += 1
        if length == 0:
            break
        labels.append(payload[offset : offset + length].decode("ascii", "backslashreplace"))
        offset += length
    return ".".join(labels) or ".", end if end >= 0 else offset


@dataclass(frozen=True, slots=True)
class DnsResponse:
    rcode: str
    questions: list[DnsQuestion]
    answers: list[str]


def decode_dns_response(payload: bytes) -> DnsResponse | None:
    """Rcode, questions and the A/AAAA/CNAME answers of a DNS response; None if malformed."""
    if len(payload) < 12:
        return None
    flags, qdcount, ancount = struct.unpack_from(">HHH", payload, 2)
    if not flags & 0x8000:
        return None
    offset = 12
    questions = []
    for _ in range(min(qdcount, 16)):
        name, offset = _read_name(payload, offset)
        if offset + 4 > len(payload):
            return None
        qtype = struct.unpack_from(">H", payload, offset)[0]
        offset += 4
        questions.append(DnsQuestion(name, _QTYPES.get(qtype, f"TYPE{qtype}")))
    answers = []
    for _ in range(min(ancount, 64)):
        _, offset = _read_name(payload, offset)
        if offset + 10 > len(payload):
            break
        rtype, _, _, rdlength = struct.unpack_from(">HHIH", payload, offset)
        offset += 10
        rdata = payload[offset : offset + rdlength]
        if rtype == 1 and rdlength == 4:
            answers.append(str(ipaddress.IPv4Address(rdata)))
        elif rtype == 28 and rdlength == 16:
            answers.append(str(ipaddress.IPv6Address(rdata)))
        elif rtype == 5:
            answers.append(_read_name(payload, offset)[0])
        offset += rdlength
    return DnsResponse(_RCODES.get(flags & 0xF, f"RCODE{flags & 0xF}"), questions, answers)


def refusal_for(query: bytes) -> bytes:
    """A REFUSED response to ``query`` (same id and question)."""
    if len(query) < 12:
        return b""
    flags = struct.unpack_from(">H", query, 2)[0]
    response_flags = 0x8000 | (flags & 0x7900) | 0x0080 | 5  # QR, opcode+RD kept, RA, REFUSED
    return (
        query[:2] + struct.pack(">HHHHH", response_flags, struct.unpack_from(">H", query, 4)[0], 0, 0, 0) + query[12:]
    )
