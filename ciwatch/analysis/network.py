"""Who the build talked to: each contact (a request, a connection, a datagram, a DNS name)
joined to the process, and through it to the hook, that made it."""

from __future__ import annotations

from dataclasses import replace
from enum import StrEnum

from ciwatch.analysis.tree import ProcessNode, ProcessTree
from ciwatch.dataclass import dataclass
from ciwatch.net.address import is_loopback
from ciwatch.record.events import DnsAnswer, DnsQuery, EgressFlow, Event, NetConnect, NetSend


class ContactKind(StrEnum):
    REQUEST = "request"
    """An HTTP(S) request or a non-HTTP connection that passed the proxy."""
    CONNECT = "connect"
    """A connection the proxy did not see (``--net off``, or a bypass)."""
    DATAGRAM = "datagram"
    DNS = "dns"


@dataclass(frozen=True)
class Contact:
    kind: ContactKind
    host: str
    """A name where one is known (Host header, SNI, DNS name), else an address."""
    port: int | None
    seq: int
    """The record event it comes from."""
    event: Event
    node: ProcessNode | None
    address: str | None = None
    """The address the client connected to, where it chose one (a flow's ``connected_to``):
    the contact is judged by it together with ``host``, the name it claimed."""

    @property
    def hook_label(self) -> str | None:
        return self.node.hook.label if self.node is not None and self.node.hook is not None else None


def contacts(tree: ProcessTree) -> list[Contact]:
    """Every outbound contact in record order. Loopback connections are left out: they are the
    build talking to itself (or to a local service), not egress."""
    found: list[Contact] = []
    # In sandbox mode every TCP connection was sent to the proxy by nftables: its flow says it.
    tcp_through_proxy = tree.record.header.net_mode.traits.every_tcp_through_proxy
    dns_seen: set[tuple[int | None, str]] = set()
    resolvers = set(tree.record.header.resolvers)
    # Names the tracer saw a build process ask for, from the whole record: the DNS server's
    # answer can be written before the tracer's query (the tracer writes once the tracee runs on).
    queried = {event.name.lower().rstrip(".") for _, event in tree.record.events.of(DnsQuery)}
    for seq, event in tree.record.events.of(EgressFlow, NetConnect, NetSend, DnsQuery, DnsAnswer):
        node = tree.node_at(seq)
        if isinstance(event, EgressFlow):
            if event.scheme == "dns" and event.server_address in resolvers:
                continue  # DNS over TCP to the configured resolver: its names are the contacts
            contact = Contact(ContactKind.REQUEST, event.host, event.server_port, seq, event, node)
            found.append(replace(contact, address=event.connected_to))
        elif isinstance(event, NetConnect):
            if event.protocol == "udp":
                continue  # a UDP connect sends nothing (getaddrinfo probes this way); sends are recorded

            proxied = event.via == "proxy" or (tcp_through_proxy and event.protocol == "tcp")
            if not proxied and not is_loopback(event.address):
                found.append(Contact(ContactKind.CONNECT, event.address, event.port, seq, event, node))
        elif isinstance(event, NetSend):
            if not is_loopback(event.address) and event.port != 53:
                found.append(Contact(ContactKind.DATAGRAM, event.address, event.port, seq, event, node))
        elif isinstance(event, DnsAnswer) and event.transport == "lookup":
            continue  # ciwatch's own resolution of a claimed name, not a lookup of the build
        elif isinstance(event, DnsQuery | DnsAnswer):
            name = event.name.lower().rstrip(".")
            if isinstance(event, DnsAnswer) and event.pid is None and name in queried:
                # ciwatch's DNS server couldn't tell who asked (sandbox mode: a packet from the
                # namespace); the tracer's query, with its process and hook, is this lookup.
                continue
            key = (event.pid, event.name)
            if key not in dns_seen:  # the tracer's query and the proxy's answer are one lookup
                dns_seen.add(key)
                found.append(Contact(ContactKind.DNS, event.name, None, seq, event, node))
    return found


@dataclass
class HostSummary:
    host: str
    kinds: set[ContactKind]
    count: int
    processes: set[str]


def hosts_by_hook(tree: ProcessTree) -> dict[str | None, list[HostSummary]]:
    """Hook label (None for the build outside any hook) -> the hosts it contacted."""
    grouped: dict[str | None, dict[str, HostSummary]] = {}
    for contact in contacts(tree):
        hosts = grouped.setdefault(contact.hook_label, {})
        summary = hosts.setdefault(contact.host, HostSummary(contact.host, set(), 0, set()))
        summary.kinds.add(contact.kind)
        summary.count += 1
        if contact.node is not None:
            summary.processes.add(contact.node.name)
    return {label: list(hosts.values()) for label, hosts in grouped.items()}
