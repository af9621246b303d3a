"""tracer-evasion and proxy-bypass's io_uring on built records: the finding names the package
and hook, its severity fails block mode where the anomaly blinds ciwatch, and a filter without
a listener is low."""

from __future__ import annotations

from pathlib import Path

import pytest

from ciwatch.policy.model import Severity
from ciwatch.record.vocabulary import AnomalyKind
from tests.test_rules import Build, found, only


@pytest.fixture
def build(tmp_path: Path) -> Build:
    return Build(tmp_path)


BLINDING = [
    AnomalyKind.SECCOMP_LISTENER,
    AnomalyKind.NETWORK_NAMESPACE,
    AnomalyKind.UNTRACED_CLONE,
    AnomalyKind.RAW_SOCKET,
    AnomalyKind.PACKET_SOCKET,
    AnomalyKind.NETLINK_CHANGE,
    AnomalyKind.UNREADABLE_MESSAGE,
]


@pytest.mark.parametrize("kind", BLINDING)
def test_a_way_around_the_tracer_is_a_high_finding_of_the_hook(build: Build, kind: AnomalyKind) -> None:
    seq = build.hook().spawn(["node", "install.js"]).anomaly(kind, f"{kind} detail")
    verdict = build.judge()
    finding = only(verdict, "tracer-evasion")
    assert finding.evidence == (seq,) and finding.severity is Severity.HIGH
    assert finding.package is not None and finding.hook is not None and f"{kind} detail" in finding.message
    assert verdict.verdict == "fail"


def test_a_seccomp_filter_without_a_listener_is_low(build: Build) -> None:
    build.hook().spawn(["node", "install.js"]).anomaly(AnomalyKind.SECCOMP_FILTER, "prctl(PR_SET_SECCOMP)")
    assert only(build.judge(), "tracer-evasion").severity is Severity.LOW


def test_io_uring_is_at_least_high(build: Build) -> None:
    build.hook().spawn(["node", "install.js"]).anomaly(AnomalyKind.IO_URING, "io_uring_setup")
    verdict = build.judge()
    assert only(verdict, "proxy-bypass").severity is Severity.HIGH and verdict.verdict == "fail"
    assert found(verdict, "tracer-evasion") == []
