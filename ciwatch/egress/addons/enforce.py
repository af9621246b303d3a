"""Block mode: requests and connections to hosts outside the allowlist are refused before
anything is sent upstream. The enforcer records each refusal (a ``Refusal`` event)."""

from __future__ import annotations

from mitmproxy import ctx, exceptions, http, tcp

from ciwatch.egress.addons.peers import ClientPids, server_of
from ciwatch.gate.enforcer import LiveEnforcer
from ciwatch.record.events import RefusedWhat

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
        host = flow.request.pretty_host
        if not self.enforcer.request_allowed(host, self.pids.of_flow(flow)):
            flow.metadata[REFUSED] = True
            flow.response = http.Response.make(
                403,
                f"ciwatch: {host} is not in the policy's allowlist\n".encode(),
                {"content-type": "text/plain"},
            )

    def tcp_start(self, flow: tcp.TCPFlow) -> None:
        host = flow.client_conn.sni or server_of(flow)[0]
        if not self.enforcer.request_allowed(host, self.pids.of_flow(flow), what=RefusedWhat.CONNECT):
            flow.kill()
