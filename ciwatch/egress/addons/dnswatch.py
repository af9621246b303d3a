"""DNS that reaches the proxy rather than ciwatch's DNS listener: a DNS stream over TCP (port
53, or any port whose stream parses as DNS, inside TLS too), DNS-over-HTTPS (wire format by
POST or ``?dns=``, or the JSON API) to any host, and anything mitmproxy's own DNS layer would
handle. Each name is recorded (a ``DnsAnswer`` with its transport) and asked of the same gate
as the listener's, so dns-tunnel and unfamiliar-egress judge names from every transport the
same way; in block mode a refused query never leaves (a TCP query is held until it is whole
and answered REFUSED by ciwatch, a DoH request gets a 403) even when the server is allowed.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import re
import struct
from collections.abc import Callable

from mitmproxy import ctx, dns, http, tcp

from ciwatch.egress.addons.enforce import REFUSED
from ciwatch.egress.addons.peers import ClientPids, server_of
from ciwatch.gate.enforcer import LiveEnforcer
from ciwatch.net.dns import DnsQuestion, decode_dns_query, decode_dns_response, refusal_for
from ciwatch.record.events import DnsAnswer, Event

DNS_STREAM = "ciwatch_dns_stream"
"""flow.metadata key: the TCP flow's ``_Stream``, or False once it is known not to be DNS."""

_HEADER = 12
_NAME = re.compile(r"^[A-Za-z0-9_.-]+\.?$")


class _Stream:
    __slots__ = ("from_client", "from_server")

    def __init__(self) -> None:
        self.from_client = b""
        """Bytes of a query not yet whole: held back until it can be judged."""
        self.from_server = b""


def looks_like_dns(data: bytes, port: int) -> bool | None:
    """Whether a client's first bytes on a TCP stream are a DNS query (2-byte length, then a
    header with QR=0, opcode 0, 1 to 16 questions and no answers): True, False, or None while
    the bytes so far could still be one (a client that writes a byte at a time is held)."""
    if port == 53:
        return True
    checks: list[tuple[int, Callable[[bytes], bool]]] = [
        (2, lambda d: struct.unpack_from(">H", d)[0] >= _HEADER + 5),
        (5, lambda d: d[4] & 0xF8 == 0),
        (8, lambda d: d[6] == 0 and 1 <= d[7] <= 16),
        (14, lambda d: d[8:12] == b"\0\0\0\0"),
    ]
    for needed, check in checks:
        if len(data) < needed:
            return None
        if not check(data):
            return False
    return True


def doh_questions(request: http.Request) -> list[DnsQuestion]:
    """The questions of a DNS-over-HTTPS request (RFC 8484 wire format, by POST body or GET
    ``dns=``; or the JSON API's ``name=``), whatever the host and path; [] if it isn't one."""
    if request.method != "POST" and "?" not in request.path:
        return []  # no body and no query: nothing can carry a question (most requests)
    content_type = request.headers.get("content-type", "").lower()
    if request.method == "POST" and "dns-message" in content_type:
        return decode_dns_query(request.raw_content or b"")
    query = request.query
    wire = query.get("dns")
    if wire:
        try:
            return decode_dns_query(base64.urlsafe_b64decode(wire + "=" * (-len(wire) % 4)))
        except (binascii.Error, ValueError):
            return []
    name = query.get("name")
    accept = request.headers.get("accept", "").lower()
    if name and _NAME.match(name) and "." in name.strip(".") and ("type" in query or "dns-json" in accept):
        return [DnsQuestion(name.rstrip("."), query.get("type", "A").upper())]
    if request.method == "POST" and "dns-json" in content_type:
        try:
            body = json.loads(request.raw_content or b"{}")
        except ValueError:
            return []
        if isinstance(body, dict) and isinstance(body.get("name"), str):
            return [DnsQuestion(body["name"].rstrip("."), str(body.get("type", "A")))]
    return []


class DnsWatch:
    def __init__(self, sink: Callable[[Event], None], pids: ClientPids, enforcer: LiveEnforcer | None) -> None:
        self.sink = sink
        self.pids = pids
        self.enforcer = enforcer

    def _allowed(self, name: str, pid: int | None) -> bool:
        return self.enforcer is None or self.enforcer.dns_allowed(name, pid)

    def _judge(self, questions: list[DnsQuestion], pid: int | None, server: str, transport: str) -> bool:
        """Record each question and ask the gate; False if any was refused."""
        allowed = True
        for question in questions:
            ok = self._allowed(question.name, pid)
            rcode = "FORWARDED" if ok else "REFUSED"
            self.sink(DnsAnswer(pid, question.name, question.qtype, rcode, [], server, transport=transport))
            allowed = allowed and ok
        return allowed

    # -- DNS-over-HTTPS ------------------------------------------------------------------

    def request(self, flow: http.HTTPFlow) -> None:
        if flow.response is not None:
            return
        questions = doh_questions(flow.request)
        if questions and not self._judge(questions, self.pids.of_flow(flow), flow.request.pretty_host, "doh"):
            flow.metadata[REFUSED] = True
            flow.response = http.Response.make(
                403, b"ciwatch: DNS names outside the allowlist\n", {"content-type": "text/plain"}
            )

    # -- DNS over TCP --------------------------------------------------------------------

    def tcp_message(self, flow: tcp.TCPFlow) -> None:
        message = flow.messages[-1]
        stream = flow.metadata.get(DNS_STREAM)
        if stream is False:
            return
        if not message.from_client:
            if isinstance(stream, _Stream):
                self._answers(flow, stream, message.content)
            return
        held = stream.from_client if isinstance(stream, _Stream) else b""
        data = held + message.content
        if not isinstance(stream, _Stream):
            kind = looks_like_dns(data, server_of(flow)[1])
            if kind is False:
                flow.metadata[DNS_STREAM] = False
                message.content = data  # what was held while undecided goes now
                return
            stream = flow.metadata[DNS_STREAM] = _Stream()
            if kind is None:
                stream.from_client = data
                message.content = b""
                return
        message.content, stream.from_client = self._queries(flow, data)

    def _queries(self, flow: tcp.TCPFlow, data: bytes) -> tuple[bytes, bytes]:
        """(the whole queries that may go, the bytes held back)."""
        out = bytearray()
        pid = self.pids.of_flow(flow)
        server = server_of(flow)[0]
        while len(data) >= 2 and len(data) >= 2 + struct.unpack_from(">H", data)[0]:
            length = struct.unpack_from(">H", data)[0]
            query, data = data[2 : 2 + length], data[2 + length :]
            questions = decode_dns_query(query)
            if self._judge(questions, pid, server, "tcp"):
                out += struct.pack(">H", length) + query
            else:
                refusal = refusal_for(query)
                # If injecting fails the client times out instead: nothing left either way.
                with contextlib.suppress(Exception):
                    ctx.master.commands.call("inject.tcp", flow, True, struct.pack(">H", len(refusal)) + refusal)
        return bytes(out), data

    def _answers(self, flow: tcp.TCPFlow, stream: _Stream, data: bytes) -> None:
        data = stream.from_server + data
        pid = self.pids.of_flow(flow)
        while len(data) >= 2 and len(data) >= 2 + struct.unpack_from(">H", data)[0]:
            length = struct.unpack_from(">H", data)[0]
            reply, data = data[2 : 2 + length], data[2 + length :]
            response = decode_dns_response(reply)
            if response is not None and response.questions:
                question = response.questions[0]
                self.sink(
                    DnsAnswer(
                        pid, question.name, question.qtype, response.rcode, response.answers, server_of(flow)[0], "tcp"
                    )
                )
        stream.from_server = data

    # -- mitmproxy's own DNS layer -------------------------------------------------------

    def dns_request(self, flow: dns.DNSFlow) -> None:
        """Nothing mitmproxy routes to its DNS layer passes ciwatch's judgement unseen."""
        questions = [DnsQuestion(q.name, dns.types.to_str(q.type)) for q in flow.request.questions]
        peer = flow.client_conn.peername
        pid = self.pids.lookup((str(peer[0]), int(peer[1]))) if peer else None
        server = str(flow.server_conn.address[0]) if flow.server_conn.address else ""
        if not self._judge(questions, pid, server, "mitmproxy"):
            flow.response = flow.request.fail(dns.response_codes.REFUSED)
