"""Block mode: requests and connections to hosts outside the allowlist are refused before
anything is sent upstream. The enforcer records each refusal (a ``Refusal`` event)."""

from __future__ import annotations

from mitmproxy import ctx, exceptions, http, tcp

from ciwatch.egress.addons.body import streams_request
from ciwatch.egress.addons.claims import claimed_names, connected_to
from ciwatch.egress.addons.peers import ClientPids, server_of
from ciwatch.gate.enforcer import LiveEnforcer
from ciwatch.record.vocabulary import RefusedWhat

REFUSED = "ciwatch_refused"
"""flow.metadata key: set on a request this addon answered itself, so its record says so."""


class Enforce:
    def __init__(self, enforcer: LiveEnforcer, pids: ClientPids) -> None:
        self.enforcer = enforcer
        self.pids = pids

    def configure(self, updated: set[str]) -> None:
        # Refusing in the request hook keeps the request from the server only if mitmproxy
        # has not connected yet: with the "eager" strategy it connects as the client does.
        if "connection_strategy" in updated and self.enforcer.blocking and ctx.options.connection_strategy != "lazy":
            raise exceptions.OptionsError("ciwatch's block mode needs connection_strategy=lazy")

    def request(self, flow: http.HTTPFlow) -> None:
        if flow.response is not None:
            return
        names = claimed_names(flow)
        address = connected_to(flow.client_conn, flow.server_conn)
        if not self.enforcer.contact_allowed(names, address, self.pids.of_flow(flow)):
            flow.metadata[REFUSED] = True
            shown = address if address and all(self.enforcer.allowlist.allows(n) for n in names) else names[0]
            flow.response = http.Response.make(
                403,
                f"ciwatch: {shown} is not in the policy's allowlist\n".encode(),
                {"content-type": "text/plain"},
            )

    def http_connect(self, flow: http.HTTPFlow) -> None:
        # A CONNECT to the build's own (or the job's) proxy, handled as a forward proxy does
        # (``Forward``): judged by the proxy's address together with the CONNECT target, and
        # answered 403 before anything reaches the proxy.
        address = connected_to(flow.client_conn, flow.server_conn)
        names = claimed_names(flow)
        if not self.enforcer.contact_allowed(names, address, self.pids.of_flow(flow), what=RefusedWhat.CONNECT):
            flow.metadata[REFUSED] = True
            flow.response = http.Response.make(
                403, f"ciwatch: {address or names[0]} is not in the policy's allowlist\n".encode()
            )

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        # A CONNECT that reaches a transparent listener is a build that set its own proxy: the
        # contact is the address it connected to (its proxy), not the CONNECT target.
        # mitmproxy answers it 400 itself (no tunnel in transparent mode); block mode
        # records it as refused.
        if flow.request.method == "CONNECT" and flow.error is not None:
            address = connected_to(flow.client_conn, flow.server_conn)
            if address is not None:
                flow.metadata[REFUSED] = not self.enforcer.contact_allowed(
                    claimed_names(flow), address, self.pids.of_flow(flow), what=RefusedWhat.CONNECT
                )
        elif streams_request(flow.request):
            # Its body goes upstream as it arrives, before the request hook: judged on its
            # headers now. A refused one is cut off: a 403 would wait for, and hold, its body.
            self.request(flow)
            if flow.metadata.get(REFUSED):
                flow.kill()

    def tcp_start(self, flow: tcp.TCPFlow) -> None:
        address = connected_to(flow.client_conn, flow.server_conn)
        sni = flow.client_conn.sni
        names = [sni] if sni else [server_of(flow)[0]]
        port = flow.server_conn.address[1] if flow.server_conn.address else 0
        if port == 53 and not sni and names[0] in self.enforcer.allowlist.resolvers:
            # DNS over TCP to the configured resolver: its queries are judged one by one
            # (DnsWatch), as the DNS listener judges UDP ones.
            return
        if not self.enforcer.contact_allowed(names, address, self.pids.of_flow(flow), what=RefusedWhat.CONNECT):
            flow.kill()
            # The TCP layer connects right after this hook: an error on the server connection
            # is what stops it ("killed before connect").
            flow.server_conn.error = "refused by ciwatch (block mode)"
