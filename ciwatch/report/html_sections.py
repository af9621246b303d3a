"""The HTML report's later sections (egress, files written, hooks, anomalies) and the one
function every part uses to put recorded text on the page (``text``)."""

from __future__ import annotations

import html
import re
from collections.abc import Iterable

from ciwatch.report.html_record import EgressRow, RecordView
from ciwatch.report.model import Report

#: Rows of the egress table; a longer build's are counted (the record and --json have them all).
MAX_EGRESS_ROWS = 5000
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def text(value: object) -> str:
    """Recorded text as inert HTML: entities for markup characters and quotes, control bytes as
    ``\\xNN``, bytes that weren't UTF-8 (lone surrogates) as ``\\udcXX``."""
    shown = _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", str(value))
    shown = shown.encode("utf-8", "backslashreplace").decode("utf-8")
    return html.escape(shown, quote=True)


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}" + ("" if count == 1 else "s")


# ------------------------------------------------------------------------------ egress


def egress(report: Report, view: RecordView | None) -> str:
    rows = view.egress if view is not None else _rows_from_model(report)
    if not rows:
        return '<section id="egress"><h2>Egress</h2><p class="empty card">The build reached no host.</p></section>'
    body = "".join(_egress_row(row) for row in rows[:MAX_EGRESS_ROWS])
    cut = (
        f'<p class="muted">{len(rows) - MAX_EGRESS_ROWS} more rows are in the record.</p>'
        if len(rows) > MAX_EGRESS_ROWS
        else ""
    )
    filters = (
        '<div class="filters"><input id="f-host" type="search" placeholder="Filter by host" aria-label="host">'
        f"{_select('f-process', 'every process', (r.process for r in rows))}"
        f"{_select('f-hook', 'every hook', (r.hook or '(outside hooks)' for r in rows))}"
        f"{_select('f-status', 'allowed and refused', (r.status for r in rows))}</div>"
    )
    return (
        f'<section id="egress"><h2>Egress <span class="n" id="egress-shown">{len(rows)}</span></h2><div class="card">'
        f'{filters}<div class="scroll"><table id="egress-table"><thead><tr><th>host</th><th>status</th><th>kind</th>'
        '<th>process</th><th class="hide-sm">hook</th><th class="hide-sm">what</th></tr></thead>'
        f"<tbody>{body}</tbody></table></div>{cut}</div></section>"
    )


def _select(element_id: str, everything: str, values: Iterable[str]) -> str:
    options = "".join(f'<option value="{text(v)}">{text(v)}</option>' for v in sorted(set(values)))
    return (
        f'<select id="{element_id}" aria-label="{everything}"><option value="">{everything}</option>{options}</select>'
    )


def _egress_row(row: EgressRow) -> str:
    hook = row.hook or "(outside hooks)"
    host = f"{row.host}:{row.port}" if row.port and row.kind != "dns" else row.host
    process = f'<a href="#{row.node}">{text(row.process)}</a>' if row.node else text(row.process)
    return (
        f'<tr class="st-{row.status}" data-host="{text(row.host)}" data-process="{text(row.process)}" '
        f'data-hook="{text(hook)}" data-status="{row.status}"><td class="wrapit"><code>{text(host)}</code></td>'
        f'<td><span class="badge {row.status}">{row.status}</span></td><td>{text(row.kind)}</td><td>{process}</td>'
        f'<td class="hide-sm">{text(hook)}</td><td class="hide-sm wrapit">{text(row.detail)}</td></tr>'
    )


def _rows_from_model(report: Report) -> list[EgressRow]:
    """Without the record: one row per host and hook, from the model's hosts by hook."""
    flagged = {f.host.lower() for f in report.verdict.counted if f.host}
    return [
        EgressRow(
            0,
            "/".join(h.kinds),
            h.host,
            None,
            ", ".join(h.processes),
            None,
            group.hook,
            "flagged" if h.host.lower() in flagged else "allowed",
            f"{h.count} contacts",
        )
        for group in report.network
        for h in group.hosts
    ]


# ------------------------------------------------------------------------------ files, hooks


def files(report: Report, view: RecordView | None) -> str:
    exe = report.executables
    rows = "".join(
        f"<tr><td class=wrapit><code>{text(f.path)}</code></td><td>{text(f.file_type)}</td>"
        f'<td class="hide-sm mono">{text(f.sha256[:16])}</td><td class="wrapit">{text(f.written_by)}</td></tr>'
        for f in exe.files
    )
    table = (
        '<div class="scroll"><table><thead><tr><th>path</th><th>type</th><th class="hide-sm">sha256</th>'
        f"<th>written by</th></tr></thead><tbody>{rows}</tbody></table></div>"
        if rows
        else '<p class="empty">No executable or script was written.</p>'
    )
    counted = (
        f"{exe.mode_only} file(s) with only an execute bit and {exe.inert_scripts} inert sample script(s) "
        "are counted, not listed."
    )
    hook_files = ""
    if view is not None:
        listed = "".join(
            f"<tr><td>{text(f.op)}</td><td class=wrapit><code>{text(f.path)}</code></td>"
            f'<td><a href="#{f.node}">{text(f.hook)}</a></td></tr>'
            for f in view.hook_files
        )
        more = view.hook_files_total - len(view.hook_files)
        hook_files = (
            f"<details><summary>Files written inside hooks: {view.hook_files_total} "
            f"(of {view.files_total} writes in the build)</summary>"
            f'<div class="scroll"><table><tbody>{listed}</tbody></table></div>'
            f"{f'<p class=muted>{more} more in the record.</p>' if more > 0 else ''}</details>"
        )
    return (
        f'<section id="files"><h2>Executables and scripts written <span class="n">{len(exe.files)}</span></h2>'
        f'<div class="card">{table}<p class="muted">{counted}</p>{hook_files}</div></section>'
    )


def hooks(report: Report) -> str:
    if not report.hooks:
        return '<section id="hooks"><h2>Hooks</h2><p class="card empty">No lifecycle hook ran.</p></section>'
    rows = "".join(
        f"<tr><td><span class=pkg>{text(h.package)}@{text(h.version)}</span></td><td>{text(h.hook)}</td>"
        f"<td class=hide-sm>{text(h.ecosystem)}</td>"
        f"<td class=wrapit><code>{text(', '.join(h.spawned) or '—')}</code></td></tr>"
        for h in report.hooks
    )
    return (
        f'<section id="hooks"><h2>Hooks <span class="n">{len(report.hooks)}</span></h2><div class="card scroll">'
        f"<table><thead><tr><th>package</th><th>hook</th><th class=hide-sm>ecosystem</th><th>spawned</th></tr></thead>"
        f"<tbody>{rows}</tbody></table></div></section>"
    )


def anomalies(report: Report) -> str:
    if not report.anomalies:
        return ""
    items = "".join(
        f"<li><code>{text(a.kind)}</code> {text(a.detail)} <span class=muted>({text(a.lineage)})</span></li>"
        for a in report.anomalies
    )
    return f'<section id="anomalies"><h2>Anomalies and leftovers</h2><ul class="card">{items}</ul></section>'
