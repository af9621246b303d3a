"""Netlink messages that change the network (routes, addresses, links, rules, netfilter):
anomalies, refused in block mode. Dumps (RTM_GET*) pass unremarked: getaddrinfo's
AI_ADDRCONFIG and libuv make them all the time."""

from __future__ import annotations

from collections.abc import Callable

from ciwatch.record.events import Anomaly, Event
from ciwatch.record.vocabulary import AnomalyKind
from ciwatch.trace.decode.network import AF_NETLINK, NETLINK_NETFILTER, netlink_changes
from ciwatch.trace.refuse import refuse_as_evasion
from ciwatch.trace.sockets import SocketInspector
from ciwatch.trace.tasks import TracedThread


def judge_netlink(
    thread: TracedThread,
    fd: int,
    payload: bytes,
    sockets: SocketInspector,
    emit: Callable[[Event], None],
    *,
    blocking: bool,
) -> bool:
    """Record (and in block mode refuse) a send whose payload changes the network. The socket
    is asked its family and protocol only when a message would be a change under netfilter
    (every request is: the widest test). True when the socket is netlink."""
    if not netlink_changes(NETLINK_NETFILTER, payload):
        return False
    family, protocol = sockets.family(thread.tgid, fd)
    if family != AF_NETLINK:
        return False
    changes = netlink_changes(protocol, payload)
    if changes:
        detail = f"netlink protocol {protocol}: " + ", ".join(changes[:4])
        emit(Anomaly(pid=thread.tgid, anomaly=AnomalyKind.NETLINK_CHANGE, detail=detail))
        if blocking:
            refuse_as_evasion(thread, AnomalyKind.NETLINK_CHANGE, detail, emit)
    return True
