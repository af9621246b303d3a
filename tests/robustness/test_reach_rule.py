"""tracer-evasion on built records: a call that reached for ciwatch's memory or descriptors is
a high finding of the build or hook that made it; a hook reading a sibling's memory is not
(it is a credential read), nor is an ordinary build."""

from __future__ import annotations

from pathlib import Path

import pytest

from ciwatch.policy.model import Severity
from ciwatch.record.vocabulary import AnomalyKind, ReadHow
from tests.test_rules import Build, found, only


@pytest.fixture
def build(tmp_path: Path) -> Build:
    return Build(tmp_path)


def test_reaching_into_ciwatch_is_a_high_tracer_evasion_finding(build: Build) -> None:
    detail = "process_vm_writev(thread 812) would reach ciwatch's own processes: refused"
    seq = build.hook().spawn(["node", "install.js"]).anomaly(AnomalyKind.TARGETS_CIWATCH, detail)
    finding = only(build.judge(), "tracer-evasion")
    assert finding.severity is Severity.HIGH and finding.evidence == (seq,)
    assert "reached into ciwatch's own processes: process_vm_writev" in finding.message


def test_a_hook_reading_a_sibling_s_memory_is_a_credential_read_not_an_evasion(build: Build) -> None:
    build.hook().spawn(["node", "install.js"]).read("/proc/4242/mem", ReadHow.PROCESS_VM_READV)
    verdict = build.judge()
    assert found(verdict, "tracer-evasion") == []
    assert only(verdict, "credential-read").severity is Severity.HIGH


def test_an_ordinary_build_is_no_evasion(build: Build) -> None:
    build.root.spawn(["make", "all"]).read("/proc/self/mem", ReadHow.PROCESS_VM_READV)
    assert found(build.judge(), "tracer-evasion") == []
