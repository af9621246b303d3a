"""tracer-evasion: the build set up a way around the tracer or the proxy: a seccomp filter of
its own (with a user-notification listener, whose answers outrank ciwatch's stops), another
network namespace, an untraced child, a raw or packet socket, a change to routes or the
firewall over netlink, a message ciwatch could not read, or a signal, a ptrace call or a
read or write of memory or descriptors aimed at ciwatch's own processes (always refused).
Block mode refuses the ones that blind ciwatch; each is a finding here whether it was refused
or not."""

from __future__ import annotations

from collections.abc import Iterator

from ciwatch.policy.model import Severity
from ciwatch.record.events import Anomaly
from ciwatch.record.vocabulary import AnomalyKind
from ciwatch.rules.base import Finding, RuleContext, RuleInfo

INFO = RuleInfo(
    id="tracer-evasion",
    summary="The build set up a way around ciwatch's tracer or proxy",
    default_severity=Severity.HIGH,
    hint="Install hooks have no reason to filter their own syscalls, change network namespace, hide a child "
    "from tracing, open raw sockets or change routes. Except the package only if it is a sandbox or network "
    "tool you run on purpose.",
)

#: What each kind says, and its severity when it can't hide anything (None: the rule's).
_KINDS: dict[AnomalyKind, tuple[str, Severity | None]] = {
    AnomalyKind.SECCOMP_LISTENER: ("installed a seccomp filter with a user-notification listener", None),
    AnomalyKind.SECCOMP_FILTER: ("installed a seccomp filter of its own", Severity.LOW),
    AnomalyKind.NETWORK_NAMESPACE: ("moved into another network namespace", None),
    AnomalyKind.UNTRACED_CLONE: ("started a child with CLONE_UNTRACED", None),
    AnomalyKind.RAW_SOCKET: ("opened a raw socket", None),
    AnomalyKind.PACKET_SOCKET: ("opened a packet socket", None),
    AnomalyKind.NETLINK_CHANGE: ("changed the network over netlink", None),
    AnomalyKind.UNREADABLE_MESSAGE: ("sent a message ciwatch could not read", None),
    AnomalyKind.TARGETS_CIWATCH: ("signalled, traced or reached into ciwatch's own processes", None),
}


class TracerEvasion:
    info = INFO

    def check(self, context: RuleContext) -> Iterator[Finding]:
        seen: set[tuple[AnomalyKind, str, int | None]] = set()
        for seq, event in context.record.events.of(Anomaly):
            if event.anomaly not in _KINDS:
                continue
            node = context.tree.node_at(seq)
            marker = (event.anomaly, event.detail, node.pid if node is not None else None)
            if marker in seen:
                continue
            seen.add(marker)
            what, floor = _KINDS[event.anomaly]
            severity = context.severity(INFO)
            if floor is not None and severity > floor:
                severity = floor
            prefix = node.hook.label if node is not None and node.hook is not None else "the build"
            message = f"{prefix} {what}: {event.detail}"
            yield context.finding(INFO, message, node, [seq], severity=severity)
