"""The network of processes left running after the build, in block mode, once the proxy is gone.

Without the proxy a redirected connect would have nowhere to go, and one not redirected
would leave unjudged. So every connect, sendto and sendmsg/sendmmsg to an address other than
loopback is put to the gate (which records the refusal) and, refused, fails with EPERM: the
leftovers of a blocked build get no new outbound network at all. Installed by
:func:`seal_network` after the build, by swapping three rows' handlers once, so the build's
own stops never pay for it (and the tracer's loop is not touched).
"""

from __future__ import annotations

import errno
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ciwatch.net.address import SocketAddress, is_loopback
from ciwatch.record.events import Event, NetConnect
from ciwatch.record.vocabulary import ConnectVia, Transport
from ciwatch.trace.decode.network import Datagram, Messages, SockaddrArg, UnixConnect
from ciwatch.trace.netredirect import NetworkWatch, refuse_syscall
from ciwatch.trace.redirect import TrafficGate
from ciwatch.trace.table import TABLE, Action
from ciwatch.trace.tasks import TracedThread

if TYPE_CHECKING:
    from ciwatch.trace.tracer import Tracer


def seal_network(tracer: Tracer, gate: TrafficGate) -> None:
    """From now on, refuse every outbound connect and datagram of ``tracer``'s processes that
    ``gate`` refuses (it records each refusal); no more redirection to the (gone) proxy."""
    network = tracer.network
    network.redirect = None
    sealed = SealedNetwork(network, gate, tracer._emit)
    swapped: dict[Action, Callable[[TracedThread, Any], None]] = {
        Action.CONNECT: sealed.on_connect,
        Action.SENDTO: sealed.on_sendto,
        Action.SENDMSG: sealed.on_sendmsg,
    }
    for row in TABLE:
        handler = swapped.get(row.action)
        if handler is not None:
            tracer._entries[row.number] = (row.decode, handler)


class SealedNetwork:
    """Handlers for the connect, sendto and sendmsg rows that refuse before ``network``'s own."""

    def __init__(self, network: NetworkWatch, gate: TrafficGate, emit: Callable[[Event], None]) -> None:
        self._network = network
        self._gate = gate
        self._emit = emit

    def _refused(self, thread: TracedThread, destination: SocketAddress, protocol: Transport) -> bool:
        if is_loopback(destination.address):
            return False
        if protocol == Transport.UDP and destination.port == 0:
            return False  # getaddrinfo's source-address probe: sends nothing
        if self._gate.direct_traffic_refusal(destination.address, destination.port, protocol, thread.tgid) is None:
            return False
        refuse_syscall(thread, errno.EPERM)
        return True

    def on_connect(self, thread: TracedThread, call: SockaddrArg | UnixConnect | None) -> None:
        if call is None or isinstance(call, UnixConnect):
            self._network.on_connect(thread, call)
            return
        protocol = self._network._socket_info(thread, call.fd)[0]
        destination = call.destination
        if not self._refused(thread, destination, protocol):
            self._network.on_connect(thread, call)
            return
        self._emit(
            NetConnect(
                pid=thread.tgid,
                family=destination.family,
                address=destination.address,
                port=destination.port,
                protocol=protocol,
                result=-errno.EPERM,
                via=ConnectVia.REFUSED,
            )
        )

    def on_sendto(self, thread: TracedThread, call: object) -> None:
        if not isinstance(call, Datagram):
            # Not a datagram to an address (nothing, or a netlink message): the network's own.
            self._network.on_sendto(thread, call)  # type: ignore[arg-type]
            return
        protocol = self._network._socket_info(thread, call.fd)[0]
        if not self._refused(thread, call.destination, protocol):
            self._network.on_sendto(thread, call)
            return
        # What it tried to send is still recorded (a DNS query's name too).
        self._network._sent(thread, call.destination, protocol, call.payload, call.size)

    def on_sendmsg(self, thread: TracedThread, call: Messages) -> None:
        """Any message of a sendmsg/sendmmsg to an outside address refuses the whole call."""
        protocol = self._network._socket_info(thread, call.fd)[0]
        for message in call.messages:
            if message.destination is not None and self._refused(thread, message.destination, protocol):
                for other in call.messages:
                    if other.destination is not None:
                        self._network._sent(thread, other.destination, protocol, other.payload, other.size)
                return
        self._network.on_sendmsg(thread, call)
