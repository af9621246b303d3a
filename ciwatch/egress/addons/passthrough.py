"""Clients that reject the run's CA (they pin, or carry their own roots): rather than break
them on every connection, their later connections to that host pass through unread. The
recorder records them by SNI."""

from __future__ import annotations

from mitmproxy import tls

from ciwatch.egress.addons.claims import connected_to
from ciwatch.gate.allowlist import RuntimeAllowlist
from ciwatch.gate.enforcer import LiveEnforcer


class Passthrough:
    def __init__(self, allowlist: RuntimeAllowlist | None, enforcer: LiveEnforcer | None) -> None:
        self.allowlist = allowlist
        self.enforcer = enforcer
        # Hooks all run on the proxy's event loop, so the set needs no lock.
        self.hosts: set[str] = set()
        """Hosts whose client rejected the run's CA."""

    def tls_clienthello(self, data: tls.ClientHelloData) -> None:
        sni = data.client_hello.sni
        if sni is None or sni not in self.hosts:
            return
        enforcer, allowlist = self.enforcer, self.allowlist
        blocking = enforcer is not None and enforcer.blocking and allowlist is not None
        if blocking and not allowlist.allows_contact(sni, connected_to(data.context.client, data.context.server)):  # type: ignore[union-attr]
            return  # intercept after all: the request is refused by the policy
        data.ignore_connection = True

    def tls_failed_client(self, data: tls.TlsData) -> None:
        sni = data.context.client.sni
        if sni:
            self.hosts.add(sni)
