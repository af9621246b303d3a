"""Evaluation: (record, policy) -> findings -> verdict. A pure function: ``ciwatch check``
gives a stored record the verdict the live run gave it."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import json
import os
from collections import Counter
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from ciwatch.analysis.network import contacts
from ciwatch.analysis.tree import ProcessNode, ProcessTree
from ciwatch.gate.allowlist import RuntimeAllowlist
from ciwatch.policy.model import Exception_, Mode, Policy, Severity
from ciwatch.record.events import FileWrite, Refusal
from ciwatch.record.reader import Record
from ciwatch.record.vocabulary import FileOp
from ciwatch.rules import ALL_RULES, RULE_CATALOGUE, Finding, RuleContext
from ciwatch.rules.refused import with_refusals

VERDICT_FILE = "verdict.json"

__all__ = ["RULE_CATALOGUE", "VERDICT_FILE", "Verdict", "VerdictKind", "evaluate", "hook_writes", "write_verdict"]


class VerdictKind(StrEnum):
    PASS = "pass"
    WARN = "warn"
    FAIL = "fail"


@dataclass(frozen=True)
class Verdict:
    verdict: VerdictKind
    mode: Mode
    policy_source: str
    fail_on: Severity
    findings: tuple[Finding, ...]
    """Every finding, those covered by an exception included (marked ``excepted``)."""
    expired_exceptions: tuple[Exception_, ...]
    refusals: int
    final: bool = True
    """False while processes left running are still followed (the record's second segment is
    open): ``verdict.json`` is replaced when they have exited."""

    @property
    def counted(self) -> list[Finding]:
        return [f for f in self.findings if f.excepted is None]

    @property
    def counts(self) -> dict[str, int]:
        return dict(Counter(f.rule for f in self.counted))

    def to_json(self) -> dict[str, Any]:
        return {
            "verdict": str(self.verdict),
            "mode": str(self.mode),
            "policy": self.policy_source,
            "fail_on": self.fail_on.label,
            "counts": self.counts,
            "findings": [f.to_json() for f in self.findings],
            "expired_exceptions": [
                {"rule": e.rule, "reason": e.reason, "expires": str(e.expires), "source": e.source}
                for e in self.expired_exceptions
            ],
            "refusals": self.refusals,
            "final": self.final,
        }


def hook_writes(record: Record, tree: ProcessTree) -> dict[str, list[tuple[int, ProcessNode]]]:
    """Files that processes inside hooks created or changed (rename and link targets too)."""
    written: dict[str, list[tuple[int, ProcessNode]]] = {}
    for item in record.events:
        event = item.event
        if not isinstance(event, FileWrite) or event.op is FileOp.UNLINK:
            continue
        node = tree.node_at(item.seq)
        if node is None or node.hook is None:
            continue
        path = event.target if event.op in (FileOp.RENAME, FileOp.LINK) and event.target else event.path
        written.setdefault(path, []).append((item.seq, node))
    return written


def _covering_exception(finding: Finding, policy: Policy, today: datetime.date) -> Exception_ | None:
    for exception in policy.exceptions:
        if exception.rule != finding.rule or exception.expired(today):
            continue
        package, name = exception.package, finding.package_name
        if (
            package is not None
            and name is not None
            and package.matches(finding.ecosystem or "", name, finding.package_version or "")
        ):
            return exception
        if exception.host is not None and finding.host is not None and exception.host.matches(finding.host):
            return exception
    return None


def evaluate(record: Record, policy: Policy, today: datetime.date | None = None) -> Verdict:
    today = today or datetime.date.today()
    tree = ProcessTree(record)
    allowlist = RuntimeAllowlist(policy)
    allowlist.observe_all(item.event for item in record.events)
    context = RuleContext(
        record=record,
        tree=tree,
        contacts=contacts(tree),
        allowlist=allowlist,
        policy=policy,
        written_by_hooks=hook_writes(record, tree),
    )
    found: list[Finding] = []
    for rule in ALL_RULES:
        if context.severity(rule.info) is Severity.OFF:
            continue
        found.extend(finding for finding in rule.check(context) if finding.severity is not Severity.OFF)
    findings: list[Finding] = []
    # What block mode refused is a finding too (so a refusal alone fails the verdict).
    for finding in with_refusals(context, found):
        exception = _covering_exception(finding, policy, today)
        if exception is not None:
            finding = dataclasses.replace(finding, excepted=f"{exception.reason} ({exception.source})")
        findings.append(finding)
    counted = [f for f in findings if f.excepted is None]
    if any(f.severity >= policy.fail_on for f in counted):
        kind = VerdictKind.FAIL
    elif counted:
        kind = VerdictKind.WARN
    else:
        kind = VerdictKind.PASS
    return Verdict(
        verdict=kind,
        mode=policy.mode,
        policy_source=policy.source,
        fail_on=policy.fail_on,
        findings=tuple(findings),
        expired_exceptions=tuple(e for e in policy.exceptions if e.expired(today)),
        refusals=sum(1 for item in record.events if isinstance(item.event, Refusal)),
        final=not record.following_leftovers,
    )


def write_verdict(verdict: Verdict, out_dir: Path) -> Path:
    """Write ``verdict.json`` atomically: it is replaced once processes left running have
    exited, and a reader must never see half of either."""
    path = out_dir / VERDICT_FILE
    partial = out_dir / f".{VERDICT_FILE}.{os.getpid()}"
    with contextlib.suppress(FileNotFoundError):
        partial.unlink()  # a stale one of a killed run with this pid: never written through
    # Created afresh, never through a link someone left in --out; the rename replaces a link
    # at verdict.json itself rather than following it.
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    with os.fdopen(fd, "w") as file:
        file.write(json.dumps(verdict.to_json(), indent=2) + "\n")
    os.replace(partial, path)
    return path
