"""Live decisions in ``block`` mode. They use the same allowlist the rules use afterwards,
and each refusal is itself an event in the record, so a replay agrees with what happened."""

from __future__ import annotations

from collections.abc import Callable

from ciwatch.gate.allowlist import RuntimeAllowlist
from ciwatch.net.address import is_loopback
from ciwatch.policy.model import Mode, Policy
from ciwatch.record.events import Event, Refusal
from ciwatch.record.vocabulary import RefusedWhat, Transport


class LiveEnforcer:
    def __init__(self, policy: Policy, allowlist: RuntimeAllowlist, sink: Callable[[Event], None]) -> None:
        self.blocking = policy.mode is Mode.BLOCK
        self.allowlist = allowlist
        self.sink = sink

    def _refuse(self, pid: int | None, what: RefusedWhat, target: str, reason: str) -> bool:
        # Every reason starts with the id of the rule it enforces; the record carries it typed.
        rule = reason.partition(":")[0].strip() or None
        self.sink(Refusal(pid=pid, what=what, target=target, reason=reason, rule=rule))
        return False

    def request_allowed(self, host: str, pid: int | None, what: RefusedWhat = RefusedWhat.REQUEST) -> bool:
        """A request or connection through the proxy (refused before anything goes upstream)."""
        if not self.blocking or self.allowlist.allows(host):
            return True
        return self._refuse(pid, what, host, "unfamiliar-egress: not in the allowlist")

    def contact_allowed(
        self, names: list[str], address: str | None, pid: int | None, what: RefusedWhat = RefusedWhat.REQUEST
    ) -> bool:
        """A connection to ``address`` claiming ``names`` (Host, SNI, a CONNECT target): judged
        by what was connected (see ``RuntimeAllowlist.allows_contact``)."""
        if not self.blocking:
            return True
        for name in names or [""]:
            if self.allowlist.allows_contact(name, address):
                continue
            if address and self.allowlist.is_forward_proxy(address) and not self.allowlist.allows_contact("", address):
                target, reason = address, f"unfamiliar-egress: the proxy {address} (asked for {name}) is not allowed"
            elif address and self.allowlist.allows(name):
                target, reason = address, f"unfamiliar-egress: {address} is not where {name} resolved to"
            else:
                target, reason = name or address or "?", "unfamiliar-egress: not in the allowlist"
            return self._refuse(pid, what, target, reason)
        return True

    def dns_allowed(self, name: str, pid: int | None) -> bool:
        """A DNS lookup: refusing the lookup of a name outside the allowlist keeps data out of
        DNS names too (the answer is REFUSED, nothing is sent upstream)."""
        if not self.blocking or self.allowlist.allows(name):
            return True
        return self._refuse(pid, RefusedWhat.DNS, name, "unfamiliar-egress: not in the allowlist")

    def direct_traffic_refusal(self, address: str, port: int, protocol: Transport, pid: int) -> str | None:
        """Traffic the proxy won't see (UDP other than DNS, raw sockets, a direct connect in env
        mode): the reason to refuse it, or None to let it go."""
        if not self.blocking or is_loopback(address):
            return None
        if protocol == Transport.TCP and self.allowlist.allows(address):
            return None
        what = RefusedWhat.DATAGRAM if protocol == Transport.UDP else RefusedWhat.CONNECT
        reason = f"proxy-bypass: {protocol} to {address}:{port} would not pass the proxy"
        self._refuse(pid, what, f"{address}:{port}", reason)
        return reason

    def io_uring_allowed(self, pid: int) -> bool:
        if not self.blocking:
            return True
        return self._refuse(pid, RefusedWhat.IO_URING, "io_uring_setup", "proxy-bypass: io_uring I/O is not traced")
