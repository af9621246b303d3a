"""ciwatch's listeners serve only the build (issue 9, item 3).

While a build runs, its proxy and DNS listener listen where every local process can reach them.
A connection or query from a process that is not the build's (this test process, or one running
as another user) is refused: nothing is forwarded for it, it is no event of the record, and the
record's ``end`` line counts it. The build's own requests go on working and are recorded.
"""

from __future__ import annotations

import os
import shutil
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from ciwatch.egress.buildpeers import BuildPeers, holder_of, sockets_of_peer, tcp_client_inode
from ciwatch.record import Record, read_record
from ciwatch.record.events import DnsAnswer, EgressFlow, ProxyReady
from tests.support.internet import EVIL, EXFIL, TestInternet

NOBODY = "65534"
_PATIENCE_S = 60.0
"""How long a step may take before the test gives up (never what the test asserts)."""


# -- the pieces: a loopback web server, a build that waits, foreign clients ---------------


class _Paths(BaseHTTPRequestHandler):
    seen: list[str]

    def do_GET(self) -> None:
        self.seen.append(self.path)
        body = b"hello\n"
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@contextmanager
def loopback_web_server() -> Iterator[tuple[int, list[str]]]:
    """(port, the paths it was asked for) of an HTTP server on 127.0.0.1."""
    seen: list[str] = []
    handler = type("Handler", (_Paths,), {"seen": seen})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], seen
    finally:
        server.shutdown()
        server.server_close()


def _wait_for(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + _PATIENCE_S
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"still not true after {_PATIENCE_S}s: {condition}")
        time.sleep(0.05)


@dataclass
class RunningBuild:
    process: subprocess.Popen[str]
    out: Path
    release: Path

    def listeners(self) -> list[str]:
        ready = [i.event for i in read_record(self.out).events if isinstance(i.event, ProxyReady)]
        return ready[0].listeners

    def listener(self, prefix: str = "") -> tuple[str, int]:
        """The first listener whose entry in ``proxy-ready`` starts with ``prefix``."""
        entry = next(e for e in self.listeners() if e.startswith(prefix))
        host, port = entry.removeprefix(prefix).rsplit(":", 1)
        return host, int(port)

    def finish(self) -> Record:
        self.release.touch()
        _, stderr = self.process.communicate(timeout=_PATIENCE_S)
        assert self.process.returncode == 0, stderr
        return read_record(self.out)


@contextmanager
def build_that_waits(
    tmp_path: Path, ciwatch_args: list[str], before: str, after: str, wrap: Callable[[list[str]], list[str]] = list
) -> Iterator[RunningBuild]:
    """``ciwatch run`` of a build that runs ``before``, then waits for the test to release it,
    then runs ``after`` and exits."""
    out, started, release = tmp_path / "out", tmp_path / "started", tmp_path / "release"
    script = f"{before} && touch {started} && while [ ! -e {release} ]; do sleep 0.05; done && {after}"
    command = [sys.executable, "-m", "ciwatch", "run", *ciwatch_args, "--out", str(out), "--", "sh", "-c", script]
    env = {**os.environ, "HOME": str(tmp_path)}
    process = subprocess.Popen(wrap(command), cwd=tmp_path, env=env, text=True, stderr=subprocess.PIPE)
    try:
        _wait_for(lambda: started.exists() or process.poll() is not None)
        assert process.poll() is None, process.communicate()[1]
        yield RunningBuild(process, out, release)
    finally:
        release.touch()
        if process.poll() is None:
            process.kill()
            process.wait()


#: A Python every user may run: the test's own may live under /root (pyenv), which nobody can
#: read; the foreign clients use nothing but the standard library.
ANY_USERS_PYTHON = "/usr/bin/python3" if os.access("/usr/bin/python3", os.X_OK) else sys.executable


def as_nobody(argv: list[str]) -> list[str]:
    return ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", *argv]


def proxy_request(proxy: tuple[str, int], url: str, as_other_user: bool = False) -> bytes:
    """What a client that is not the build gets when it asks ciwatch's proxy for ``url``."""
    code = (
        "import socket, sys\n"
        "s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=60)\n"
        "host = sys.argv[3].split('/')[2]\n"
        "s.sendall(f'GET {sys.argv[3]} HTTP/1.1\\r\\nHost: {host}\\r\\nConnection: close\\r\\n\\r\\n'.encode())\n"
        "reply = b''\n"
        "while chunk := s.recv(65536):\n"
        "    reply += chunk\n"
        "sys.stdout.write(reply.hex())\n"
    )
    argv = [ANY_USERS_PYTHON, "-c", code, proxy[0], str(proxy[1]), url]
    done = subprocess.run(as_nobody(argv) if as_other_user else argv, capture_output=True, text=True, timeout=90)
    if done.returncode != 0 and "ConnectionResetError" in done.stderr:
        return b""  # closed on it: refused as well
    assert done.returncode == 0, done.stderr
    return bytes.fromhex(done.stdout)


def dns_query(name: str) -> bytes:
    question = b"".join(bytes([len(label)]) + label.encode() for label in name.split(".")) + b"\0"
    return struct.pack(">HHHHHH", 0x4242, 0x0100, 1, 0, 0, 0) + question + struct.pack(">HH", 1, 1)


@contextmanager
def dns_sender(listener: tuple[str, int], name: str, as_other_user: bool = False) -> Iterator[None]:
    """A query for ``name`` sent to ciwatch's DNS listener by a process that is not the build,
    which keeps its socket open until the block ends: a sender that is gone by the time its
    query is read can't be told from anyone's (counted apart, as "sender gone")."""
    code = (
        "import socket, sys\n"
        "family = socket.AF_INET6 if ':' in sys.argv[1] else socket.AF_INET\n"
        "sender = socket.socket(family, socket.SOCK_DGRAM)\n"
        "sender.sendto(bytes.fromhex(sys.argv[3]), (sys.argv[1], int(sys.argv[2])))\n"
        "print('sent', flush=True)\n"
        "sys.stdin.read()\n"
    )
    argv = [ANY_USERS_PYTHON, "-c", code, listener[0], str(listener[1]), dns_query(name).hex()]
    process = subprocess.Popen(
        as_nobody(argv) if as_other_user else argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None and process.stdout.readline() == "sent\n"
        yield
    finally:
        if process.stdin is not None:
            process.stdin.close()
        process.wait(timeout=60)


def flows(record: Record) -> list[EgressFlow]:
    return [i.event for i in record.events if isinstance(i.event, EgressFlow)]


def dns_answers(record: Record) -> list[DnsAnswer]:
    return [i.event for i in record.events if isinstance(i.event, DnsAnswer)]


# -- the peer look-up itself, on real sockets -----------------------------------------------


def test_a_socket_is_found_held_by_its_process_and_by_no_other():
    with socket.create_server(("127.0.0.1", 0)) as server, socket.create_connection(server.getsockname()) as client:
        inodes = sockets_of_peer(client.getsockname()[:2], "tcp")
        assert len(inodes) == 1
        assert holder_of(inodes, [os.getpid()]) == os.getpid()
        other = subprocess.Popen(["sleep", "60"])
        try:
            assert holder_of(inodes, [other.pid]) is None
            peers = BuildPeers(lambda: [other.pid], lambda: [])
            assert peers.admit(client.getsockname()[:2], "tcp", "proxy") is None
            assert peers.foreign.counts() == {"proxy": 1}
            mine = BuildPeers(lambda: [other.pid, os.getpid()], lambda: []).identify(client.getsockname()[:2], "tcp")
            assert mine is not None and mine.pid == os.getpid()
        finally:
            other.kill()
            other.wait()


@pytest.mark.parametrize("host", ["127.0.0.1", "::1"])
def test_the_kernel_names_a_tcp_client_socket_by_its_addresses(host):
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.create_server((host, 0), family=family) as server:
        listener = server.getsockname()[:2]
        with socket.create_connection(listener) as client:
            peer = client.getsockname()[:2]
            assert tcp_client_inode(peer, listener) == os.fstat(client.fileno()).st_ino
            assert sockets_of_peer(peer, "tcp") == [os.fstat(client.fileno()).st_ino]
            found = BuildPeers(lambda: [os.getpid()], lambda: []).identify(peer, "tcp", listener)
            assert found is not None and found.pid == os.getpid()
        # Closed: its side is in TIME_WAIT (owned by nobody) or gone.
        assert tcp_client_inode(peer, listener) is None


def test_an_unconnected_udp_socket_is_found_at_the_wildcard_address():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
        sender.bind(("0.0.0.0", 0))
        port = sender.getsockname()[1]
        # The listener sees the datagram come from 127.0.0.1; the socket is bound to 0.0.0.0.
        assert holder_of(sockets_of_peer(("127.0.0.1", port), "udp"), [os.getpid()]) == os.getpid()
        assert sockets_of_peer(("127.0.0.1", port), "tcp") == []


# -- ciwatch's listeners, while a build runs ------------------------------------------------


@pytest.mark.skipif(shutil.which("curl") is None, reason="needs curl")
def test_env_mode_proxy_serves_the_build_only(tmp_path):
    with loopback_web_server() as (port, seen):
        # curl is told to use the proxy for loopback too (the build's NO_PROXY names it).
        fetch = "curl -sf --noproxy '' -x \"$http_proxy\" -o /dev/null http://127.0.0.1:{port}/{path}"
        with build_that_waits(
            tmp_path,
            ["--net", "env"],
            before=fetch.format(port=port, path="build-before"),
            after=fetch.format(port=port, path="build-after"),
        ) as build:
            proxy = build.listener()
            same_user = proxy_request(proxy, f"http://127.0.0.1:{port}/foreign-same-user")
            other_user = proxy_request(proxy, f"http://127.0.0.1:{port}/foreign-other-user", as_other_user=True)
            record = build.finish()
    assert same_user == b"" and other_user == b"", (same_user, other_user)
    assert seen == ["/build-before", "/build-after"]
    urls = {flow.url: flow for flow in flows(record)}
    assert set(urls) == {f"http://127.0.0.1:{port}/build-before", f"http://127.0.0.1:{port}/build-after"}
    assert all(flow.status == 200 and flow.pid is not None for flow in urls.values())
    assert record.end is not None and record.end.foreign_peers == {"proxy": 2}


def _run_args(internet: TestInternet, net: str) -> list[str]:
    return ["--net", net, "--upstream-ca", str(internet.ca_cert)]


@pytest.mark.root
@pytest.mark.parametrize("net", ["redirect", "sandbox"])
def test_transparent_proxy_and_dns_listener_serve_the_build_only(internet, tmp_path, net):
    """The DNS listener (redirect: loopback; sandbox: the host end of the veth, which every
    host process can reach) and the transparent listener answer the build only."""
    with build_that_waits(
        tmp_path,
        _run_args(internet, net),
        before=f"getent hosts {EVIL} > /dev/null && curl -sf -o /dev/null https://{EVIL}/build",
        after=f"getent hosts {EXFIL} > /dev/null",
        wrap=internet.wrap_with_test_resolver,
    ) as build:
        dns = build.listener("dns ")
        transparent = next(entry for entry in build.listeners() if "." in entry and not entry.startswith("dns "))
        host, port = transparent.rsplit(":", 1)
        reply = proxy_request((host, int(port)), f"http://{EVIL}/foreign")
        with (
            dns_sender(dns, f"foreign-same-user.{EVIL}"),
            dns_sender(dns, f"foreign-other-user.{EVIL}", as_other_user=True),
        ):
            # The build's last query reaches the same listener after them: once it is recorded,
            # they have been dealt with.
            record = build.finish()
    assert reply == b""
    names = [answer.name for answer in dns_answers(record)]
    assert EVIL in names and EXFIL in names
    assert not [name for name in names if "foreign" in name]
    assert all(answer.pid is not None for answer in dns_answers(record) if answer.transport != "lookup")
    assert not [name for name in internet.dns_queries() if "foreign" in name]
    assert [flow.url for flow in flows(record)] == [f"https://{EVIL}/build"]
    assert [r.path for r in internet.requests_to(EVIL)] == ["/build"]
    assert record.end is not None
    # On a loaded machine the build's first queries may be read after it gave up on them and
    # closed its socket (the listener still starting): those are counted apart, never as foreign.
    assert {k: n for k, n in record.end.foreign_peers.items() if not k.endswith("(sender gone)")} == {
        "proxy": 1,
        "dns": 2,
    }
