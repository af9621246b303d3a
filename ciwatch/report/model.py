"""What a report says, whatever its format: the one model every renderer (terminal, JSON, and
later Markdown, HTML, SARIF...) reads, built from a record, its verdict and the options.

The verdict comes first: a report that lists hooks and hosts but not the findings that failed
the run misleads. Lists are complete here; a renderer caps them for a screen if it wants.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from ciwatch.analysis.network import hosts_by_hook
from ciwatch.analysis.tree import ProcessNode, ProcessTree
from ciwatch.errors import UsageError
from ciwatch.facts.programs import package_manager_name
from ciwatch.net.address import is_loopback
from ciwatch.record.events import Anomaly, Leftover, NetConnect, ProxyReady
from ciwatch.record.reader import Record
from ciwatch.report.executables import Executables, executables_written
from ciwatch.rules import Finding
from ciwatch.verdict import VERDICT_FILE, Verdict

#: The job identifiers worth a place in the report's heading (the record keeps them all).
_JOB_KEYS = ("GITHUB_REPOSITORY", "GITHUB_RUN_ID", "GITHUB_JOB", "CI_PROJECT_PATH", "CI_JOB_ID", "user", "host")


@dataclass(frozen=True)
class ReportOptions:
    hook: str | None = None
    """Focus on one package (``name`` or ``name@version``): its findings, hooks, files, hosts."""


@dataclass(frozen=True)
class RunInfo:
    """Which run it was, and how it ended."""

    command: list[str]
    job: dict[str, str]
    """The job's provider and identifiers (repository, run id, job, user, host)."""
    cwd: str
    started_at: str
    net_mode: str
    finished: bool
    """False when the record has no end: ciwatch was killed before the run finished."""
    exit_code: int | None = None
    build_exit_code: int | None = None
    build_signal: int | None = None
    duration_s: float | None = None
    clean: bool = True
    error: str | None = None


@dataclass(frozen=True)
class FindingItem:
    rule: str
    severity: str
    package: str | None
    """``name@version`` of the hook's package, when it happened in a hook."""
    purl: str | None
    hook: str | None
    lineage: str
    message: str
    hint: str
    host: str | None
    evidence: list[int]
    excepted: str | None


@dataclass(frozen=True)
class FindingGroup:
    """Findings of one rule, package, hook and lineage (a hook that writes 13 git hooks makes
    13 findings that say one thing): a screen shows the group, a machine reads every finding."""

    first: FindingItem
    findings: list[FindingItem]


def group_findings(findings: list[FindingItem]) -> list[FindingGroup]:
    """In the order of each group's first finding (most severe first, as ``counted`` is)."""
    groups: dict[tuple[str, str, str | None, str | None, str], FindingGroup] = {}
    for finding in findings:
        key = (finding.severity, finding.rule, finding.package, finding.hook, finding.lineage)
        groups.setdefault(key, FindingGroup(finding, [])).findings.append(finding)
    return list(groups.values())


@dataclass(frozen=True)
class StoredVerdict:
    """What ``verdict.json`` beside the record says (the live run's verdict)."""

    verdict: str
    policy: str
    mode: str


@dataclass(frozen=True)
class VerdictInfo:
    verdict: str
    mode: str
    policy: str
    fail_on: str
    counted: list[FindingItem]
    """Findings that count toward the verdict, most severe first (those of ``--hook``'s package)."""
    excepted: list[FindingItem]
    """Findings a policy exception covers: shown, not counted."""
    counted_total: int
    """Counted findings of the whole run, whatever ``--hook`` selects."""
    refusals: int
    expired_exceptions: list[str]
    record_incomplete: str | None
    stored: StoredVerdict | None

    @property
    def stored_differs(self) -> bool:
        return self.stored is not None and self.stored.verdict != self.verdict


@dataclass(frozen=True)
class HookItem:
    ecosystem: str
    package: str
    version: str
    hook: str
    label: str
    spawned: list[str]
    """The distinct commands its processes ran, in order."""


@dataclass(frozen=True)
class HostItem:
    host: str
    kinds: list[str]
    count: int
    processes: list[str]
    local: bool = False
    """A loopback service (a local mirror or cache), not egress."""


@dataclass(frozen=True)
class HostGroup:
    hook: str | None
    """The hook's label, None for the build outside hooks."""
    hosts: list[HostItem]


@dataclass(frozen=True)
class AnomalyItem:
    kind: str
    """The anomaly's kind, or ``leftover``."""
    detail: str
    lineage: str


@dataclass(frozen=True)
class Report:
    run: RunInfo
    verdict: VerdictInfo
    hook_filter: str | None
    package_managers: list[str]
    hooks: list[HookItem]
    executables: Executables
    network: list[HostGroup]
    anomalies: list[AnomalyItem]
    integrity: list[str] = field(default_factory=list)
    """What the record's hashes say, one sentence each (empty: as ciwatch wrote it)."""


def build_report(
    record: Record,
    verdict: Verdict,
    options: ReportOptions = ReportOptions(),
    *,
    stored: StoredVerdict | None = None,
    integrity: list[str] | None = None,
) -> Report:
    tree = ProcessTree(record)
    selected = _HookSelection(tree, options.hook)
    return Report(
        run=_run_info(record),
        verdict=_verdict_info(verdict, selected, stored),
        hook_filter=options.hook,
        package_managers=sorted(
            {name for node in tree.nodes if node.execs and (name := package_manager_name(node.argv))}
        ),
        hooks=_hooks(tree, selected),
        executables=executables_written(record, tree, selected.keeps_node),
        network=_network(record, tree, selected),
        anomalies=_anomalies(record, tree, selected),
        integrity=list(integrity or []),
    )


def read_stored_verdict(record_path: Path) -> StoredVerdict | None:
    """``verdict.json`` beside the record, or None when there is none (or it can't be read:
    the report is about the record, and says its own verdict)."""
    directory = record_path if record_path.is_dir() else record_path.parent
    try:
        data = json.loads((directory / VERDICT_FILE).read_text())
        return StoredVerdict(str(data["verdict"]), str(data.get("policy", "?")), str(data.get("mode", "?")))
    except (OSError, ValueError, KeyError, TypeError):
        return None


class _HookSelection:
    """Which hooks ``--hook PKG`` keeps: every hook when no package was named."""

    def __init__(self, tree: ProcessTree, package: str | None) -> None:
        self.package = package
        self.labels = {h.label for h in tree.hooks if package is None or package in (h.package, h.package_ref)}
        if package is not None and not self.labels:
            ran = sorted({h.package_ref for h in tree.hooks})
            raise UsageError(
                f"--hook {package}: no hook of that package ran",
                hint=f"packages whose hooks ran: {', '.join(ran)}" if ran else "no lifecycle hook ran in this build",
            )

    def keeps_node(self, node: ProcessNode | None) -> bool:
        if self.package is None:
            return True
        return node is not None and node.hook is not None and node.hook.label in self.labels

    def keeps_label(self, label: str | None) -> bool:
        return self.package is None or label in self.labels

    def keeps_finding(self, finding: Finding) -> bool:
        return self.package is None or self.package in (finding.package_name, finding.package)


def _run_info(record: Record) -> RunInfo:
    header, end = record.header, record.end
    job = {"provider": header.job_context.get("provider", "?")}
    job.update({key: value for key, value in header.job_context.items() if key in _JOB_KEYS})
    common = {
        "command": list(header.command),
        "job": job,
        "cwd": header.cwd,
        "started_at": header.started_at,
        "net_mode": str(header.net_mode),
    }
    if end is None:
        return RunInfo(**common, finished=False)  # type: ignore[arg-type]
    return RunInfo(
        **common,  # type: ignore[arg-type]
        finished=True,
        exit_code=end.exit_code,
        build_exit_code=end.build_exit_code,
        build_signal=end.build_signal,
        duration_s=end.duration_s,
        clean=end.clean,
        error=end.error,
    )


def _finding_item(finding: Finding) -> FindingItem:
    return FindingItem(
        rule=finding.rule,
        severity=finding.severity.label,
        package=finding.package,
        purl=finding.purl,
        hook=finding.hook,
        # One line: a lineage names commands, and a command can hold a newline.
        lineage=" ".join(finding.lineage.split()),
        message=" ".join(finding.message.split()),
        hint=finding.hint,
        host=finding.host,
        evidence=list(finding.evidence),
        excepted=finding.excepted,
    )


def _verdict_info(verdict: Verdict, selected: _HookSelection, stored: StoredVerdict | None) -> VerdictInfo:
    ordered = sorted(verdict.findings, key=lambda f: (-f.severity, f.rule, f.evidence))
    kept = [f for f in ordered if selected.keeps_finding(f)]
    return VerdictInfo(
        verdict=str(verdict.verdict),
        mode=str(verdict.mode),
        policy=verdict.policy_source,
        fail_on=verdict.fail_on.label,
        counted=[_finding_item(f) for f in kept if f.excepted is None],
        excepted=[_finding_item(f) for f in kept if f.excepted is not None],
        counted_total=len(verdict.counted),
        refusals=verdict.refusals,
        expired_exceptions=[f"{e.rule} at {e.source} (expired {e.expires})" for e in verdict.expired_exceptions],
        record_incomplete=verdict.record_incomplete,
        stored=stored,
    )


def _hooks(tree: ProcessTree, selected: _HookSelection) -> list[HookItem]:
    spawned: dict[int, list[str]] = defaultdict(list)
    for node in tree.nodes:
        if node.hook is None or node.starts_hook or not node.execs:
            continue
        seen = spawned[node.hook.pid]
        if node.name not in seen:
            seen.append(node.name)
    return [
        HookItem(str(h.ecosystem), h.package, h.version, h.hook, h.label, spawned.get(h.pid, []))
        for h in tree.hooks
        if selected.keeps_label(h.label)
    ]


def _network(record: Record, tree: ProcessTree, selected: _HookSelection) -> list[HostGroup]:
    """Hosts per hook: what each hook (and the build outside hooks) reached."""
    remote = hosts_by_hook(tree)
    local = _local_services(record, tree)
    groups = []
    for label in sorted(remote.keys() | local.keys(), key=lambda label: (label is None, label or "")):
        if not selected.keeps_label(label):
            continue
        hosts = [
            HostItem(h.host, sorted(str(kind) for kind in h.kinds), h.count, sorted(h.processes))
            for h in remote.get(label, [])
        ]
        hosts += [
            HostItem(endpoint, ["local"], len(names), sorted(set(names)), local=True)
            for endpoint, names in local.get(label, {}).items()
        ]
        groups.append(HostGroup(label, hosts))
    return groups


def _local_services(record: Record, tree: ProcessTree) -> dict[str | None, dict[str, list[str]]]:
    """Hook label -> loopback ``address:port`` -> the processes that connected to it.

    Loopback is not egress (``contacts`` leaves it out), but a local registry mirror, cache or
    forward proxy is how many builds fetch everything: with ``--net off`` the hosts list would be
    empty. DNS to a local resolver is left out (its names are listed), and so is ciwatch's own
    proxy in ``env`` mode (its requests are listed by host)."""
    proxy = {listener for _, ready in record.events.of(ProxyReady) for listener in ready.listeners}
    found: dict[str | None, dict[str, list[str]]] = {}
    for seq, event in record.events.of(NetConnect):
        if event.port == 53 or f"{event.address}:{event.port}" in proxy:
            continue
        try:
            if not is_loopback(event.address):
                continue
        except ValueError:
            continue
        node = tree.node_at(seq)
        label = node.hook.label if node is not None and node.hook is not None else None
        endpoint = f"[{event.address}]:{event.port}" if ":" in event.address else f"{event.address}:{event.port}"
        found.setdefault(label, {}).setdefault(endpoint, []).append(node.name if node is not None else "?")
    return found


def _anomalies(record: Record, tree: ProcessTree, selected: _HookSelection) -> list[AnomalyItem]:
    found = []
    for seq, event in record.events.of(Anomaly, Leftover):
        node = tree.node_at(seq)
        if not selected.keeps_node(node):
            continue
        lineage = tree.lineage(node) if node is not None else "?"
        if isinstance(event, Anomaly):
            found.append(AnomalyItem(str(event.anomaly), event.detail, lineage))
        elif isinstance(event, Leftover):
            argv = " ".join(" ".join(event.argv).split())[:80]
            detail = f"still running after the build ({event.action}): pid {event.pid} {argv}"
            found.append(AnomalyItem("leftover", detail, lineage))
    return found


def _package_managers(tree: ProcessTree) -> list[str]:
    """Each package manager the build ran, once, as a person names it (not ``dpkg 15``)."""
    return sorted({name for node in tree.nodes if node.execs and (name := package_manager_name(node.argv))})
