"""The socket decoders, over a fake tracee (no socket is opened: addresses are bytes)."""

from __future__ import annotations

import ipaddress
import socket
import struct

from ciwatch.net.address import SocketAddress
from ciwatch.trace.decode import network as n
from tests.unit.trace.fake import FakeMemory, args

PID = 42
#: RFC 5737 documentation addresses: never reached, only decoded.
SERVER = "192.0.2.53"
PEER6 = "2001:db8::1"


def sockaddr_in(address: str, port: int) -> bytes:
    packed = ipaddress.IPv4Address(address).packed
    return struct.pack("<H", socket.AF_INET) + struct.pack(">H", port) + packed + bytes(8)


def sockaddr_in6(address: str, port: int) -> bytes:
    packed = ipaddress.IPv6Address(address).packed
    return struct.pack("<H", socket.AF_INET6) + struct.pack(">H", port) + bytes(4) + packed + bytes(4)


def msghdr(mem: FakeMemory, name: bytes, buffers: list[bytes]) -> int:
    iov = b"".join(struct.pack("<QQ", mem.put(buffer), len(buffer)) for buffer in buffers)
    name_address = mem.put(name) if name else 0
    header = struct.pack("<QI4xQQ", name_address, len(name), mem.put(iov), len(buffers)) + bytes(24)
    assert len(header) == 56
    return mem.put(header)


def test_connect_decodes_the_destination_and_keeps_its_bytes() -> None:
    mem = FakeMemory()
    raw = sockaddr_in6(PEER6, 443)
    address = mem.put(raw)
    call = n.decode_connect(PID, args(-1 & 0xFFFFFFFF, address, len(raw)), mem)
    assert call == n.SockaddrArg(-1, address, raw, SocketAddress("inet6", PEER6, 443))


def test_connect_of_a_unix_socket_is_not_network_but_names_its_socket() -> None:
    """Not network traffic; its path (or abstract name) is what a local build server is found by."""
    mem = FakeMemory()
    raw = struct.pack("<H", socket.AF_UNIX) + b"/run/socket\0"
    assert n.decode_connect(PID, args(3, mem.put(raw), len(raw)), mem) == n.UnixConnect(3, "/run/socket")
    abstract = struct.pack("<H", socket.AF_UNIX) + b"\0turbod"
    assert n.decode_connect(PID, args(4, mem.put(abstract), len(abstract)), mem) == n.UnixConnect(4, "@turbod")
    netlink = struct.pack("<H", socket.AF_NETLINK) + b"\0" * 10
    assert n.decode_connect(PID, args(5, mem.put(netlink), len(netlink)), mem) is None


def test_sendto_reads_the_start_of_a_datagram_to_any_port() -> None:
    mem = FakeMemory()
    query, raw = b"\x12\x34query", sockaddr_in(SERVER, 53)
    call = n.decode_sendto(PID, args(5, mem.put(query), len(query), 0, mem.put(raw), len(raw)), mem)
    assert call is not None
    assert (call.fd, call.destination, call.payload, call.size) == (5, SocketAddress("inet", SERVER, 53), query, 7)
    other = sockaddr_in(SERVER, 123)
    ntp = n.decode_sendto(PID, args(5, mem.put(query), 9, 0, mem.put(other), len(other)), mem)
    assert isinstance(ntp, n.Datagram) and ntp.payload == query and ntp.size == 9


def test_sendmsg_joins_its_iovecs() -> None:
    mem = FakeMemory()
    address = msghdr(mem, sockaddr_in(SERVER, 53), [b"\x00\x05", b"hello"])
    call = n.decode_sendmsg(PID, args(6, address, 0), mem)
    raw = sockaddr_in(SERVER, 53)
    (message,) = call.messages
    assert (message.destination, message.payload, message.size, message.raw) == (
        SocketAddress("inet", SERVER, 53),
        b"\x00\x05hello",
        7,
        raw,
    )
    assert mem.read_bytes(message.name, len(raw)) == raw  # where the redirect rewrites it


def test_sendmsg_on_a_connected_socket_has_no_destination() -> None:
    mem = FakeMemory()
    call = n.decode_sendmsg(PID, args(6, msghdr(mem, b"", [b"abc"]), 0), mem)
    assert call.messages == [n.Message(None, b"abc", 3)]


def test_sendmmsg_decodes_each_message() -> None:
    mem = FakeMemory()
    first = msghdr(mem, sockaddr_in(SERVER, 53), [b"one"])
    second = msghdr(mem, sockaddr_in(SERVER, 54), [b"second"])
    vector = mem.put(mem.read_bytes(first, 56) + bytes(8) + mem.read_bytes(second, 56) + bytes(8))
    call = n.decode_sendmmsg(PID, args(6, vector, 2, 0), mem)
    assert [(m.destination.port if m.destination else None, m.payload) for m in call.messages] == [
        (53, b"one"),
        (54, b"second"),
    ]


def test_an_unreadable_msghdr_is_an_empty_message() -> None:
    assert n.read_msghdr(FakeMemory(), 0xBAD000) == n.Message(None, b"", 0, readable=False)


def test_read_iovecs_stops_reading_at_4_kib_but_counts_everything() -> None:
    mem = FakeMemory()
    big = b"x" * 3000
    vectors = mem.put(struct.pack("<QQQQ", mem.put(big), len(big), mem.put(big), len(big)))
    data, total = n.read_iovecs(mem, vectors, 2)
    assert (len(data), total) == (4096, 6000)


def test_receives_decode_where_the_source_goes() -> None:
    mem = FakeMemory()
    assert n.decode_recvfrom(PID, args(7, 0x1000, 512, 0, 0x2000, 0x3000), mem) == n.Receive(7, 0x2000, 0x3000)
    header = mem.put(struct.pack("<QI", 0x5000, 16) + bytes(44))
    assert n.decode_recvmsg(PID, args(7, header, 0), mem) == n.ReceiveMsg(7, header)
    assert n.recvmsg_source(mem, header) == (0x5000, header + 8)
    assert n.recvmsg_source(mem, 0xBAD000) is None


def test_read_sockaddr_after_a_receive() -> None:
    mem = FakeMemory()
    raw = sockaddr_in("127.0.0.1", 5353)
    address, length = mem.put(raw), mem.put(struct.pack("<I", len(raw)))
    assert n.read_sockaddr(mem, address, length) == (SocketAddress("inet", "127.0.0.1", 5353), 16)
