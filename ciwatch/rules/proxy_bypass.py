"""proxy-bypass: traffic that did not pass the proxy, IP-literal destinations, DNS to another
resolver, UDP other than DNS, raw sockets, io_uring (its I/O is invisible to syscall
tracing), and syscalls of a foreign ABI."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator

from ciwatch.analysis.tree import ProcessNode
from ciwatch.net.address import is_loopback
from ciwatch.policy.model import Severity
from ciwatch.record.events import Anomaly, DnsQuery, EgressFlow, NetConnect, NetSend
from ciwatch.record.vocabulary import AnomalyKind, ConnectVia, Transport
from ciwatch.rules.base import Finding, RuleContext, RuleInfo

INFO = RuleInfo(
    id="proxy-bypass",
    summary="Traffic that avoided the proxy or DNS, or a way around tracing",
    default_severity=Severity.MEDIUM,
    hint="Builds reach registries by name through the configured resolver over TCP; anything else deserves a "
    "look. Except the host or package if it is expected (an internal service by address, a NTP client).",
)


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


class ProxyBypass:
    info = INFO

    def check(self, context: RuleContext) -> Iterator[Finding]:
        header = context.record.header
        mode = header.net_mode.traits
        resolvers = set(header.resolvers)
        seen: set[tuple[str, int | None]] = set()

        def once(key: str, node: ProcessNode | None) -> bool:
            marker = (key, node.hook.pid if node is not None and node.hook is not None else None)
            if marker in seen:
                return False
            seen.add(marker)
            return True

        for seq, event in context.record.events.of(NetConnect, NetSend, DnsQuery, EgressFlow, Anomaly):
            node = context.tree.node_at(seq)
            message = None
            key = ""
            host = None  # the address the finding is about: what a host exception matches
            if isinstance(event, NetConnect) and event.protocol == Transport.UDP and event.port != 53:
                continue  # a UDP connect sends nothing (getaddrinfo probes this way); its sends are recorded
            if isinstance(event, NetConnect) and not is_loopback(event.address):
                target, host = f"{event.address}:{event.port}", event.address
                if event.protocol == "raw":
                    message, key = f"opened a raw socket to {event.address}", f"raw {event.address}"
                elif event.protocol == Transport.UDP and resolvers and event.address not in resolvers:
                    message, key = f"used the DNS server {event.address}, not the configured one", f"dns {host}"
                elif event.protocol == Transport.TCP and mode.direct_tcp_is_bypass and event.via == ConnectVia.DIRECT:
                    message, key = f"connected to {target} without the proxy", f"direct {target}"
            elif isinstance(event, NetSend) and not is_loopback(event.address):
                target, host = f"{event.address}:{event.port}", event.address
                if event.port != 53:
                    what = event.protocol.upper() if event.protocol in ("udp", "tcp") else f"{event.protocol} packets"
                    message, key = f"sent {what} to {target} (not DNS)", f"{event.protocol} {target}"
                elif resolvers and event.address not in resolvers:
                    message, key = f"used the DNS server {event.address}, not the configured one", f"dns {host}"
            elif isinstance(event, DnsQuery) and resolvers and not is_loopback(event.server):
                if event.server not in resolvers:
                    message = f"asked the DNS server {event.server}, not the configured one"
                    key, host = f"dns {event.server}", event.server
            elif isinstance(event, EgressFlow) and mode.proxy_sees_dns and _is_address(event.host) and not event.sni:
                if not context.allowlist.names_of(event.host):
                    message = f"reached {event.host} by address, with no DNS lookup for it"
                    key, host = f"literal {event.host}", event.host
            elif isinstance(event, Anomaly) and event.anomaly in (AnomalyKind.IO_URING, AnomalyKind.FOREIGN_ABI):
                message, key = f"used {event.anomaly}: {event.detail}", str(event.anomaly)
            if message is not None and once(key, node):
                prefix = node.hook.label if node is not None and node.hook is not None else "the build"
                severity = None
                if isinstance(event, Anomaly) and event.anomaly is AnomalyKind.IO_URING:
                    # io_uring's I/O is invisible to the tracer whatever it does: at least high,
                    # so block mode fails it (even where the kernel refused the setup).
                    severity = max(context.severity(INFO), Severity.HIGH)
                yield context.finding(INFO, f"{prefix} {message}", node, [seq], host=host, severity=severity)
