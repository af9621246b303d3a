"""What a client claims (Host header, SNI, a CONNECT target) against where it connected.

The contact is what was connected: in the transparent modes the build's client connected to
an address of its own choosing, and a Host header or SNI naming an allowed registry is only a
claim. An allowed name is allowed only at the addresses it resolved to during the run. Most
clients resolved the name through ciwatch's DNS listener, whose answers are in the record
already; when they aren't (a cached answer, a CDN that answers differently per lookup) this
addon resolves the claimed name itself, once per (name, address), and records the answer as a
``lookup`` so that the rules, and a replay, judge with the same addresses.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable

from mitmproxy import connection, http, tcp, tls
from mitmproxy.proxy.mode_specs import TransparentMode

from ciwatch.egress.addons.peers import forward_proxy_of
from ciwatch.gate.allowlist import RuntimeAllowlist, normalise_host
from ciwatch.record.events import DnsAnswer, Event

_LOOKUP_TIMEOUT_S = 5.0


def connected_to(client: connection.Client, server: connection.Server) -> str | None:
    """The address the build's client connected to, where it chose one (transparent modes:
    the original destination); None when it asked the proxy by name (a regular proxy). A client
    that spoke forward-proxy HTTP to the address it connected to: that address (its proxy)."""
    via = forward_proxy_of(client)
    if via is not None:
        return normalise_host(via[0])
    if isinstance(client.proxy_mode, TransparentMode) and server.address:
        return normalise_host(str(server.address[0]))
    return None


def claimed_names(flow: http.HTTPFlow | tcp.TCPFlow) -> list[str]:
    """Every name the client put forward: SNI and, for HTTP, the Host header (or the
    authority of an absolute-form or CONNECT request)."""
    names: list[str] = []
    if flow.client_conn.sni:
        names.append(flow.client_conn.sni)
    if isinstance(flow, http.HTTPFlow):
        host = flow.request.host_header or flow.request.pretty_host
        if host:
            names.append(normalise_host(host))
    return [name for name in dict.fromkeys(names) if name]


class Claims:
    def __init__(self, allowlist: RuntimeAllowlist, sink: Callable[[Event], None]) -> None:
        self.allowlist = allowlist
        self.sink = sink
        # Hooks all run on the proxy's event loop: no lock.
        self.looked_up: set[tuple[str, str]] = set()
        self.resolve: Callable[[str], Awaitable[DnsAnswer]] = _resolve
        """How a claimed name is resolved (tests replace it: no made-up name reaches a resolver)."""

    async def check(self, names: list[str], address: str | None) -> None:
        if address is not None and self.allowlist.is_forward_proxy(address):
            return  # the names are what the client asked its proxy for: the proxy resolves them
        for name in names:
            if not self.allowlist.needs_lookup(name, address):
                continue  # the common case: the client's own lookup passed ciwatch's listener
            assert address is not None
            key = (normalise_host(name), address)
            if key in self.looked_up:
                continue
            self.looked_up.add(key)
            self.sink(await self.resolve(key[0]))

    async def requestheaders(self, flow: http.HTTPFlow) -> None:
        await self.check(claimed_names(flow), connected_to(flow.client_conn, flow.server_conn))

    async def tcp_start(self, flow: tcp.TCPFlow) -> None:
        await self.check(claimed_names(flow), connected_to(flow.client_conn, flow.server_conn))

    async def tls_clienthello(self, data: tls.ClientHelloData) -> None:
        sni = data.client_hello.sni
        if sni:
            await self.check([sni], connected_to(data.context.client, data.context.server))


async def _resolve(name: str) -> DnsAnswer:
    """ciwatch's own resolution of ``name``, through the system resolver."""
    loop = asyncio.get_running_loop()
    try:
        infos = await asyncio.wait_for(loop.getaddrinfo(name, None, type=socket.SOCK_STREAM), _LOOKUP_TIMEOUT_S)
    except (OSError, TimeoutError):
        infos = []
    answers = sorted({normalise_host(str(info[4][0])) for info in infos})
    return DnsAnswer(
        pid=None,
        name=name,
        qtype="A+AAAA",
        rcode="NOERROR" if answers else "NXDOMAIN",
        answers=answers,
        server="ciwatch",
        transport="lookup",
    )
