"""What the HTML report reads from the record itself, beyond the shared model (``model.py``):
the process tree with pids and children, each outbound contact with whether block mode refused
it, the events a finding cites as evidence, and the files the hooks wrote.

Plain data, built in one pass over each kind of event, so that the page of a 2,000-process
build is made in well under a second; the renderer (``html.py``) only formats it.
"""

from __future__ import annotations

import dataclasses

from ciwatch.analysis.network import Contact, contacts
from ciwatch.analysis.tree import ProcessNode, ProcessTree
from ciwatch.dataclass import dataclass, field
from ciwatch.record.events import (
    DnsAnswer,
    DnsQuery,
    EgressFlow,
    Event,
    FileWrite,
    NetConnect,
    NetSend,
    ProcessExec,
    ProcessStart,
    Refusal,
)
from ciwatch.record.reader import Record
from ciwatch.report.model import Report

#: Files written by hooks listed one by one; past it, counted (a hook that unpacks a toolchain).
MAX_HOOK_FILES = 500


def node_id(node: ProcessNode) -> str:
    """An anchor unique in the record: a pid can be reused, its start line can't."""
    return f"p{node.pid}-{node.start_seq}"


@dataclass(frozen=True)
class EgressRow:
    seq: int
    kind: str
    host: str
    port: int | None
    process: str
    """The process's short name (``curl -s``)."""
    node: str | None
    """The process's anchor in the tree."""
    hook: str | None
    status: str
    """``refused`` (block mode refused it live), ``flagged`` (a finding names it), ``allowed``."""
    detail: str


@dataclass(frozen=True)
class EvidenceRow:
    seq: int
    kind: str
    summary: str
    node: str | None
    lineage: str


@dataclass(frozen=True)
class FileRow:
    seq: int
    op: str
    path: str
    hook: str
    node: str


@dataclass
class RecordView:
    tree: ProcessTree
    flagged: dict[int, list[int]] = field(default_factory=dict)
    """id() of a process node -> the indexes (in ``report.verdict.counted``) of its findings."""
    on_path: set[int] = field(default_factory=set)
    """id() of the nodes with a finding and of their ancestors: open when the page loads."""
    finding_nodes: dict[int, ProcessNode] = field(default_factory=dict)
    """Index of a counted finding -> the process its first evidence event came from."""
    egress: list[EgressRow] = field(default_factory=list)
    evidence: dict[int, EvidenceRow] = field(default_factory=dict)
    hook_files: list[FileRow] = field(default_factory=list)
    hook_files_total: int = 0
    files_total: int = 0


def read_view(report: Report, record: Record) -> RecordView:
    tree = ProcessTree(record)
    view = RecordView(tree)
    _mark_findings(view, report)
    view.egress = _egress(tree, record, report)
    view.evidence = _evidence(tree, record, report)
    _hook_files(view, record)
    return view


def lineage_nodes(tree: ProcessTree, node: ProcessNode) -> list[tuple[str, ProcessNode]]:
    """The lineage as ``ProcessTree.lineage`` writes it, one (label, node) a step, so each step
    can link to its process in the tree."""
    steps: list[tuple[str, ProcessNode]] = []
    for step in [*node.ancestors(), node]:
        if step.starts_hook and step.hook is not None:
            label = step.hook.label
        elif step.execs or step.parent is None:
            label = step.name
        else:
            continue
        if not steps or steps[-1][0] != label:
            steps.append((label, step))
    return steps


def _mark_findings(view: RecordView, report: Report) -> None:
    for index, finding in enumerate(report.verdict.counted):
        node = next((n for seq in finding.evidence if (n := view.tree.node_at(seq)) is not None), None)
        if node is None:
            continue
        view.finding_nodes[index] = node
        view.flagged.setdefault(id(node), []).append(index)
        view.on_path.update(id(step) for step in [*node.ancestors(), node])


def _refused_targets(record: Record) -> set[tuple[int | None, str]]:
    return {(event.pid, event.target.lower().rstrip(".")) for _, event in record.events.of(Refusal)}


def _egress(tree: ProcessTree, record: Record, report: Report) -> list[EgressRow]:
    refused = _refused_targets(record)
    flagged_hosts = {f.host.lower() for f in report.verdict.counted if f.host}
    flagged_seqs = {seq for f in report.verdict.counted for seq in f.evidence}
    rows = []
    for contact in contacts(tree):
        rows.append(_egress_row(contact, refused, flagged_hosts, flagged_seqs))
    return rows


def _egress_row(
    contact: Contact, refused: set[tuple[int | None, str]], flagged_hosts: set[str], flagged_seqs: set[int]
) -> EgressRow:
    node, event, host = contact.node, contact.event, contact.host.lower().rstrip(".")
    pid = node.pid if node is not None else None
    targets = {host, f"{host}:{contact.port}", f"[{host}]:{contact.port}"}
    if (isinstance(event, EgressFlow) and event.refused) or any((pid, target) in refused for target in targets):
        status = "refused"
    elif host in flagged_hosts or contact.seq in flagged_seqs:
        status = "flagged"
    else:
        status = "allowed"
    return EgressRow(
        seq=contact.seq,
        kind=str(contact.kind),
        host=contact.host,
        port=contact.port,
        process=node.name if node is not None else "?",
        node=node_id(node) if node is not None else None,
        hook=contact.hook_label,
        status=status,
        detail=_contact_detail(event),
    )


def _contact_detail(event: Event) -> str:
    if isinstance(event, EgressFlow):
        what = " ".join(str(part) for part in (event.method, event.url or event.host) if part)
        return f"{what} → {event.status}" if event.status is not None else f"{what} ({event.error or 'no answer'})"
    if isinstance(event, DnsQuery):
        return f"DNS {event.qtype} query"
    if isinstance(event, DnsAnswer):
        return f"DNS {event.qtype} {event.rcode} {' '.join(event.answers)}".rstrip()
    if isinstance(event, NetConnect | NetSend):
        return f"{event.protocol} to {event.address}:{event.port}"
    return str(event.kind)


def _evidence(tree: ProcessTree, record: Record, report: Report) -> dict[int, EvidenceRow]:
    wanted = {seq for finding in report.verdict.counted for seq in finding.evidence}
    rows = {}
    for item in record.events:
        if item.seq not in wanted:
            continue
        node = tree.node_at(item.seq)
        rows[item.seq] = EvidenceRow(
            seq=item.seq,
            kind=str(item.event.kind),
            summary=_event_summary(item.event),
            node=node_id(node) if node is not None else None,
            lineage=tree.lineage(node) if node is not None else "?",
        )
    return rows


def _event_summary(event: Event) -> str:
    if isinstance(event, ProcessExec):
        return " ".join(event.argv)
    if isinstance(event, ProcessStart):
        return f"pid {event.pid} started by {event.ppid}"
    if isinstance(event, FileWrite):
        return f"{event.op} {event.path}" + (f" → {event.target}" if event.target else "")
    if isinstance(event, Refusal):
        return f"refused {event.what} {event.target}: {event.reason}"
    if isinstance(event, EgressFlow | DnsQuery | DnsAnswer | NetConnect | NetSend):
        host = getattr(event, "host", None) or getattr(event, "name", "")
        return f"{host} {_contact_detail(event)}".strip()
    # Events are slotted dataclasses: their fields, not __dict__ (the environment left out).
    shown = {field.name: getattr(event, field.name) for field in dataclasses.fields(event) if field.name != "env"}
    return " ".join(f"{k}={v}" for k, v in shown.items())[:300]


def _hook_files(view: RecordView, record: Record) -> None:
    """Files written inside hooks: what a package's own code put on the machine (the package
    manager's unpacking of node_modules is counted, not listed)."""
    for seq, op, path, target in record.events.written_paths():
        view.files_total += 1
        node = view.tree.node_at(seq)
        if node is None or node.hook is None:
            continue
        view.hook_files_total += 1
        if len(view.hook_files) < MAX_HOOK_FILES:
            shown = f"{path} → {target}" if target else path
            view.hook_files.append(FileRow(seq, str(op), shown, node.hook.label, node_id(node)))
