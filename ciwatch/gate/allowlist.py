"""The allowlist as it stands during a run: the policy's hosts, the job's registries, the
download hosts learned from their responses. The proxy asks it live (block mode) and the
rules ask it afterwards, from the same events, so a replay agrees with the live run."""

from __future__ import annotations

import functools
import ipaddress
import threading
from collections.abc import Iterable

from ciwatch.policy.model import HostPattern, Policy
from ciwatch.record.events import AllowlistLearned, DnsAnswer, EgressFlow, Event, Header, ProxyReady, RegistryAllowed

FORWARD_PROXY_SCHEME = "proxy"
"""``egress-flow`` scheme of a client that spoke forward-proxy HTTP (CONNECT, absolute-form) to
the address it connected to: its ``host`` is that address, the build's own proxy."""


@functools.lru_cache(maxsize=4096)
def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


# Cached: the proxy normalises the same few hosts and addresses several times per request,
# and parsing an address is most of the cost. Pure functions of a string; bounded.
@functools.lru_cache(maxsize=4096)
def normalise_host(host: str) -> str:
    """The one form the allowlist keeps and compares: a host name lowercased without its
    trailing dot; an address in ``ipaddress``' canonical form (``2001:DB8:0::1`` ->
    ``2001:db8::1``), an IPv4-mapped IPv6 address as the IPv4 one (``::ffff:192.0.2.1`` ->
    ``192.0.2.1``); brackets and a port (``[::1]:443``, ``host:80``) dropped."""
    host = host.strip()
    if host.startswith("[") and "]" in host:
        host = host[1 : host.index("]")]
    elif host.count(":") == 1:
        host = host.split(":", 1)[0]
    host = host.lower().rstrip(".")
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return host
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(address)


def _service_owner(name: str) -> str:
    """The host a DNS service name belongs to: ``_http._tcp.mirror.example`` -> ``mirror.example``
    (RFC 2782's ``_service._proto.name``, which apt asks before fetching from a mirror). The
    owner of an allowed host's zone answers it, so it is that host's look-up, not another
    host; any other name is itself."""
    labels = name.split(".")
    if len(labels) > 2 and labels[0].startswith("_") and labels[1] in ("_tcp", "_udp", "_tls", "_sctp"):
        return ".".join(labels[2:])
    return name


#: The events :meth:`RuntimeAllowlist.observe` learns from.
_TEACHING = (RegistryAllowed, AllowlistLearned, EgressFlow, ProxyReady, Header, DnsAnswer)


class RuntimeAllowlist:
    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self._lock = threading.Lock()
        self.registries: set[str] = set()
        self.learned: set[str] = set()
        self.names_of_address: dict[str, set[str]] = {}
        """What DNS said: address -> the names that resolved to it during the run."""
        self.registries_settled = not policy.allow.registries_auto
        """False while the job's registries are still being discovered (outside block mode
        that runs alongside the build): download hosts offered meanwhile wait in
        ``_pending`` until it is known whether their index is a registry."""
        self._pending: list[tuple[str, str, str]] = []
        self.resolvers: set[str] = set()
        """The machine's configured resolvers (from the record's header): only their answers,
        and ciwatch's own look-ups, say where a name lives. A server the build picked itself
        could answer "the registry is at my address"."""
        self.forward_proxies: set[str] = set()
        """Addresses the build spoke forward-proxy HTTP to (its own proxies, or the job's)."""
        self.job_proxies: set[str] = set()
        """The addresses of the proxy the job configured before ciwatch started: trusted."""

    def observe(self, event: Event) -> None:
        """Take in a record event that changes what is allowed."""
        with self._lock:
            if isinstance(event, RegistryAllowed) and self.policy.allow.registries_auto:
                self.registries.add(normalise_host(event.host))
            elif isinstance(event, AllowlistLearned) and self.policy.allow.registries_auto:
                self.learned.add(normalise_host(event.host))
            elif isinstance(event, EgressFlow) and event.scheme == FORWARD_PROXY_SCHEME:
                self.forward_proxies.add(normalise_host(event.host))
            elif isinstance(event, ProxyReady):
                self.job_proxies.update(normalise_host(address) for address in event.upstream_addresses)
            elif isinstance(event, Header):
                self.resolvers = {normalise_host(resolver) for resolver in event.resolvers}
            elif isinstance(event, DnsAnswer) and self._teaches(event):
                for answer in event.answers:
                    address = normalise_host(answer)
                    if _is_address(address):
                        self.names_of_address.setdefault(address, set()).add(normalise_host(event.name))

    def _teaches(self, answer: DnsAnswer) -> bool:
        if answer.transport == "lookup":
            return True
        if answer.transport != "udp" and answer.transport != "tcp":
            return False  # DoH: the build's own choice of resolver
        return not self.resolvers or normalise_host(answer.server) in self.resolvers

    def observe_all(self, events: Iterable[Event]) -> None:
        for event in events:
            if isinstance(event, _TEACHING):  # most of a batch is file writes: no lock for those
                self.observe(event)

    def names_of(self, address: str) -> set[str]:
        """The names DNS resolved to ``address`` during the run (in any of its spellings)."""
        with self._lock:
            return set(self.names_of_address.get(normalise_host(address), ()))

    def _allows_name(self, host: str) -> bool:
        host = _service_owner(normalise_host(host))
        if host in self.registries or host in self.learned:
            return True
        return any(pattern.matches(host) for pattern in self.policy.allow.hosts)

    def allows(self, host: str) -> bool:
        """A host name, or an address that is allowed itself (CIDR) or that an allowed name
        resolved to during the run."""
        host = normalise_host(host)
        if not host:
            return False
        if _is_address(host):
            if any(pattern.matches(host) for pattern in self.policy.allow.hosts):
                return True
            names = self.names_of(host)
            with self._lock:
                return any(self._allows_name(name) for name in names)
        with self._lock:
            return self._allows_name(host)

    def allows_contact(self, name: str | None, address: str | None) -> bool:
        """A connection to ``address`` that claimed ``name`` (Host header, SNI, CONNECT
        target). The contact is what was connected: the address must be allowed (itself, or
        as an address an allowed name resolved to), and an allowed name is allowed only at
        the addresses it resolved to during the run. ``address`` None (the client asked the
        proxy by name, which resolved it itself): the name alone decides."""
        target = normalise_host(address or "")
        if not target or not _is_address(target):
            return self.allows(name or target)
        claimed = normalise_host(name or "")
        if self._trusted_proxy(target):
            # The job's proxy, or a proxy the policy allows: it connects where it is asked to,
            # so what it was asked for (the CONNECT target, the absolute-form host) decides.
            return not claimed or claimed == target or self.allows(claimed)
        if any(pattern.matches(target) for pattern in self.policy.allow.hosts):
            return not claimed or claimed == target or self.allows(claimed)
        if not claimed or claimed == target:
            return self.allows(target)
        return claimed in self.names_of(target) and self.allows(claimed)

    def is_forward_proxy(self, address: str) -> bool:
        with self._lock:
            target = normalise_host(address)
            return target in self.forward_proxies or target in self.job_proxies

    def _trusted_proxy(self, target: str) -> bool:
        with self._lock:
            if target in self.job_proxies:
                return True
            if target not in self.forward_proxies:
                return False
        return self.allows(target)

    def needs_lookup(self, name: str | None, address: str | None) -> bool:
        """Whether ciwatch's own resolution of ``name`` could still allow the contact: the name
        is allowed but hasn't been seen at ``address`` (a CDN answers differently per lookup)."""
        if not name or not address or _is_address(normalise_host(name)):
            return False
        return self.allows(name) and not self.allows_contact(name, address)

    def offer_learned(self, learned_from: str, host: str, url: str) -> bool:
        """A download host named by ``learned_from``'s response: True to record it now; False
        if it is already allowed, not from an index, or waits for the registries."""
        with self._lock:
            if not self.registries_settled:
                self._pending.append((learned_from, host, url))
                return False
        return self.is_index(learned_from) and not self.allows(host)

    def settle_registries(self) -> list[tuple[str, str, str]]:
        """The registries are all known now: the waiting offers that come from one of them."""
        with self._lock:
            self.registries_settled = True
            pending, self._pending = self._pending, []
        found: dict[str, tuple[str, str, str]] = {}
        for learned_from, host, url in pending:
            key = normalise_host(host)
            if key not in found and self.is_index(learned_from) and not self.allows(host):
                found[key] = (learned_from, host, url)
        return list(found.values())

    def is_index(self, host: str) -> bool:
        """Hosts whose responses may teach download hosts: the job's registries and the
        policy's own hosts."""
        host = normalise_host(host)
        with self._lock:
            if host in self.registries:
                return True
        return any(pattern.matches(host) for pattern in self.policy.allow.hosts) and not _is_address(host)


__all__ = ["HostPattern", "RuntimeAllowlist", "normalise_host"]
