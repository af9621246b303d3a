"""Network: connects, datagrams and DNS queries of the build, all to servers on loopback.

Name lookups in these tests go to the test's own DNS responder on 127.0.0.53, and only ever
from inside ``unshare --mount`` with /etc/resolv.conf bind-mounted to a file naming it: a
made-up name never reaches this machine's real resolver. The wrapper refuses to run the
command if the bind mount fails.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import select
import socket
import struct
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from ciwatch.record.events import DnsQuery, NetConnect, NetSend, ProcessExec
from tests.conftest import require

DNS_SERVER = "127.0.0.53"


@pytest.fixture
def traced(ciwatch):  # type: ignore[no-untyped-def]
    """``ciwatch run --net off``: the tracer without the egress proxy, which these tests
    don't need (it costs about a second a run)."""
    return functools.partial(ciwatch, "--net", "off")


# -- servers -------------------------------------------------------------------------------


@contextlib.contextmanager
def tcp_server(family: socket.AddressFamily, host: str) -> Iterator[int]:
    """A TCP server that accepts and closes connections; yields its port."""
    server = socket.socket(family, socket.SOCK_STREAM)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind((host, 0))
    server.listen(16)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            ready, _, _ = select.select([server], [], [], 0.05)
            if ready:
                connection, _ = server.accept()
                connection.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1]
    finally:
        stop.set()
        thread.join()
        server.close()


def _dns_name(payload: bytes, offset: int) -> tuple[str, int]:
    labels = []
    while payload[offset]:
        length = payload[offset]
        labels.append(payload[offset + 1 : offset + 1 + length].decode("ascii"))
        offset += 1 + length
    return ".".join(labels), offset + 1


@dataclass
class DnsResponder:
    """Answers A queries for names under ``.test`` with 127.0.0.1 (other types: no data),
    and NXDOMAIN for every other name."""

    queries: list[tuple[str, int]] = field(default_factory=list)

    def answer(self, query: bytes) -> bytes:
        name, offset = _dns_name(query, 12)
        qtype = struct.unpack_from(">H", query, offset)[0]
        self.queries.append((name, qtype))
        question = query[12 : offset + 4]
        flags = 0x8180 | (struct.unpack_from(">H", query, 2)[0] & 0x0100)  # QR, RA, RD echoed
        answers = b""
        if not name.endswith(".test"):
            flags |= 3  # NXDOMAIN
        elif qtype == 1:
            answers = struct.pack(">HHHIH4s", 0xC00C, 1, 1, 60, 4, socket.inet_aton("127.0.0.1"))
        header = query[:2] + struct.pack(">HHHHH", flags, 1, 1 if answers else 0, 0, 0)
        return header + question + answers


def _serve_dns_over_tcp(responder: DnsResponder, connection: socket.socket) -> None:
    """Length-prefixed queries in, length-prefixed answers out, until the client closes."""
    with connection:
        connection.settimeout(10)
        buffer = b""
        with contextlib.suppress(OSError):
            while chunk := connection.recv(4096):
                buffer += chunk
                while len(buffer) >= 2 and len(buffer) >= 2 + struct.unpack_from(">H", buffer)[0]:
                    length = struct.unpack_from(">H", buffer)[0]
                    query, buffer = buffer[2 : 2 + length], buffer[2 + length :]
                    answer = responder.answer(query)
                    connection.sendall(struct.pack(">H", len(answer)) + answer)


@pytest.fixture(scope="module")
def dns_responder() -> Iterator[DnsResponder]:
    """The test's DNS server on 127.0.0.53 port 53, over UDP and TCP."""
    responder = DnsResponder()
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind((DNS_SERVER, 53))
    tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    tcp.bind((DNS_SERVER, 53))
    tcp.listen(16)
    stop = threading.Event()
    handlers: list[threading.Thread] = []

    def serve() -> None:
        while not stop.is_set():
            ready, _, _ = select.select([udp, tcp], [], [], 0.05)
            if udp in ready:
                query, client = udp.recvfrom(4096)
                with contextlib.suppress(Exception):  # a malformed query gets no answer
                    udp.sendto(responder.answer(query), client)
            if tcp in ready:
                connection, _ = tcp.accept()
                handler = threading.Thread(target=_serve_dns_over_tcp, args=(responder, connection), daemon=True)
                handler.start()
                handlers.append(handler)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield responder
    finally:
        stop.set()
        thread.join()
        for handler in handlers:
            handler.join()
        udp.close()
        tcp.close()


def _wrapper(resolv_conf: Path) -> list[str]:
    """Prefix for a command that may look names up: it runs in its own mount namespace where
    /etc/resolv.conf is ``resolv_conf``, and fails (never falls back) if it can't be."""
    require("unshare")
    script = (
        'mount --bind "$0" /etc/resolv.conf || { echo "test wrapper: bind mount failed" >&2; exit 99; }; '
        '[ "$(cat /etc/resolv.conf)" = "$(cat "$0")" ] || { echo "test wrapper: not our resolv.conf" >&2; exit 98; }; '
        'exec "$@"'
    )
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, str(resolv_conf)]


@pytest.fixture
def resolver_wrapper(tmp_path: Path, dns_responder: DnsResponder) -> list[str]:
    """The wrapper, with a resolv.conf that names only the test's responder."""
    resolv_conf = tmp_path / "resolv.conf"
    resolv_conf.write_text(f"nameserver {DNS_SERVER}\noptions timeout:2 attempts:2\n")
    return _wrapper(resolv_conf)


@pytest.fixture
def tcp_resolver_wrapper(tmp_path: Path, dns_responder: DnsResponder) -> list[str]:
    """The same, with glibc asked to use DNS over TCP (``use-vc``)."""
    resolv_conf = tmp_path / "resolv-tcp.conf"
    resolv_conf.write_text(f"nameserver {DNS_SERVER}\noptions use-vc timeout:2 attempts:2\n")
    return _wrapper(resolv_conf)


def _exec_pid(run, argv0: str) -> int:  # type: ignore[no-untyped-def]
    found = [e.pid for e in run.events(ProcessExec) if e.argv[:1] == [argv0]]
    assert len(found) == 1, [e.argv for e in run.events(ProcessExec)]
    return found[0]


def _python_pid(run) -> int:  # type: ignore[no-untyped-def]
    return _exec_pid(run, sys.executable)


# -- connect and send ----------------------------------------------------------------------

_CONNECT = "import socket, sys; socket.create_connection((sys.argv[1], int(sys.argv[2]))).close()"


def test_tcp_connect_to_ipv4_loopback(traced):
    with tcp_server(socket.AF_INET, "127.0.0.1") as port:
        run = traced("--", sys.executable, "-c", _CONNECT, "127.0.0.1", str(port))
    assert run.code == 0, run.stderr
    connects = [e for e in run.events(NetConnect) if e.port == port]
    assert len(connects) == 1
    connect = connects[0]
    assert (connect.family, connect.address, connect.protocol, connect.result) == ("inet", "127.0.0.1", "tcp", 0)
    assert connect.pid == _python_pid(run)


def test_tcp_connect_to_ipv6_loopback(traced):
    with tcp_server(socket.AF_INET6, "::1") as port:
        run = traced("--", sys.executable, "-c", _CONNECT, "::1", str(port))
    assert run.code == 0, run.stderr
    [connect] = [e for e in run.events(NetConnect) if e.port == port]
    assert (connect.family, connect.address, connect.protocol, connect.result) == ("inet6", "::1", "tcp", 0)
    assert connect.pid == _python_pid(run)


def test_refused_and_non_blocking_connects_record_their_result(traced):
    with socket.socket() as unused:  # a port nobody listens on
        unused.bind(("127.0.0.1", 0))
        closed_port = unused.getsockname()[1]
    code = (
        "import socket, sys\n"
        "try:\n"
        "    socket.create_connection(('127.0.0.1', int(sys.argv[1])))\n"
        "except ConnectionRefusedError:\n"
        "    print('refused')\n"
        "s = socket.socket(); s.setblocking(False)\n"
        "print(s.connect_ex(('127.0.0.1', int(sys.argv[2]))))\n"
    )
    with tcp_server(socket.AF_INET, "127.0.0.1") as port:
        run = traced("--", sys.executable, "-c", code, str(closed_port), str(port))
    assert run.code == 0, run.stderr
    assert run.stdout.split()[0] == "refused"
    results = {e.port: e.result for e in run.events(NetConnect)}
    assert results[closed_port] == -errno.ECONNREFUSED
    assert results[port] in (0, -errno.EINPROGRESS)
    assert int(run.stdout.split()[1]) == -results[port]


def test_udp_sendto_is_a_net_send(traced):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as receiver:
        receiver.bind(("127.0.0.1", 0))
        port = receiver.getsockname()[1]
        code = (
            "import socket, sys; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); "
            "s.sendto(b'x' * 123, ('127.0.0.1', int(sys.argv[1])))"
        )
        run = traced("--", sys.executable, "-c", code, str(port))
        assert receiver.recv(4096) == b"x" * 123
    assert run.code == 0, run.stderr
    [send] = [e for e in run.events(NetSend) if e.port == port]
    assert (send.family, send.address, send.protocol, send.size) == ("inet", "127.0.0.1", "udp", 123)
    assert send.pid == _python_pid(run)


# -- DNS -----------------------------------------------------------------------------------

_RAW_DNS_QUERY = r"""
import socket, struct
name = b"".join(bytes([len(label)]) + label for label in b"raw.example.test".split(b".")) + b"\0"
query = struct.pack(">HHHHHH", 0x1234, 0x0100, 1, 0, 0, 0) + name + struct.pack(">HH", 28, 1)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(10)
s.sendto(query, ("127.0.0.53", 53))
reply = s.recv(4096)
print("answered", reply[:2] == query[:2])
"""


def test_dns_query_sent_with_sendto(traced, dns_responder):
    run = traced("--", sys.executable, "-c", _RAW_DNS_QUERY)
    assert run.code == 0, run.stderr
    assert run.stdout == "answered True\n"
    assert ("raw.example.test", 28) in dns_responder.queries
    queries = [(e.name, e.qtype, e.server, e.port, e.pid) for e in run.events(DnsQuery)]
    assert queries == [("raw.example.test", "AAAA", DNS_SERVER, 53, _python_pid(run))]
    [send] = run.events(NetSend)
    assert (send.address, send.port, send.protocol) == (DNS_SERVER, 53, "udp")


def test_the_wrapper_refuses_to_run_without_its_resolv_conf(traced, resolver_wrapper, tmp_path):
    broken = [*resolver_wrapper[:-1], str(tmp_path / "missing-resolv.conf")]
    marker = tmp_path / "ran"
    run = traced("--", *broken, "touch", str(marker))
    assert run.code == 99
    assert not marker.exists()


def _names(run, pid: int) -> set[tuple[str, str]]:  # type: ignore[no-untyped-def]
    queries = run.events(DnsQuery)
    assert all((q.server, q.port) == (DNS_SERVER, 53) for q in queries)
    assert {q.pid for q in queries} == {pid}, "every query is attributed to the process that sent it"
    return {(q.name, q.qtype) for q in queries}


def test_glibc_resolver_getent(traced, resolver_wrapper, dns_responder):
    run = traced("--", *resolver_wrapper, "getent", "hosts", "leak.example.test")
    assert run.code == 0, run.stderr
    assert run.stdout.split() == ["127.0.0.1", "leak.example.test"]
    names = _names(run, _exec_pid(run, "getent"))
    assert names & {("leak.example.test", "A"), ("leak.example.test", "AAAA")}
    assert names <= {("leak.example.test", "A"), ("leak.example.test", "AAAA")}
    # What the responder saw is what the record says was asked.
    assert {(n, "A" if t == 1 else "AAAA") for n, t in dns_responder.queries if n == "leak.example.test"} == names


def test_glibc_resolver_from_python_getaddrinfo(traced, resolver_wrapper):
    code = (
        "import socket; "
        "print(sorted({a[4][0] for a in socket.getaddrinfo('py.example.test', 80, type=socket.SOCK_STREAM)}))"
    )
    run = traced("--", *resolver_wrapper, sys.executable, "-c", code)
    assert run.code == 0, run.stderr
    assert run.stdout == "['127.0.0.1']\n"
    names = _names(run, _python_pid(run))
    assert ("py.example.test", "A") in names
    assert names <= {("py.example.test", "A"), ("py.example.test", "AAAA")}


def test_nxdomain_lookup_is_recorded(traced, resolver_wrapper, dns_responder):
    run = traced("--", *resolver_wrapper, "getent", "ahostsv4", "nothing-here.example.invalid")
    assert run.code == 2, run.stderr  # getent: key not found
    assert ("nothing-here.example.invalid", "A") in _names(run, _exec_pid(run, "getent"))
    assert any(name == "nothing-here.example.invalid" for name, _ in dns_responder.queries)


_THREADED_LOOKUP = """
import socket, threading
idle = threading.Event()
sleepers = [threading.Thread(target=idle.wait) for _ in range(4)]
for t in sleepers:
    t.start()
result = []
worker = threading.Thread(
    target=lambda: result.append(socket.getaddrinfo("thread.example.test", 443, socket.AF_INET)[0][4][0])
)
worker.start()
worker.join()
idle.set()
for t in sleepers:
    t.join()
print(result[0])
"""


def test_dns_from_a_worker_thread_of_a_multithreaded_process(traced, resolver_wrapper):
    run = traced("--", *resolver_wrapper, sys.executable, "-c", _THREADED_LOOKUP)
    assert run.code == 0, run.stderr
    assert run.stdout == "127.0.0.1\n"
    assert _names(run, _python_pid(run)) == {("thread.example.test", "A")}


def test_glibc_resolver_over_tcp(traced, tcp_resolver_wrapper, dns_responder):
    # glibc sends each query with one writev: a 2-byte length and the message (two of each
    # when it asks A and AAAA together).
    code = (
        "import socket; "
        "print(sorted({a[4][0] for a in socket.getaddrinfo('tcp.example.test', 80, type=socket.SOCK_STREAM)}))"
    )
    run = traced("--", *tcp_resolver_wrapper, sys.executable, "-c", code)
    assert run.code == 0, run.stderr
    assert run.stdout == "['127.0.0.1']\n"
    assert ("tcp.example.test", 1) in dns_responder.queries
    python = _python_pid(run)
    assert any((c.address, c.port, c.protocol) == (DNS_SERVER, 53, "tcp") for c in run.events(NetConnect))
    assert _names(run, python) == {("tcp.example.test", "A"), ("tcp.example.test", "AAAA")}
    getent = traced("--", *tcp_resolver_wrapper, "getent", "hosts", "vc.example.test")
    assert getent.code == 0, getent.stderr
    assert ("vc.example.test", "A") in _names(getent, _exec_pid(getent, "getent"))


def test_loopback_traffic_is_left_alone_in_the_default_mode(ciwatch, resolver_wrapper, dns_responder):
    # The default (redirect) mode sends outbound traffic to ciwatch's proxy; loopback
    # destinations go where they were meant to and are recorded the same way.
    with tcp_server(socket.AF_INET, "127.0.0.1") as port:
        script = f'getent hosts default.example.test && {sys.executable} -c "{_CONNECT}" 127.0.0.1 {port}'
        run = ciwatch("--", *resolver_wrapper, "sh", "-c", script)
    assert run.code == 0, run.stderr
    assert run.stdout.split() == ["127.0.0.1", "default.example.test"]
    assert ("default.example.test", 1) in dns_responder.queries
    [connect] = [e for e in run.events(NetConnect) if e.port == port]
    assert (connect.address, connect.protocol, connect.result, connect.via) == ("127.0.0.1", "tcp", 0, "direct")
    assert ("default.example.test", "A") in {(q.name, q.qtype) for q in run.events(DnsQuery)}
    assert all(c.via == "direct" for c in run.events(NetConnect))
