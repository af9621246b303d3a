"""What every rule shares: its metadata, the findings it makes, and what it may look at."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Protocol

from ciwatch.analysis.network import Contact
from ciwatch.analysis.tree import ProcessNode, ProcessTree
from ciwatch.dataclass import dataclass, field
from ciwatch.facts.ecosystems import purl
from ciwatch.gate.allowlist import RuntimeAllowlist
from ciwatch.policy.model import Policy, Severity
from ciwatch.record.reader import Record

DOCS = "docs/rules.md"


@dataclass(frozen=True)
class RuleInfo:
    id: str
    """Stable, kebab-case: the contract users write in policies and exceptions."""
    summary: str
    default_severity: Severity
    hint: str
    """What to do about a finding: fix it, or how to except it."""

    @property
    def doc_anchor(self) -> str:
        return f"{DOCS}#{self.id}"


@dataclass(frozen=True)
class Finding:
    rule: str
    severity: Severity
    message: str
    lineage: str
    """``npm ci > postinstall of pkg@1.2.3 > sh > curl``."""
    evidence: tuple[int, ...]
    """Sequence numbers of the record events that show it."""
    hint: str
    package: str | None = None
    """``name@version`` of the hook's package, when it happened in a hook."""
    package_name: str | None = None
    package_version: str | None = None
    ecosystem: str | None = None
    purl: str | None = None
    """The package's Package URL (``pkg:npm/esbuild@0.24.2``), when the ecosystem is known."""
    hook: str | None = None
    host: str | None = None
    excepted: str | None = None
    """Set (to the exception's reason and place) when a documented exception covers it: such
    a finding is reported but doesn't count toward the verdict."""

    def to_json(self) -> dict[str, object]:
        return {
            "rule": self.rule,
            "severity": self.severity.label,
            "message": self.message,
            "lineage": self.lineage,
            "evidence": list(self.evidence),
            "hint": self.hint,
            "package": self.package,
            "ecosystem": self.ecosystem,
            "purl": self.purl,
            "hook": self.hook,
            "host": self.host,
            "excepted": self.excepted,
            "doc": f"{DOCS}#{self.rule}",
        }


@dataclass
class RuleContext:
    record: Record
    tree: ProcessTree
    contacts: list[Contact]
    allowlist: RuntimeAllowlist
    policy: Policy
    written_by_hooks: Mapping[str, list[tuple[int, ProcessNode]]] = field(default_factory=dict)
    """Path -> (seq, writer) for files written by processes inside hooks, in order
    (``ciwatch.analysis.writes.HookWrites``)."""

    def severity(self, info: RuleInfo) -> Severity:
        """The rule's severity under this policy (``off`` disables it)."""
        return self.policy.severity(info.id, info.default_severity)

    def finding(
        self,
        info: RuleInfo,
        message: str,
        node: ProcessNode | None,
        evidence: Iterable[int],
        *,
        severity: Severity | None = None,
        host: str | None = None,
    ) -> Finding:
        hook = node.hook if node is not None else None
        return Finding(
            rule=info.id,
            severity=severity if severity is not None else self.severity(info),
            message=message,
            lineage=self.tree.lineage(node) if node is not None else "?",
            evidence=tuple(sorted(set(evidence))),
            hint=info.hint,
            package=hook.package_ref if hook else None,
            package_name=hook.package if hook else None,
            package_version=hook.version if hook else None,
            ecosystem=hook.ecosystem if hook else None,
            purl=purl(hook.ecosystem, hook.package, hook.version) if hook else None,
            hook=hook.hook if hook else None,
            host=host,
        )


class Rule(Protocol):
    info: RuleInfo

    def check(self, context: RuleContext) -> Iterable[Finding]: ...
