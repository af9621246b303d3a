"""The decoders of ways around the tracer, netlink changes and DNS on other ports, over a fake
tracee."""

from __future__ import annotations

import struct

from ciwatch.record.vocabulary import AnomalyKind
from ciwatch.trace.decode import escapes as e
from ciwatch.trace.decode import network as n
from tests.unit.trace.fake import FakeMemory, args

PID = 42


def test_a_seccomp_listener_blinds_a_filter_alone_does_not() -> None:
    mem = FakeMemory()
    listener = e.decode_seccomp(PID, args(1, 1 << 3, 0x1000), mem)
    assert listener is not None and listener.anomaly.anomaly is AnomalyKind.SECCOMP_LISTENER and listener.blinds
    plain = e.decode_seccomp(PID, args(1, 0, 0x1000), mem)
    assert plain is not None and plain.anomaly.anomaly is AnomalyKind.SECCOMP_FILTER and not plain.blinds
    assert e.decode_seccomp(PID, args(2, 0, 0x1000), mem) is None  # SECCOMP_GET_ACTION_AVAIL
    assert not e.decode_prctl(PID, args(22, 2, 0x1000), mem).blinds


def test_setns_into_a_network_namespace_by_flag_or_by_fd() -> None:
    mem = FakeMemory(fds={5: "net:[4026531833]", 6: "mnt:[4026531840]"})
    by_flag = e.decode_setns(PID, args(6, e.CLONE_NEWNET), mem)
    assert by_flag is not None and by_flag.joins_namespace and by_flag.blinds
    assert e.decode_setns(PID, args(5, 0), mem) is not None
    assert e.decode_setns(PID, args(6, 0), mem) is None  # a mount namespace: not the network
    assert e.decode_setns(PID, args(6, 0x00020000), mem) is None  # CLONE_NEWNS


def test_clone_untraced_is_stripped_or_refused_newnet_is_refused() -> None:
    mem = FakeMemory()
    untraced = e.decode_clone(PID, args(e.CLONE_UNTRACED | 17), mem)
    assert untraced.anomaly.anomaly is AnomalyKind.UNTRACED_CLONE and untraced.strip == e.CLONE_UNTRACED
    newnet = e.decode_clone(PID, args(e.CLONE_NEWNET | 17), mem)
    assert newnet.anomaly.anomaly is AnomalyKind.NETWORK_NAMESPACE and not newnet.strip
    assert e.decode_unshare(PID, args(e.CLONE_NEWNET), mem).blinds


def test_raw_and_packet_sockets() -> None:
    mem = FakeMemory()
    assert e.decode_socket(PID, args(2, 3, 1), mem).anomaly.anomaly is AnomalyKind.RAW_SOCKET
    assert e.decode_socket(PID, args(17, 3, 0x300), mem).anomaly.anomaly is AnomalyKind.PACKET_SOCKET
    assert e.decode_socket(PID, args(2, 10, 0), mem).anomaly.anomaly is AnomalyKind.PACKET_SOCKET


def _nlmsg(kind: int, flags: int = 1, body: bytes = b"\0" * 16) -> bytes:
    return struct.pack("<IHHII", 16 + len(body), kind, flags, 1, 0) + body


def test_netlink_changes_are_new_del_set_not_get() -> None:
    assert n.netlink_changes(n.NETLINK_ROUTE, _nlmsg(18, 0x301)) == []  # RTM_GETLINK dump
    assert n.netlink_changes(n.NETLINK_ROUTE, _nlmsg(22) + _nlmsg(26)) == []  # RTM_GETADDR, RTM_GETROUTE
    for kind in (16, 17, 19, 20, 21, 24, 25, 32, 33):  # links, addresses, routes, rules
        assert n.netlink_changes(n.NETLINK_ROUTE, _nlmsg(kind)), kind
    batch = _nlmsg(22) + _nlmsg(24)  # a dump, then RTM_NEWROUTE in the same payload
    assert len(n.netlink_changes(n.NETLINK_ROUTE, batch)) == 1
    assert n.netlink_changes(n.NETLINK_NETFILTER, _nlmsg(0x10) + _nlmsg(0xA00))
    assert n.netlink_changes(4, _nlmsg(20)) == []  # sock_diag: types mean other things there


def test_a_netlink_send_by_sendto_and_a_netlink_looking_sendmsg() -> None:
    mem = FakeMemory()
    message = _nlmsg(20)
    kernel = struct.pack("<HHII", 16, 0, 0, 0)
    call = n.decode_sendto(PID, args(3, mem.put(message), len(message), 0, mem.put(kernel), len(kernel)), mem)
    assert call == n.NetlinkSend(3, message)
    assert n.looks_like_netlink(message, len(message))
    assert not n.looks_like_netlink(b"GET / HTTP/1.1\r\n\r\n", 18)


def _query(name: str, qtype: int = 1, qclass: int = 1, flags: int = 0x0100, arcount: int = 0) -> bytes:
    labels = b"".join(bytes([len(part)]) + part.encode() for part in name.split("."))
    return struct.pack(">HHHHHH", 0x1337, flags, 1, 0, 0, arcount) + labels + b"\0" + struct.pack(">HH", qtype, qclass)


def test_dns_on_another_port_only_beyond_doubt() -> None:
    assert [q.name for q in n.strict_dns_query(_query("x.tunnel.exfil.test"))] == ["x.tunnel.exfil.test"]
    assert n.strict_dns_query(_query("a.b", arcount=1))  # EDNS
    assert n.strict_dns_query(_query("a.b", flags=0x8180)) == []  # a response
    assert n.strict_dns_query(_query("a.b", qclass=7)) == []
    assert n.strict_dns_query(b"\x00" * 40) == []
    assert n.strict_dns_query(b"mmsg-exfil") == []


def test_sendmmsg_reads_every_message_up_to_the_kernels_limit() -> None:
    mem = FakeMemory()
    body = mem.put(b"x")
    iov = mem.put(struct.pack("<QQ", body, 1))
    header = struct.pack("<QI4xQQQQi4x", 0, 0, iov, 1, 0, 0, 0) + bytes(8)
    table = mem.put(header * 2000)
    call = n.decode_sendmmsg(PID, args(3, table, 2000, 0), mem)
    assert len(call.messages) == n.MMSG_LIMIT and all(m.readable and m.size == 1 for m in call.messages)
    unreadable = n.decode_sendmmsg(PID, args(3, 0xBAD000, 3, 0), mem)
    assert [m.readable for m in unreadable.messages] == [False, False, False]
