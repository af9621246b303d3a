"""The HTML report: one self-contained page (style and script inline, no asset, font or
network at view time) that a person opens instead of reading JSON.

The verdict comes first, then the findings, each with its lineage linked to the process tree
and its evidence events; the process tree (collapsible, the path to each finding open and
highlighted); the egress table, filterable by host, process, hook and allowed/refused; the
files written; the hooks; the job and the run's timing.

Everything a build chose (argv, paths, hosts, package names) is text: it goes through
``text()`` into element content or a quoted attribute, never into markup or script, so a
hostile package name can't add a tag or run code in the reader's browser.

The shared model (``model.py``) says what a report says; the tree, each contact and the
evidence events come from the record itself (``html_record.py``) when it is given.
"""

from __future__ import annotations

from ciwatch.analysis.tree import ProcessNode
from ciwatch.record.reader import Record
from ciwatch.report.html_assets import CSS, JS
from ciwatch.report.html_record import RecordView, lineage_nodes, node_id, read_view
from ciwatch.report.html_sections import anomalies, egress, files, hooks, plural, text
from ciwatch.report.model import FindingGroup, FindingItem, Report, group_findings

#: Findings shown as cards; the rest are rows of one table.
MAX_FINDING_CARDS = 50
#: Levels of the process tree indented; deeper ones are drawn at the same indent.
MAX_INDENT = 16
_TITLES = {
    "fail": "The build failed its policy",
    "warn": "The build passed, with warnings",
    "pass": "Nothing to report",
}


def render_html(report: Report, *, record: Record | None = None) -> str:
    """The page; without ``record`` (the model alone) it has no process tree or evidence."""
    view = read_view(report, record) if record is not None else None
    body = [
        _verdict(report),
        _nav(report, view),
        '<main class="wrap">',
        _findings(report, view),
        _tree(view),
        egress(report, view),
        files(report, view),
        hooks(report),
        anomalies(report),
        _run(report),
        "</main>",
        '<footer class="wrap">Made by <code>ciwatch report --format html</code> from the run\'s record. '
        "Everything here is in <code>record.jsonl</code>; <code>ciwatch report --json</code> has it for machines."
        "</footer>",
    ]
    title = f"ciwatch: {report.verdict.verdict} · {' '.join(report.run.command)}"
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        # Nothing is fetched: no script, style, image or frame from anywhere but this page.
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
        "style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:\">"
        f"<title>{text(title[:120])}</title><style>{CSS}</style></head><body>"
        + "\n".join(part for part in body if part)
        + f"<script>{JS}</script></body></html>\n"
    )


def _verdict(report: Report) -> str:
    run, verdict = report.run, report.verdict
    headline = f"{_TITLES.get(verdict.verdict, verdict.verdict)}: {plural(verdict.counted_total, 'finding')}"
    parts = [f"{verdict.mode} mode", f"fail on {verdict.fail_on}"]
    if verdict.refusals:
        parts.insert(0, f"refused live: {verdict.refusals}")
    if verdict.excepted:
        parts.append(f"{len(verdict.excepted)} excepted")
    parts.append(f"policy {verdict.policy}")
    notes = []
    if verdict.stored_differs and verdict.stored is not None:
        notes.append(f"The live run's verdict.json says {verdict.stored.verdict}.")
    if verdict.record_incomplete:
        notes.append(f"The record is incomplete: {verdict.record_incomplete}.")
    notes += report.integrity
    duration = f"{run.duration_s:.1f} s" if run.duration_s is not None else "not finished"
    when = [duration, f"started {run.started_at.replace('T', ' ')}", _job(report)]
    return (
        f'<header class="verdict v-{text(verdict.verdict)}"><div class="wrap">'
        f'<div class="row"><span class="pill">{text(verdict.verdict.upper())}</span>'
        f'<div class="head"><h1>{text(headline)}</h1><div class="sub">{text(" · ".join(parts))}</div></div></div>'
        + "".join(f'<p class="note">{text(n)}</p>' for n in notes)
        + f'<p class="cmd"><code>{text(" ".join(run.command))}</code>'
        f'<span class="muted"> · {text(" · ".join(when))}</span></p></div></header>'
    )


def _job(report: Report) -> str:
    job = report.run.job
    return job.get("provider", "?") + "".join(f" {k}={v}" for k, v in job.items() if k != "provider")


def _run(report: Report) -> str:
    run = report.run
    if not run.finished:
        ended = "not finished (ciwatch was stopped)"
    elif run.build_signal:
        ended = f"killed by signal {run.build_signal}"
    else:
        ended = f"build exit {run.build_exit_code}, ciwatch exit {run.exit_code}"
    facts = [
        ("Command", f"<code>{text(' '.join(run.command))}</code>"),
        ("Job", text(_job(report))),
        ("Started", text(run.started_at)),
        ("Duration", text(f"{run.duration_s:.2f} s") if run.duration_s is not None else "—"),
        ("Ended", text(ended + ("" if run.clean else " (not clean)"))),
        ("Network", text(f"--net {run.net_mode}")),
        ("Directory", f"<code>{text(run.cwd)}</code>"),
        ("Package managers", text(", ".join(report.package_managers) or "none")),
        ("Policy", text(f"{report.verdict.policy} ({report.verdict.mode} mode, fail on {report.verdict.fail_on})")),
    ]
    items = "".join(f"<div><dt>{name}</dt><dd>{value}</dd></div>" for name, value in facts)
    return f'<section id="run"><h2>Run</h2><dl class="card facts">{items}</dl></section>'


def _nav(report: Report, view: RecordView | None) -> str:
    links = [
        ("findings", "Findings", report.verdict.counted_total),
        ("processes", "Processes", len(view.tree.nodes) if view else None),
        ("egress", "Egress", len(view.egress) if view else sum(len(g.hosts) for g in report.network)),
        ("files", "Executables", len(report.executables.files)),
        ("hooks", "Hooks", len(report.hooks)),
        ("anomalies", "Anomalies", len(report.anomalies)),
        ("run", "Run", None),
    ]
    shown = [(anchor, name, n) for anchor, name, n in links if anchor != "processes" or view]
    items = "".join(
        f'<a href="#{a}">{name}{"" if n is None else f" <span class=n>{n}</span>"}</a>' for a, name, n in shown
    )
    return f'<nav><div class="wrap">{items}</div></nav>'


# ------------------------------------------------------------------------------ findings


def _findings(report: Report, view: RecordView | None) -> str:
    verdict = report.verdict
    groups = group_findings(verdict.counted)
    index = {id(f): i for i, f in enumerate(verdict.counted)}
    refused = {row.host.lower() for row in view.egress if row.status == "refused"} if view else set()
    hinted: set[str] = set()
    cards = []
    for group in groups[:MAX_FINDING_CARDS]:
        # A rule's hint once: the same advice under each of 500 hooks' findings is noise.
        hint = group.first.hint if group.first.rule not in hinted else ""
        hinted.add(group.first.rule)
        cards.append(_finding_card(group, index[id(group.first)], view, refused, hint))
    if not cards:
        cards = ['<p class="empty">No counted findings.</p>']
    rest = _more_findings(groups[MAX_FINDING_CARDS:], index, view)
    excepted = ""
    if verdict.excepted:
        items = "".join(
            f"<li><code>{text(f.rule)}</code> {text(f.package or '')}: {text(f.message)} "
            f'<span class="muted">(excepted: {text(f.excepted)})</span></li>'
            for f in verdict.excepted
        )
        summary = f"<summary>Excepted by the policy ({len(verdict.excepted)})</summary>"
        excepted = f"<details class=card>{summary}<ul>{items}</ul></details>"
    heading = f'<h2>Findings <span class="n">{len(verdict.counted)}</span></h2>'
    return f'<section id="findings">{heading}{"".join(cards)}{rest}{excepted}</section>'


def _more_findings(groups: list[FindingGroup], index: dict[int, int], view: RecordView | None) -> str:
    """Past the first cards, one row a finding group: a build with 500 misbehaving hooks."""
    if not groups:
        return ""
    rows = []
    for group in groups:
        first = group.first
        at = index[id(first)]
        node = view.finding_nodes.get(at) if view else None
        process = f'<a href="#{node_id(node)}">{text(node.name)}</a>' if node is not None else text(first.lineage)
        rows.append(
            f'<tr id="f{at}"><td><span class="sev {text(first.severity)}">{text(first.severity)}</span></td>'
            f"<td><code>{text(first.rule)}</code></td><td>{text(first.package or '')}</td>"
            f'<td class="wrapit">{text(first.message)}</td><td>{process}</td></tr>'
        )
    return (
        f'<details class="card"><summary>{len(groups)} more (one a row)</summary><div class="scroll"><table>'
        "<thead><tr><th>severity</th><th>rule</th><th>package</th><th>what</th><th>process</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table></div></details>"
    )


def _finding_card(group: FindingGroup, index: int, view: RecordView | None, refused: set[str], hint: str) -> str:
    first = group.first
    where = " · ".join(text(part) for part in (first.package, first.hook) if part)
    more = f' <span class="badge">{len(group.findings)}&times;</span>' if len(group.findings) > 1 else ""
    host = ""
    if first.host:
        status = "refused" if first.host.lower() in refused else "flagged"
        host = f'<p class="msg">Host <code>{text(first.host)}</code> <span class="badge {status}">{status}</span></p>'
    evidence = sorted({seq for f in group.findings for seq in f.evidence})
    return (
        f'<article class="card finding sev-{text(first.severity)}" id="f{index}">'
        f'<div class="top"><span class="sev {text(first.severity)}">{text(first.severity)}</span>'
        f"<code>{text(first.rule)}</code>{more}"
        f'<span class="pkg">{where}</span></div>'
        f'<p class="msg">{text(first.message)}</p>'
        f"{_lineage(first, index, view)}{host}{_evidence(evidence, view)}"
        + (f'<p class="hint">{text(hint)}</p>' if hint else "")
        + "</article>"
    )


def _lineage(finding: FindingItem, index: int, view: RecordView | None) -> str:
    node = view.finding_nodes.get(index) if view else None
    if view is None or node is None:
        steps = "".join(f"<li><a>{text(step)}</a></li>" for step in finding.lineage.split(" > "))
    else:
        steps = "".join(
            f'<li class="{"hookstep" if step.starts_hook else ""}"><a href="#{node_id(step)}">{text(label)}</a></li>'
            for label, step in lineage_nodes(view.tree, node)
        )
    return f'<ol class="lineage" aria-label="lineage">{steps}</ol>'


def _evidence(seqs: list[int], view: RecordView | None) -> str:
    if not seqs:
        return ""
    if view is None:
        return f'<p class="muted">Evidence: record lines {text(", ".join(map(str, seqs[:50])))}</p>'
    rows = []
    for seq in seqs[:200]:
        row = view.evidence.get(seq)
        if row is None:
            continue
        process = f'<a href="#{row.node}">{text(row.lineage.rsplit(" > ", 1)[-1])}</a>' if row.node else "?"
        rows.append(
            f"<tr><td>{row.seq}</td><td>{text(row.kind)}</td>"
            f"<td class=wrapit>{text(row.summary)}</td><td>{process}</td></tr>"
        )
    return (
        f"<details><summary>Evidence: {plural(len(seqs), 'event')} of the record</summary>"
        '<div class="scroll"><table><thead><tr><th>line</th><th>event</th><th>what</th><th>process</th></tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table></div></details>"
    )


# ------------------------------------------------------------------------------ process tree


def _tree(view: RecordView | None) -> str:
    if view is None:
        return ""
    out: list[str] = []
    # Iterative: a build's tree can be deeper than Python's recursion limit. (node, depth), or
    # None where a node's children end.
    stack: list[tuple[ProcessNode, int] | None] = [(root, 0) for root in reversed(view.tree.roots)]
    while stack:
        entry = stack.pop()
        if entry is None:
            out.append("</div></details>")
            continue
        node, depth = entry
        line = _node_line(node, view)
        hit = " hit" if id(node) in view.flagged else ""
        if not node.children:
            out.append(f'<div class="leaf{hit}" id="{node_id(node)}">{line}</div>')
            continue
        opened = " open" if id(node) in view.on_path or node.parent is None else ""
        # Past a screen's worth of levels, children stop moving right (a chain of 1,000 shells).
        kids = "kids" if depth < MAX_INDENT else "kids flat"
        out.append(
            f'<details class="proc{hit}" id="{node_id(node)}"{opened}><summary>{line}</summary><div class="{kids}">'
        )
        stack.append(None)
        stack.extend((child, depth + 1) for child in reversed(node.children))
    buttons = (
        '<button class="btn" data-tree="open">Expand all</button> '
        '<button class="btn" data-tree="close">Collapse all</button>'
    )
    return (
        f'<section id="processes"><h2>Process tree <span class="n">{len(view.tree.nodes)}</span></h2>'
        f'<div class="card"><p class="muted" style="margin-top:0">{buttons} '
        "The path to each finding is open; its processes are marked.</p>"
        f'<div class="tree">{"".join(out) or "<p class=empty>No process was recorded.</p>"}</div></div></section>'
    )


def _node_line(node: ProcessNode, view: RecordView) -> str:
    parts = [f'<span class="pid">{node.pid}</span>', f'<span class="name">{text(node.name)}</span>']
    if node.starts_hook and node.hook is not None:
        parts.append(f'<span class="badge hook">{text(node.hook.label)}</span>')
    findings = view.flagged.get(id(node), [])
    if findings:
        parts.append(f'<a class="badge hit" href="#f{findings[0]}">{plural(len(findings), "finding")}</a>')
    if node.exit is not None and (node.exit.exit_code or node.exit.signal):
        ended = f"signal {node.exit.signal}" if node.exit.signal else f"exit {node.exit.exit_code}"
        parts.append(f'<span class="badge">{text(ended)}</span>')
    argv = " ".join(node.argv)
    if argv and argv != node.name:
        parts.append(f'<span class="argv">{text(argv[:300])}{"…" if len(argv) > 300 else ""}</span>')
    return " ".join(parts)
