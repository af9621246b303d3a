"""ciwatch's mitmproxy addons, one concern each (as mitmproxy's own are)."""

from __future__ import annotations

from collections.abc import Callable

from ciwatch.egress.addons.claims import Claims
from ciwatch.egress.addons.dnswatch import DnsWatch
from ciwatch.egress.addons.enforce import Enforce
from ciwatch.egress.addons.learn import Learn
from ciwatch.egress.addons.passthrough import Passthrough
from ciwatch.egress.addons.peers import ClientPids, PidLookup
from ciwatch.egress.addons.record import Record
from ciwatch.egress.origdst import OriginalDestinations
from ciwatch.gate.allowlist import RuntimeAllowlist
from ciwatch.gate.enforcer import LiveEnforcer
from ciwatch.record.events import Event

__all__ = [
    "Claims",
    "ClientPids",
    "DnsWatch",
    "Enforce",
    "Learn",
    "Passthrough",
    "PidLookup",
    "Record",
    "egress_addons",
]


def egress_addons(
    sink: Callable[[Event], None],
    destinations: OriginalDestinations,
    pid_lookup: PidLookup,
    allowlist: RuntimeAllowlist | None = None,
    enforcer: LiveEnforcer | None = None,
) -> list[object]:
    """The addons in the order mitmproxy must call them (it calls each hook in addon order):
    the claimed names are resolved first (``Claims``), DNS carried by the proxy is judged by its
    names (``DnsWatch``), the enforcer answers a request before anything else sees it, so the recorder records
    the refusal; the passthrough decision comes before the recorder records it; the flow's
    record comes before the hosts learned from its body."""
    pids = ClientPids(destinations, pid_lookup)
    addons: list[object] = []
    if allowlist is not None:
        # First: the addresses a claimed name resolves to are known before anyone judges.
        addons.append(Claims(allowlist, sink))
    # DNS in a TCP stream or an HTTP request is judged by its names, before the flow itself.
    addons.append(DnsWatch(sink, pids, enforcer))
    if enforcer is not None and enforcer.blocking:
        # Outside block mode it allows everything: not called at all (mitmproxy calls each
        # addon's hooks for every request, and this one's read the request's names).
        addons.append(Enforce(enforcer, pids))
    addons += [Passthrough(allowlist, enforcer), Record(sink, pids)]
    if allowlist is not None:
        addons.append(Learn(allowlist, sink))
    return addons
