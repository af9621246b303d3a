"""Decoders of the socket syscalls: where a connect or datagram goes, what it carries.

They return the addresses of the buffers too: in redirect mode the tracer rewrites the
sockaddr in place (and puts the original back afterwards), which is not a decoder's job.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

from ciwatch.net.address import AF_UNIX, SocketAddress, decode_sockaddr
from ciwatch.net.dns import DnsQuestion, decode_dns_query
from ciwatch.trace.decode import Args, MemoryReader, signed32

DNS_PORT = 53
AF_NETLINK = 16
NETLINK_ROUTE = 0
NETLINK_NETFILTER = 12
#: The most of a message read: a DNS query fits many times over.
_PAYLOAD_LIMIT = 4096
#: The largest sockaddr (sockaddr_storage).
_SOCKADDR_LIMIT = 128
#: How many iovecs of a message are looked at.
_VECTOR_LIMIT = 64
#: The kernel sends at most UIO_MAXIOV messages of one sendmmsg: all of them are judged.
MMSG_LIMIT = 1024
_MMSGHDR_SIZE = 64
_MSGHDR_SIZE = 56
_NLMSGHDR_SIZE = 16


class UnixConnect(NamedTuple):
    """A connect to a unix socket: not network traffic, but maybe a local build server's."""

    fd: int
    path: str


class SockaddrArg(NamedTuple):
    """A connect's socket and destination, and where its sockaddr lies in the tracee."""

    fd: int
    address: int
    raw: bytes
    destination: SocketAddress


class Datagram(NamedTuple):
    """A sendto with a destination address."""

    fd: int
    address: int
    raw: bytes
    destination: SocketAddress
    payload: bytes
    """The message, read only when it goes to port 53 (a DNS query to decode)."""
    size: int


class NetlinkSend(NamedTuple):
    """A sendto to a netlink address: the tracer asks the socket's protocol only when the
    payload holds a message that would change something (:func:`netlink_changes`)."""

    fd: int
    payload: bytes

    @property
    def destination(self) -> SocketAddress:
        """The kernel, as a loopback address: code that judges where a datagram goes (the
        sealed network of leftovers) lets it through to the netlink check."""
        return _KERNEL


_KERNEL = SocketAddress("inet", "127.0.0.1", 0)


class Message(NamedTuple):
    """One struct msghdr of a sendmsg or sendmmsg."""

    destination: SocketAddress | None
    """None on a connected socket (the peer is the socket's), or for another family."""
    payload: bytes
    size: int
    name: int = 0
    """Where the destination sockaddr lies in the tracee (0: none)."""
    raw: bytes = b""
    """The destination sockaddr's bytes as the program wrote them."""
    readable: bool = True
    """False when the msghdr or its sockaddr could not be read: the message was not judged."""

    @property
    def netlink(self) -> bool:
        return self.raw[:2] == AF_NETLINK.to_bytes(2, "little")


class Messages(NamedTuple):
    fd: int
    messages: list[Message]


class Receive(NamedTuple):
    """A recvfrom's source-address buffer and where the kernel writes its length."""

    fd: int
    address: int
    length_address: int


class ReceiveMsg(NamedTuple):
    """A recvmsg: its struct msghdr is read only for a socket whose replies need their
    source restored (:func:`recvmsg_source`), not at every receive."""

    fd: int
    msghdr: int


def decode_connect(pid: int, args: Args, mem: MemoryReader) -> SockaddrArg | UnixConnect | None:
    raw = mem.read_bytes(args[1], min(args[2], _SOCKADDR_LIMIT))
    destination = decode_sockaddr(raw)
    if destination is None:
        if raw[:2] == AF_UNIX.to_bytes(2, "little"):
            return UnixConnect(signed32(args[0]), unix_path(raw[2:]))
        return None  # AF_NETLINK, ...: not network traffic
    return SockaddrArg(signed32(args[0]), args[1], raw, destination)


def unix_path(sun_path: bytes) -> str:
    """A unix socket's name as a person writes it: the path, or ``@name`` for an abstract one."""
    if sun_path[:1] == b"\0":
        return "@" + sun_path[1:].rstrip(b"\0").decode("utf-8", "surrogateescape")
    return sun_path.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")


def decode_sendto(pid: int, args: Args, mem: MemoryReader) -> Datagram | NetlinkSend | None:
    raw = mem.read_bytes(args[4], min(args[5], _SOCKADDR_LIMIT))
    destination = decode_sockaddr(raw)
    if destination is None:
        if raw[:2] == AF_NETLINK.to_bytes(2, "little"):
            return NetlinkSend(signed32(args[0]), mem.read_bytes(args[1], min(args[2], _PAYLOAD_LIMIT)))
        return None
    # DNS is recognised by its content on any port (a resolver on 5353 is still DNS): the
    # start of every datagram is read, a DNS query fits in 512 bytes.
    limit = _PAYLOAD_LIMIT if destination.port == DNS_PORT else _DNS_LIMIT
    payload = mem.read_bytes(args[1], min(args[2], limit))
    return Datagram(signed32(args[0]), args[4], raw, destination, payload, args[2])


_DNS_LIMIT = 512


def read_iovecs(mem: MemoryReader, address: int, count: int) -> tuple[bytes, int]:
    """(the bytes of an iovec array up to 4 KiB, their total size): one message can span
    several buffers (glibc's DNS over TCP writes the length and the query apart)."""
    vectors = mem.read_bytes(address, 16 * min(count, _VECTOR_LIMIT))
    data = bytearray()
    total = 0
    for index in range(len(vectors) // 16):
        base, length = struct.unpack_from("<QQ", vectors, index * 16)
        if len(data) < _PAYLOAD_LIMIT:
            data += mem.read_bytes(base, min(length, _PAYLOAD_LIMIT - len(data)))
        total += length
    return bytes(data), total


def read_msghdr(mem: MemoryReader, address: int, header: bytes | None = None) -> Message:
    """The destination, the iovecs' bytes up to 4 KiB and the total size of a struct msghdr
    (``header``: its bytes, when they have been read already)."""
    if header is None:
        header = mem.read_bytes(address, _MSGHDR_SIZE)
    if len(header) < _MSGHDR_SIZE:
        return Message(None, b"", 0, readable=False)
    name, namelen, iov, iovlen = struct.unpack_from("<QI4xQQ", header)
    raw = mem.read_bytes(name, min(namelen, _SOCKADDR_LIMIT)) if name and namelen else b""
    if name and namelen and len(raw) < min(namelen, 2):
        return Message(None, b"", 0, readable=False)
    payload, total = read_iovecs(mem, iov, iovlen)
    return Message(decode_sockaddr(raw) if raw else None, payload, total, name if raw else 0, raw)


def decode_sendmsg(pid: int, args: Args, mem: MemoryReader) -> Messages:
    return Messages(signed32(args[0]), [read_msghdr(mem, args[1])])


def decode_sendmmsg(pid: int, args: Args, mem: MemoryReader) -> Messages:
    """Every message the kernel would send (it stops at UIO_MAXIOV), their headers read in one
    go. struct mmsghdr is a msghdr and the count the kernel fills in, 64 bytes in all."""
    count = min(args[2] & 0xFFFFFFFF, MMSG_LIMIT)
    table = mem.read_bytes(args[1], _MMSGHDR_SIZE * count)
    messages = []
    for index in range(count):
        start = index * _MMSGHDR_SIZE
        header = table[start : start + _MSGHDR_SIZE]
        messages.append(read_msghdr(mem, args[1] + start, header))
    return Messages(signed32(args[0]), messages)


def looks_like_netlink(payload: bytes, size: int) -> bool:
    """A message on a socket with no destination whose first bytes are a netlink header
    that spans no more than the message and asks for something (not a control message).
    Only then is the socket's family asked, so other sends cost nothing more."""
    if len(payload) < _NLMSGHDR_SIZE:
        return False
    length, kind = struct.unpack_from("<IH", payload)
    return bool(_NLMSGHDR_SIZE <= length <= size and kind >= 16)


def netlink_changes(protocol: int, payload: bytes) -> list[str]:
    """The messages of a netlink payload that change the network: rtnetlink's RTM_NEW*,
    RTM_DEL* and RTM_SET* (links, addresses, routes, rules, neighbours...; the RTM_GET* dumps
    that getaddrinfo's AI_ADDRCONFIG makes are not changes), and anything to netfilter."""
    found: list[str] = []
    offset = 0
    while offset + _NLMSGHDR_SIZE <= len(payload):
        length, kind, flags = struct.unpack_from("<IHH", payload, offset)
        if kind >= 16 and protocol == NETLINK_ROUTE and (kind - 16) % 4 != 2:
            found.append(f"rtnetlink message type {kind} (flags {flags:#x})")
        elif kind >= 16 and protocol == NETLINK_NETFILTER:
            found.append(f"nfnetlink subsystem {kind >> 8} message {kind & 0xFF} (flags {flags:#x})")
        if length < _NLMSGHDR_SIZE:
            break
        offset += (length + 3) & ~3
    return found


def strict_dns_query(payload: bytes) -> list[DnsQuestion]:
    """The questions of a datagram to a port other than 53, if it is a DNS query beyond
    doubt: opcode QUERY, one to four questions, no answers or authorities, at most one
    additional record (EDNS), and every question well formed (labels of 1 to 63 bytes)."""
    if len(payload) < 17:
        return []
    flags, qd, an, ns, ar = struct.unpack_from(">HHHHH", payload, 2)
    if flags & 0xF800 or not 1 <= qd <= 4 or an or ns or ar > 1:
        return []
    offset = 12
    for _ in range(qd):
        while offset < len(payload) and payload[offset]:
            if payload[offset] > 63:
                return []
            offset += payload[offset] + 1
        offset += 5
        if offset > len(payload) or payload[offset - 2 : offset] not in (b"\0\1", b"\0\xff", b"\0\3"):
            return []
    return decode_dns_query(payload)


def decode_recvfrom(pid: int, args: Args, mem: MemoryReader) -> Receive:
    return Receive(signed32(args[0]), args[4], args[5])


def decode_recvmsg(pid: int, args: Args, mem: MemoryReader) -> ReceiveMsg:
    return ReceiveMsg(signed32(args[0]), args[1])


def recvmsg_source(mem: MemoryReader, msghdr: int) -> tuple[int, int] | None:
    """(the source-address buffer, where its length is written) of a recvmsg's msghdr."""
    header = mem.read_bytes(msghdr, 16)
    if len(header) < 16:
        return None
    return struct.unpack_from("<Q", header)[0], msghdr + 8


def read_sockaddr(mem: MemoryReader, address: int, length_address: int) -> tuple[SocketAddress | None, int]:
    """(the sockaddr the kernel wrote at ``address``, the buffer's length) after a receive."""
    length = int.from_bytes(mem.read_bytes(length_address, 4) or b"\0\0\0\0", "little")
    return decode_sockaddr(mem.read_bytes(address, min(length, _SOCKADDR_LIMIT))), length
