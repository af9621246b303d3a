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
                self.registries.add(_host_only(event.host))
            elif isinstance(event, AllowlistLearned) and self.policy.allow.registries_auto:
                self.learned.add(_host_only(event.host))
            elif isinstance(event, DnsAnswer):
                for answer in event.answers:
                    if _is_address(answer):
                        self.names_of_address.setdefault(answer, set()).add(event.name.lower().rstrip("."))

    def observe_all(self, events: Iterable[Event]) -> None:
        for event in events:
            self.observe(event)

    def _allows_name(self, host: str) -> bool:
        host = _host_only(host)
        if host in self.registries or host in self.learned:
            return True
        return any(pattern.matches(host) for pattern in self.policy.allow.hosts)

    def allows(self, host: str) -> bool:
        """A host name, or an address that is allowed itself (CIDR) or that an allowed name
        resolved to during the run."""
        host = _host_only(host)
        if not host:
            return False
        if _is_address(host):
            if any(pattern.matches(host) for pattern in self.policy.allow.hosts):
                return True
            with self._lock:
                names = set(self.names_of_address.get(host, ()))
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
            if host not in found and self.is_index(learned_from) and not self.allows(host):
                found[host] = (learned_from, host, url)
        return list(found.values())

    def is_index(self, host: str) -> bool:
        """Hosts whose responses may teach download hosts: the job's registries and the
        policy's own hosts."""
        host = _host_only(host)
        with self._lock:
            if host in self.registries:
                return True
        return any(pattern.matches(host) for pattern in self.policy.allow.hosts) and not _is_address(host)


def _host_only(host: str) -> str:
    host = host.strip().lower().rstrip(".")
    if host.startswith("[") and "]" in host:
        return host[1 : host.index("]")]
    if host.count(":") == 1:
        host = host.split(":", 1)[0]
    return host


__all__ = ["HostPattern", "RuntimeAllowlist"]
