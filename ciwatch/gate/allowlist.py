"""The allowlist as it stands during a run: the policy's hosts, the job's registries, the
download hosts learned from their responses. The proxy asks it live (block mode) and the
rules ask it afterwards, from the same events, so a replay agrees with the live run."""

from __future__ import annotations

import ipaddress
import threading
from collections.abc import Iterable

from ciwatch.policy.model import HostPattern, Policy
from ciwatch.record.events import AllowlistLearned, DnsAnswer, Event, RegistryAllowed


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


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

    def observe(self, event: Event) -> None:
        """Take in a record event that changes what is allowed."""
        with self._lock:
            if isinstance(event, RegistryAllowed) and self.policy.allow.registries_auto:
                self.registries.add(normalise_host(event.host))
            elif isinstance(event, AllowlistLearned) and self.policy.allow.registries_auto:
                self.learned.add(normalise_host(event.host))
            elif isinstance(event, DnsAnswer):
                for answer in event.answers:
                    address = normalise_host(answer)
                    if _is_address(address):
                        self.names_of_address.setdefault(address, set()).add(normalise_host(event.name))

    def observe_all(self, events: Iterable[Event]) -> None:
        for event in events:
            self.observe(event)

    def names_of(self, address: str) -> set[str]:
        """The names DNS resolved to ``address`` during the run (in any of its spellings)."""
        with self._lock:
            return set(self.names_of_address.get(normalise_host(address), ()))

    def _allows_name(self, host: str) -> bool:
        host = normalise_host(host)
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
