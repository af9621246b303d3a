"""Decoders of the socket syscalls: where a connect or datagram goes, what it carries.

They return the addresses of the buffers too: in redirect mode the tracer rewrites the
sockaddr in place (and puts the original back afterwards), which is not a decoder's job.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

from ciwatch.net.address import SocketAddress, decode_sockaddr
from ciwatch.trace.decode import Args, MemoryReader, signed32

DNS_PORT = 53
#: The most of a message read: a DNS query fits many times over.
_PAYLOAD_LIMIT = 4096
#: The largest sockaddr (sockaddr_storage).
_SOCKADDR_LIMIT = 128
#: How many messages of a sendmmsg and iovecs of a message are looked at.
_VECTOR_LIMIT = 64
_MMSGHDR_SIZE = 64
_MSGHDR_SIZE = 56


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


class Message(NamedTuple):
    """One struct msghdr of a sendmsg or sendmmsg."""

    destination: SocketAddress | None
    """None on a connected socket (the peer is the socket's)."""
    payload: bytes
    size: int


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


def decode_connect(pid: int, args: Args, mem: MemoryReader) -> SockaddrArg | None:
    raw = mem.read_bytes(args[1], min(args[2], _SOCKADDR_LIMIT))
    destination = decode_sockaddr(raw)
    if destination is None:
        return None  # AF_UNIX, AF_NETLINK, ...: not network traffic
    return SockaddrArg(signed32(args[0]), args[1], raw, destination)


def decode_sendto(pid: int, args: Args, mem: MemoryReader) -> Datagram | None:
    raw = mem.read_bytes(args[4], min(args[5], _SOCKADDR_LIMIT))
    destination = decode_sockaddr(raw)
    if destination is None:
        return None
    payload = mem.read_bytes(args[1], min(args[2], _PAYLOAD_LIMIT)) if destination.port == DNS_PORT else b""
    return Datagram(signed32(args[0]), args[4], raw, destination, payload, args[2])


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


def read_msghdr(mem: MemoryReader, address: int) -> Message:
    """The destination, the iovecs' bytes up to 4 KiB and the total size of a struct msghdr."""
    header = mem.read_bytes(address, _MSGHDR_SIZE)
    if len(header) < _MSGHDR_SIZE:
        return Message(None, b"", 0)
    name, namelen, iov, iovlen = struct.unpack_from("<QI4xQQ", header)
    destination = decode_sockaddr(mem.read_bytes(name, min(namelen, _SOCKADDR_LIMIT))) if name else None
    payload, total = read_iovecs(mem, iov, iovlen)
    return Message(destination, payload, total)


def decode_sendmsg(pid: int, args: Args, mem: MemoryReader) -> Messages:
    return Messages(signed32(args[0]), [read_msghdr(mem, args[1])])


def decode_sendmmsg(pid: int, args: Args, mem: MemoryReader) -> Messages:
    # struct mmsghdr: a msghdr and the count the kernel fills in, 64 bytes in all.
    count = min(args[2], _VECTOR_LIMIT)
    return Messages(signed32(args[0]), [read_msghdr(mem, args[1] + _MMSGHDR_SIZE * i) for i in range(count)])


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
