"""The tracer's say over the build's network syscalls: redirection to the proxy, refusal
by the gate, and the watch on DNS and connected UDP sockets.

In redirect mode a connect's (or a DNS datagram's) sockaddr is rewritten in the tracee to
point at the proxy's listener, and put back once the syscall has returned; a DNS reply from
ciwatch's listener gets the resolver's address back as its source. In block mode traffic
the proxy would not see is refused: the syscall is skipped and fails with EPERM. Sends on
connected sockets carry no address, so a thread that connected one is stepped syscall by
syscall for a while to see them.
"""

from __future__ import annotations

import errno
from collections.abc import Callable

from ciwatch.net.address import SocketAddress, encode_sockaddr, is_loopback
from ciwatch.net.dns import decode_dns_query
from ciwatch.record.events import Anomaly, DnsQuery, Event, NetSend, Refusal
from ciwatch.record.vocabulary import AnomalyKind, ConnectVia, RefusedWhat, Transport
from ciwatch.trace.buildservers import BuildServerWatch
from ciwatch.trace.decode import Args, signed32
from ciwatch.trace.decode.network import (
    DNS_PORT,
    Datagram,
    Message,
    Messages,
    NetlinkSend,
    Receive,
    ReceiveMsg,
    SockaddrArg,
    UnixConnect,
    looks_like_netlink,
    read_iovecs,
    read_sockaddr,
    recvmsg_source,
    strict_dns_query,
)
from ciwatch.trace.netlink import judge_netlink
from ciwatch.trace.options import TracerOptions
from ciwatch.trace.redirect import Redirector
from ciwatch.trace.refuse import refuse_as_evasion
from ciwatch.trace.refuse import refuse_syscall as refuse_syscall  # sealed.py imports it from here
from ciwatch.trace.sockets import SocketInspector, connect_event
from ciwatch.trace.table import CLOSE, SENDTO, WRITE, WRITEV
from ciwatch.trace.tasks import TracedThread

#: How many syscalls a thread stays stepped after it connects a DNS socket: enough for the
#: resolver's sends, small enough that a long-lived socket doesn't slow the process.
DNS_WATCH_BUDGET = 64


class NetworkWatch:
    """The network half of the tracer; the tracer hands it the decoded network syscalls."""

    def __init__(self, options: TracerOptions, emit: Callable[[Event], None], servers: BuildServerWatch | None = None):
        self._emit = emit
        self._servers = servers  # finds the build servers outside the trace the build connects to
        self.redirect: Redirector | None = None
        """Set in redirect mode: connect()s and DNS go to the proxy's listeners."""
        self._gate = options.gate
        self._gate_direct_tcp = options.gate_direct_tcp
        self._dns_via_namespace = options.dns_via_namespace
        self.dns_redirected: dict[tuple[int, int], bytes] = {}
        """(pid, fd) of DNS sockets sent to ciwatch's listener -> the resolver's sockaddr."""
        self._sockets = SocketInspector()

    # -- what the tracer tells it --------------------------------------------------------

    def close_pidfd(self, pid: int) -> None:
        self._sockets.close_pidfd(pid)

    def exec_done(self, thread: TracedThread) -> None:
        """The thread's process exec'd (the thread is now its leader): its fds are not the
        sockets they were, if they are still open at all."""
        self.close_pidfd(thread.tid)
        thread.dns_sockets.clear()
        thread.dns_tcp.clear()
        thread.udp_sockets.clear()
        self.forget_dns_sockets(thread.tid)

    def inherit(self, parent: TracedThread | None, child: TracedThread) -> None:
        """A new process or thread shares its parent's connected DNS and UDP sockets (same fds):
        its sends on them, which carry no address, are watched as the parent's are."""
        if parent is not None and (parent.udp_sockets or parent.dns_sockets):
            child.udp_sockets = dict(parent.udp_sockets)
            child.dns_sockets = dict(parent.dns_sockets)
            child.dns_tcp = set(parent.dns_tcp)
            child.watch_budget = DNS_WATCH_BUDGET

    def forget_dns_sockets(self, pid: int) -> None:
        """The process exec'd or exited: its fds are not the sockets they were."""
        if self.dns_redirected:
            for key in [key for key in self.dns_redirected if key[0] == pid]:
                del self.dns_redirected[key]

    # -- syscall handlers ----------------------------------------------------------------

    def on_connect(self, thread: TracedThread, call: SockaddrArg | UnixConnect | None, fast_open: bool = False) -> None:
        """A connect, or a TCP Fast Open send (sendto/sendmsg with a destination on a TCP
        socket: it connects as it sends, so it is redirected, registered and judged alike)."""
        if call is None:
            return
        if isinstance(call, UnixConnect):
            if self._servers is not None:
                self._servers.watch_unix_connect(thread, call, self._sockets)
            return
        fd, destination = call.fd, call.destination
        protocol, inode = self._socket_info(thread, fd)
        redirected = self._redirect(thread, fd, call.address, call.raw, destination, protocol, inode)
        if not redirected and self._refused_by_gate(thread, destination, protocol):
            self._emit(connect_event(thread.tgid, destination, protocol, -errno.EPERM, ConnectVia.REFUSED, inode))
            return

        def connected(result: int) -> None:
            if redirected:
                thread.memory.write_bytes(call.address, call.raw)  # the program may reuse its buffer
            if fast_open and result > 0:
                result = 0  # bytes sent: the connection was made
            self._connected(thread, fd, destination, protocol, result, redirected, inode)

        thread.pending_exit = connected

    def on_sendto(self, thread: TracedThread, call: Datagram | NetlinkSend | None) -> None:
        if call is None:
            return
        if isinstance(call, NetlinkSend):
            self._netlink(thread, call.fd, call.payload)
            return
        destination = call.destination
        protocol, inode = self._socket_info(thread, call.fd)
        if protocol == Transport.TCP:
            self.on_connect(thread, SockaddrArg(call.fd, call.address, call.raw, destination), fast_open=True)
            return
        self._sent(thread, destination, protocol, call.payload, call.size)
        if destination.port != DNS_PORT and self._refused_by_gate(thread, destination, protocol):
            self._name_refused_dns(thread, destination, call.payload)
            return
        if self._redirect(thread, call.fd, call.address, call.raw, destination, protocol, inode):

            def sent(_result: int) -> None:
                thread.memory.write_bytes(call.address, call.raw)  # the program's own bytes back

            thread.pending_exit = sent

    def on_sendmsg(self, thread: TracedThread, call: Messages) -> None:
        """sendmsg and sendmmsg: every message is judged; one refused (block mode) refuses the
        call. Destinations of DNS messages are redirected like sendto's; a destination on a
        TCP socket is a Fast Open connect."""
        fd = call.fd
        protocol: Transport | None = None
        inode = 0
        restore: list[Message] = []
        refused = False
        for message in call.messages:
            destination, payload, size = message.destination, message.payload, message.size
            if not message.readable:
                refused |= self._unjudged(thread, fd)
                continue
            if message.netlink:
                self._netlink(thread, fd, payload)
                continue
            # Only a socket that really is netlink leaves the UDP path: a datagram made to
            # look like a netlink header is still recorded as what it is.
            if destination is None and looks_like_netlink(payload, size) and self._netlink(thread, fd, payload):
                continue
            if destination is None:
                server = thread.dns_sockets.get(fd)
                if server is not None:  # a connected DNS socket (glibc's resolver)
                    self._dns(thread, server, payload, tcp=fd in thread.dns_tcp)
                peer = self._connected_udp(thread, fd)
                if peer is not None:
                    self._sent(thread, peer, Transport.UDP, payload, size)
                continue
            if protocol is None:
                protocol, inode = self._socket_info(thread, fd)
            if protocol == Transport.TCP:
                if not restore and not refused:  # the first destination connects; later ones are ignored
                    self.on_connect(thread, SockaddrArg(fd, message.name, message.raw, destination), fast_open=True)
                return
            self._sent(thread, destination, protocol, payload, size)
            if destination.port != DNS_PORT and self._refused_by_gate(thread, destination, protocol):
                self._name_refused_dns(thread, destination, payload)
                refused = True
            elif not refused and self._redirect(thread, fd, message.name, message.raw, destination, protocol, inode):
                restore.append(message)
        if restore and refused:  # the call won't run: the program's own addresses back now
            for message in restore:
                thread.memory.write_bytes(message.name, message.raw)
        elif restore:

            def sent(_result: int) -> None:
                for message in restore:
                    thread.memory.write_bytes(message.name, message.raw)

            thread.pending_exit = sent

    def on_recvfrom(self, thread: TracedThread, call: Receive) -> None:
        original = self.dns_redirected.get((thread.tgid, call.fd))
        if original is not None:
            address, length_address = call.address, call.length_address
            thread.pending_exit = lambda result: self._restore_source(thread, result, address, length_address, original)

    def on_recvmsg(self, thread: TracedThread, call: ReceiveMsg) -> None:
        original = self.dns_redirected.get((thread.tgid, call.fd))
        if original is None:
            return
        source = recvmsg_source(thread.memory, call.msghdr)
        if source is not None:
            address, length_address = source
            thread.pending_exit = lambda result: self._restore_source(thread, result, address, length_address, original)

    def refuse_io_uring(self, thread: TracedThread) -> None:
        if self._gate is not None and not self._gate.io_uring_allowed(thread.tgid):
            refuse_syscall(thread, errno.EPERM)  # programs fall back to ordinary syscalls

    def on_stepped_syscall(self, thread: TracedThread, number: int, args: Args) -> None:
        """A syscall entry of a thread that holds a connected DNS or UDP socket (stepped mode)."""
        fd = signed32(args[0]) if args else -1
        peer = thread.udp_sockets.get(fd)
        if peer is not None:
            if number == CLOSE:
                del thread.udp_sockets[fd]
            elif number in (WRITE, WRITEV) or (number == SENDTO and args[4] == 0):
                if self._connected_udp(thread, fd) is None:
                    return
                # The datagram's start too: a DNS query to a resolver on another port is named.
                if number == WRITEV:
                    payload, size = read_iovecs(thread.memory, args[1], args[2])
                else:
                    payload, size = thread.memory.read_bytes(args[1], min(args[2], 512)), args[2]
                self._sent(thread, peer, Transport.UDP, payload, size)
            return
        server = thread.dns_sockets.get(fd)
        if server is None:
            return
        tcp = fd in thread.dns_tcp
        if number == CLOSE:
            del thread.dns_sockets[fd]
            thread.dns_tcp.discard(fd)
        elif number in (WRITE, SENDTO) and (number == WRITE or args[4] == 0):
            self._dns(thread, server, thread.memory.read_bytes(args[1], min(args[2], 4096)), tcp=tcp)
        elif number == WRITEV:
            self._dns(thread, server, read_iovecs(thread.memory, args[1], args[2])[0], tcp=tcp)

    # -- inside --------------------------------------------------------------------------

    def _connected_udp(self, thread: TracedThread, fd: int) -> SocketAddress | None:
        """The peer this thread connected ``fd`` to, while it is still a UDP socket (another thread
        may have closed it unseen and the number been reused: Go's netpoller writes an eventfd)."""
        peer = thread.udp_sockets.get(fd)
        if peer is not None and self._socket_info(thread, fd)[0] is not Transport.UDP:
            del thread.udp_sockets[fd]
            return None
        return peer

    def _socket_info(self, thread: TracedThread, fd: int) -> tuple[Transport, int]:
        return self._sockets.transport(thread.tgid, fd)

    def _unjudged(self, thread: TracedThread, fd: int) -> bool:
        """A message that could not be read (a bad pointer, or memory changed under us): it
        is an anomaly, and block mode refuses the call rather than let it pass unjudged."""
        detail = f"a message on fd {fd} could not be read"
        self._emit(Anomaly(pid=thread.tgid, anomaly=AnomalyKind.UNREADABLE_MESSAGE, detail=detail))
        return self._gate is not None and refuse_as_evasion(thread, AnomalyKind.UNREADABLE_MESSAGE, detail, self._emit)

    def _netlink(self, thread: TracedThread, fd: int, payload: bytes) -> bool:
        return judge_netlink(thread, fd, payload, self._sockets, self._emit, blocking=self._gate is not None)

    def _name_refused_dns(self, thread: TracedThread, destination: SocketAddress, payload: bytes) -> None:
        """A refused datagram that carried a DNS query: the refusal names the question too."""
        for question in strict_dns_query(payload) if destination.port != DNS_PORT else []:
            reason = f"proxy-bypass: a DNS query to {destination.address}:{destination.port} would not pass ciwatch"
            refusal = Refusal(
                pid=thread.tgid, what=RefusedWhat.DNS, target=question.name, reason=reason, rule="proxy-bypass"
            )
            self._emit(refusal)

    def _redirect(
        self,
        thread: TracedThread,
        fd: int,
        address: int,
        raw: bytes,
        destination: SocketAddress,
        protocol: Transport,
        inode: int,
    ) -> bool:
        """Point the sockaddr the tracee passed at the proxy's listener (redirect mode) and
        register the original destination under the socket's inode first."""
        if self.redirect is None or not inode or is_loopback(destination.address):
            return False
        target = self.redirect.target(destination, protocol)
        if target is None:
            return False
        self.redirect.register(inode, thread.tgid, destination)
        if not thread.memory.write_bytes(address, encode_sockaddr(raw, target)):
            return False
        if destination.port == DNS_PORT and protocol == Transport.UDP:
            self.dns_redirected[(thread.tgid, fd)] = raw
        return True

    def _refused_by_gate(self, thread: TracedThread, destination: SocketAddress, protocol: Transport) -> bool:
        if self._gate is None or is_loopback(destination.address):
            return False
        if protocol == Transport.TCP and not self._gate_direct_tcp:
            return False
        if protocol == Transport.UDP and destination.port == 0:
            return False  # getaddrinfo's source-address probe: a UDP connect that sends nothing
        if (
            protocol == Transport.UDP
            and destination.port == DNS_PORT
            and (self.redirect is not None or self._dns_via_namespace)
        ):
            return False  # goes to ciwatch's DNS listener, which judges the name
        reason = self._gate.direct_traffic_refusal(destination.address, destination.port, protocol, thread.tgid)
        if reason is None:
            return False
        refuse_syscall(thread, errno.EPERM)
        return True

    def _connected(
        self,
        thread: TracedThread,
        fd: int,
        destination: SocketAddress,
        protocol: Transport,
        result: int,
        redirected: bool,
        inode: int,
    ) -> None:
        via = ConnectVia.PROXY if redirected else ConnectVia.DIRECT
        self._emit(connect_event(thread.tgid, destination, protocol, result, via, inode))
        if self._servers is not None and protocol == Transport.TCP and result in (0, -errno.EINPROGRESS):
            self._servers.on_tcp(thread.tgid, destination)
        if destination.port == DNS_PORT and result in (0, -errno.EINPROGRESS):
            thread.dns_sockets[fd] = destination
            if protocol == Transport.TCP:
                thread.dns_tcp.add(fd)
            else:
                thread.dns_tcp.discard(fd)
            thread.watch_budget = DNS_WATCH_BUDGET
        elif (
            protocol == Transport.UDP and destination.port != 0 and result == 0 and not is_loopback(destination.address)
        ):
            thread.udp_sockets[fd] = destination
            thread.watch_budget = DNS_WATCH_BUDGET

    def _sent(
        self, thread: TracedThread, destination: SocketAddress, protocol: Transport, payload: bytes, size: int
    ) -> None:
        self._emit(
            NetSend(
                pid=thread.tgid,
                family=destination.family,
                address=destination.address,
                port=destination.port,
                protocol=protocol,
                size=size,
            )
        )
        if destination.port == DNS_PORT:
            self._dns(thread, destination, payload, protocol == Transport.TCP)
        elif protocol == Transport.UDP and payload:
            self._dns(thread, destination, payload, tcp=False, strict=True)

    def _dns(
        self, thread: TracedThread, server: SocketAddress, payload: bytes, tcp: bool, strict: bool = False
    ) -> None:
        """The names of a DNS query (``strict``: on another port, only a query beyond doubt)."""
        for question in strict_dns_query(payload) if strict else decode_dns_query(payload, tcp=tcp):
            query = DnsQuery(
                pid=thread.tgid, name=question.name, qtype=question.qtype, server=server.address, port=server.port
            )
            self._emit(query)

    def _restore_source(
        self, thread: TracedThread, result: int, address: int, length_address: int, original: bytes
    ) -> None:
        """A DNS reply from ciwatch's listener shows the resolver's address as its source:
        glibc and c-ares drop replies that don't come from the server they asked."""
        if result < 0 or not address:
            return
        written, length = read_sockaddr(thread.memory, address, length_address)
        if written is None or self.redirect is None or not is_loopback(written.address):
            return
        if len(original) <= length:
            thread.memory.write_bytes(address, original[:length])
