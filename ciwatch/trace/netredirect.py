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

import ctypes
import errno
import os
import socket
from collections.abc import Callable

from ptrace.binding.func import ptrace_getregs, ptrace_setregs

from ciwatch.net.address import SocketAddress, encode_sockaddr, is_loopback
from ciwatch.net.dns import decode_dns_query
from ciwatch.record.events import ConnectVia, DnsQuery, Event, NetConnect, NetSend, Transport
from ciwatch.trace.decode import Args, signed32
from ciwatch.trace.decode.network import (
    DNS_PORT,
    Datagram,
    Messages,
    Receive,
    ReceiveMsg,
    SockaddrArg,
    read_iovecs,
    read_sockaddr,
    recvmsg_source,
)
from ciwatch.trace.options import TracerOptions
from ciwatch.trace.redirect import Redirector
from ciwatch.trace.table import CLOSE, SENDTO, WRITE, WRITEV
from ciwatch.trace.tasks import TracedThread

#: How many syscalls a thread stays stepped after it connects a DNS socket: enough for the
#: resolver's sends, small enough that a long-lived socket doesn't slow the process.
DNS_WATCH_BUDGET = 64

_libc = ctypes.CDLL(None, use_errno=True)
_SYS_PIDFD_GETFD = 438
_TRANSPORTS = {
    int(socket.SOCK_STREAM): Transport.TCP,
    int(socket.SOCK_DGRAM): Transport.UDP,
    int(socket.SOCK_RAW): Transport.RAW,
}


class NetworkWatch:
    """The network half of the tracer; the tracer hands it the decoded network syscalls."""

    def __init__(self, options: TracerOptions, emit: Callable[[Event], None]) -> None:
        self._emit = emit
        self.redirect: Redirector | None = None
        """Set in redirect mode: connect()s and DNS go to the proxy's listeners."""
        self._gate = options.gate
        self._gate_direct_tcp = options.gate_direct_tcp
        self._dns_via_namespace = options.dns_via_namespace
        self.dns_redirected: dict[tuple[int, int], bytes] = {}
        """(pid, fd) of DNS sockets sent to ciwatch's listener -> the resolver's sockaddr."""
        self._pidfds: dict[int, int] = {}

    # -- what the tracer tells it --------------------------------------------------------

    def close_pidfd(self, pid: int) -> None:
        pidfd = self._pidfds.pop(pid, None)
        if pidfd is not None:
            os.close(pidfd)

    def exec_done(self, thread: TracedThread) -> None:
        """The thread's process exec'd (the thread is now its leader): its fds are not the
        sockets they were, if they are still open at all."""
        self.close_pidfd(thread.tid)
        thread.dns_sockets.clear()
        thread.dns_tcp.clear()
        thread.udp_sockets.clear()
        self.forget_dns_sockets(thread.tid)

    def forget_dns_sockets(self, pid: int) -> None:
        """The process exec'd or exited: its fds are not the sockets they were."""
        if self.dns_redirected:
            for key in [key for key in self.dns_redirected if key[0] == pid]:
                del self.dns_redirected[key]

    # -- syscall handlers ----------------------------------------------------------------

    def on_connect(self, thread: TracedThread, call: SockaddrArg | None) -> None:
        if call is None:
            return
        fd, destination = call.fd, call.destination
        protocol, inode = self._socket_info(thread, fd)
        redirected = self._redirect(thread, fd, call.address, call.raw, destination, protocol, inode)
        if not redirected and self._refused_by_gate(thread, destination, protocol):
            self._emit(_connect_event(thread.tgid, destination, protocol, -errno.EPERM, ConnectVia.REFUSED))
            return

        def connected(result: int) -> None:
            if redirected:
                thread.memory.write_bytes(call.address, call.raw)  # the program may reuse its buffer
            self._connected(thread, fd, destination, protocol, result, redirected)

        thread.pending_exit = connected

    def on_sendto(self, thread: TracedThread, call: Datagram | None) -> None:
        if call is None:
            return
        destination = call.destination
        protocol, inode = self._socket_info(thread, call.fd)
        self._sent(thread, destination, protocol, call.payload, call.size)
        if destination.port != DNS_PORT and self._refused_by_gate(thread, destination, protocol):
            return
        if self._redirect(thread, call.fd, call.address, call.raw, destination, protocol, inode):

            def sent(_result: int) -> None:
                thread.memory.write_bytes(call.address, call.raw)  # the program's own bytes back

            thread.pending_exit = sent

    def on_sendmsg(self, thread: TracedThread, call: Messages) -> None:
        """sendmsg and sendmmsg: the messages up to the first one refused (block mode)."""
        fd = call.fd
        for destination, payload, size in call.messages:
            if destination is None:
                server = thread.dns_sockets.get(fd)
                if server is not None:  # a connected DNS socket (glibc's resolver)
                    self._dns(thread, server, payload, tcp=fd in thread.dns_tcp)
                peer = thread.udp_sockets.get(fd)
                if peer is not None:
                    self._sent(thread, peer, Transport.UDP, b"", size)
                continue
            protocol = self._socket_info(thread, fd)[0]
            self._sent(thread, destination, protocol, payload, size)
            if destination.port != DNS_PORT and self._refused_by_gate(thread, destination, protocol):
                break

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
                size = args[2] if number != WRITEV else read_iovecs(thread.memory, args[1], args[2])[1]
                self._sent(thread, peer, Transport.UDP, b"", size)
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

    def _socket_info(self, thread: TracedThread, fd: int) -> tuple[Transport, int]:
        """(tcp, udp or raw; the socket's inode), asked of a duplicate of the tracee's socket
        (pidfd_getfd): cheaper and surer than parsing /proc/net for every connect."""
        try:
            pidfd = self._pidfds.get(thread.tgid)
            if pidfd is None:
                pidfd = os.pidfd_open(thread.tgid)
                self._pidfds[thread.tgid] = pidfd
            dup = _libc.syscall(_SYS_PIDFD_GETFD, pidfd, fd, 0)
            if dup < 0:
                return Transport.UNKNOWN, 0
            inode = os.fstat(dup).st_ino
            with socket.socket(fileno=dup) as duplicate:  # closes the duplicate, not the tracee's
                kind = duplicate.getsockopt(socket.SOL_SOCKET, socket.SO_TYPE)
        except OSError:
            return Transport.UNKNOWN, 0
        return _TRANSPORTS.get(int(kind), Transport.UNKNOWN), inode

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
    ) -> None:
        via = ConnectVia.PROXY if redirected else ConnectVia.DIRECT
        self._emit(_connect_event(thread.tgid, destination, protocol, result, via))
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

    def _dns(self, thread: TracedThread, server: SocketAddress, payload: bytes, tcp: bool) -> None:
        for question in decode_dns_query(payload, tcp=tcp):
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


def refuse_syscall(thread: TracedThread, error: int) -> None:
    """Skip the syscall the tracee is stopped in and make it fail with ``error``."""
    regs = ptrace_getregs(thread.tid)
    regs.orig_rax = 0xFFFFFFFFFFFFFFFF  # -1: the kernel skips it
    ptrace_setregs(thread.tid, regs)

    def set_result(_result: int) -> None:
        after = ptrace_getregs(thread.tid)
        after.rax = (-error) & 0xFFFFFFFFFFFFFFFF
        ptrace_setregs(thread.tid, after)

    thread.pending_exit = set_result


def _connect_event(
    pid: int, destination: SocketAddress, protocol: Transport, result: int, via: ConnectVia
) -> NetConnect:
    return NetConnect(
        pid=pid,
        family=destination.family,
        address=destination.address,
        port=destination.port,
        protocol=protocol,
        result=result,
        via=via,
    )
