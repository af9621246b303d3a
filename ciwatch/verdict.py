"""Evaluation: (record, policy) -> findings -> verdict. A pure function: ``ciwatch check``
gives a stored record the verdict the live run gave it."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import json
import os
from collections import Counter
from enum import StrEnum
from pathlib import Path
from typing import Any

from ciwatch.analysis.network import contacts
from ciwatch.analysis.tree import ProcessTree
from ciwatch.analysis.writes import hook_writes
from ciwatch.dataclass import dataclass
from ciwatch.gate.allowlist import RuntimeAllowlist
from ciwatch.policy.model import Exception_, Mode, Policy, Severity
from ciwatch.record.events import Refusal
from ciwatch.record.reader import Record
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
    record_incomplete: str | None = None
    """What the record's closing lines say could not be written (a full disk), or None: block
    mode then fails closed, whatever the findings."""
    hooks: int = 0
    """How many lifecycle hooks ran."""
    exit_code: int | None = None
    """The exit code ``ciwatch run`` ended with (None when judged offline by ``check``)."""
    exit_reason: str | None = None
    """Why that exit code: the build's own, or the verdict's (so CI can tell a policy failure
    from a build that failed with the same number)."""

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
            "record_complete": self.record_incomplete is None,
            "record_incomplete": self.record_incomplete,
            "hooks": self.hooks,
            "exit_code": self.exit_code,
            "exit_reason": self.exit_reason,
        }


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
    allowlist.observe_all(record.events.objects())  # (file writes teach it nothing)
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
    incomplete = _record_incomplete(record)
    if incomplete is not None and policy.mode is Mode.BLOCK:
        kind = VerdictKind.FAIL  # what could not be written can't be shown clean: fail closed
    elif any(f.severity >= policy.fail_on for f in counted):
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
        refusals=sum(1 for _ in record.events.of(Refusal)),
        final=not record.following_leftovers,
        record_incomplete=incomplete,
        hooks=len(tree.hooks),
    )


def _record_incomplete(record: Record) -> str | None:
    # lines_lost counts from the record's start: the last closing line's count is the total.
    lost = [c.lines_lost for c in (record.end, record.after_build_end) if c is not None and not c.record_complete]
    return f"{max(lost)} line(s) of the record could not be written (a full disk?)" if lost else None


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
    try:
        with os.fdopen(fd, "w") as file:
            file.write(json.dumps(verdict.to_json(), indent=2) + "\n")
        os.replace(partial, path)
    except OSError:
        partial.unlink(missing_ok=True)  # a full disk: leave no half-written verdict behind
        raise
    return path
