"""The contact is what was connected (a Host or SNI claim is judged at the address the client
connected to), and DNS that reaches the proxy (TCP streams, DoH) is judged by its names."""

from __future__ import annotations

import base64
import struct

from mitmproxy import http
from mitmproxy.proxy.layers import tcp as tcp_layer
from mitmproxy.proxy.mode_specs import ProxyMode
from mitmproxy.test import tflow, tutils

from ciwatch.egress.addons.claims import Claims
from ciwatch.egress.addons.dnswatch import doh_questions, looks_like_dns
from ciwatch.gate.allowlist import RuntimeAllowlist
from ciwatch.modes import NetMode
from ciwatch.net.dns import DnsQuestion
from ciwatch.policy.model import Allowlist, HostPattern, Mode, Policy
from ciwatch.record.events import DnsAnswer, EgressFlow, Header, Refusal
from tests.unit.egress.test_addons import CLIENT, REGISTRY, Proxy, _response

REGISTRY_IP = "192.0.2.10"
EVIL_IP = "198.51.100.13"
RESOLVER = "192.0.2.53"


def _header() -> Header:
    return Header(1, "0", "h", [], "/", "", {}, {}, NetMode.REDIRECT, resolvers=[RESOLVER])


def _allowlist() -> RuntimeAllowlist:
    allowlist = RuntimeAllowlist(Policy(mode=Mode.BLOCK, allow=Allowlist(hosts=(HostPattern(REGISTRY),))))
    allowlist.observe(_header())
    return allowlist


def _answer(name: str, address: str, server: str = RESOLVER, transport: str = "udp") -> DnsAnswer:
    return DnsAnswer(1, name, "A", "NOERROR", [address], server, transport=transport)


def test_an_allowed_name_is_allowed_only_where_it_resolved() -> None:
    allowlist = _allowlist()
    allowlist.observe(_answer(REGISTRY, REGISTRY_IP))
    assert allowlist.allows_contact(REGISTRY, REGISTRY_IP)
    assert allowlist.allows_contact(REGISTRY, None)  # asked the proxy by name (env mode)
    assert not allowlist.allows_contact(REGISTRY, EVIL_IP)
    assert not allowlist.allows_contact("evil.test", REGISTRY_IP)  # fronting on an allowed address
    assert allowlist.needs_lookup(REGISTRY, EVIL_IP) and not allowlist.needs_lookup("evil.test", EVIL_IP)


def test_only_the_configured_resolvers_and_ciwatch_teach_where_a_name_lives() -> None:
    allowlist = _allowlist()
    allowlist.observe(_answer(REGISTRY, EVIL_IP, server=EVIL_IP))  # the attacker's own DNS server
    allowlist.observe(_answer(REGISTRY, EVIL_IP, server="doh.test", transport="doh"))
    assert not allowlist.allows_contact(REGISTRY, EVIL_IP)
    allowlist.observe(_answer(REGISTRY, REGISTRY_IP, server="ciwatch", transport="lookup"))
    assert allowlist.allows_contact(REGISTRY, REGISTRY_IP)


def _transparent(flow: http.HTTPFlow, address: str) -> http.HTTPFlow:
    flow.client_conn.proxy_mode = ProxyMode.parse("transparent")
    flow.server_conn.address = flow.server_conn.peername = (address, 443)
    return flow


def test_a_registry_name_sent_to_another_address_is_refused_at_that_address() -> None:
    proxy = Proxy()
    proxy.sink(_header())
    proxy.sink(_answer(REGISTRY, REGISTRY_IP))
    [claims] = [addon for addon in proxy.addons if isinstance(addon, Claims)]
    asked: list[str] = []

    async def resolve(name: str) -> DnsAnswer:
        asked.append(name)  # ciwatch's own look-up: answers the registry's real address
        return DnsAnswer(None, name, "A+AAAA", "NOERROR", [REGISTRY_IP], "ciwatch", transport="lookup")

    claims.resolve = resolve
    request = tutils.treq(host=REGISTRY, port=443, scheme=b"https", path=b"/x", content=b"")
    flow = _transparent(tflow.tflow(req=request), EVIL_IP)
    flow.client_conn.peername, flow.client_conn.sni = CLIENT, REGISTRY
    # ciwatch's own look-up of the claimed name comes first: it isn't at EVIL_IP either.
    assert not proxy.exchange(flow, _response("text/plain"))
    refusals = proxy.of(Refusal)
    assert [r.target for r in refusals] == [EVIL_IP] and refusals[0].rule == "unfamiliar-egress"
    [record] = proxy.of(EgressFlow)
    assert isinstance(record, EgressFlow) and record.refused and record.connected_to == EVIL_IP
    lookups = [e for e in proxy.of(DnsAnswer) if isinstance(e, DnsAnswer) and e.transport == "lookup"]
    assert [e.name for e in lookups] == [REGISTRY] and asked == [REGISTRY]

    allowed = _transparent(tflow.tflow(req=tutils.treq(host=REGISTRY, port=443, content=b"")), REGISTRY_IP)
    allowed.client_conn.peername, allowed.client_conn.sni = CLIENT, REGISTRY
    assert proxy.exchange(allowed, _response("text/plain"))


def _query(name: str, qtype: int = 1) -> bytes:
    labels = b"".join(bytes([len(part)]) + part.encode() for part in name.split("."))
    return struct.pack(">HHHHHH", 0x1234, 0x0100, 1, 0, 0, 0) + labels + b"\0" + struct.pack(">HH", qtype, 1)


def test_doh_requests_are_decoded_in_every_form() -> None:
    wire = _query("a1b2c3d4e5f6a7b8c9d0.exfil.test")
    post = tutils.treq(method=b"POST", path=b"/dns-query", content=wire)
    post.headers["content-type"] = "application/dns-message"
    assert doh_questions(post) == [DnsQuestion("a1b2c3d4e5f6a7b8c9d0.exfil.test", "A")]
    encoded = base64.urlsafe_b64encode(wire).rstrip(b"=")
    get = tutils.treq(method=b"GET", path=b"/dns-query?dns=" + encoded, content=b"")
    assert doh_questions(get) == [DnsQuestion("a1b2c3d4e5f6a7b8c9d0.exfil.test", "A")]
    json_api = tutils.treq(method=b"GET", path=b"/resolve?name=x.exfil.test&type=TXT", content=b"")
    assert doh_questions(json_api) == [DnsQuestion("x.exfil.test", "TXT")]
    plain = tutils.treq(method=b"GET", path=b"/pkg?name=left-pad", content=b"")
    assert doh_questions(plain) == []


def test_a_tcp_stream_is_dns_by_its_bytes_on_any_port() -> None:
    query = _query("x.exfil.test")
    framed = struct.pack(">H", len(query)) + query
    assert looks_like_dns(framed, 5353) is True
    assert looks_like_dns(framed[:3], 5353) is None  # a byte at a time is held, not let through
    assert looks_like_dns(b"GET / HTTP/1.1\r\n", 8080) is False
    assert looks_like_dns(b"x", 53) is True


def test_a_refused_tcp_query_never_leaves_even_split_in_pieces() -> None:
    proxy = Proxy()
    query = _query("secret.exfil.test")
    framed = struct.pack(">H", len(query)) + query
    flow = tflow.ttcpflow(messages=[])
    flow.client_conn.peername, flow.client_conn.sni = CLIENT, None
    flow.server_conn.address = flow.server_conn.peername = ("127.0.0.1", 5353)
    sent = b""
    for piece in (framed[:1], framed[1:9], framed[9:]):
        flow.messages.append(tcp_layer.tcp.TCPMessage(True, piece))
        proxy.hook(tcp_layer.TcpMessageHook(flow))
        sent += flow.messages[-1].content
    assert sent == b""
    assert [(r.what, r.target) for r in proxy.of(Refusal)] == [("dns", "secret.exfil.test")]
    [answer] = proxy.of(DnsAnswer)
    assert isinstance(answer, DnsAnswer) and (answer.transport, answer.rcode) == ("tcp", "REFUSED")
