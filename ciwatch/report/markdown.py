"""The Markdown rendering of reports, for a CI job's summary page (GitHub's step summary, a
GitLab artifact): the verdict first, then the counted findings (package@version, hook, lineage,
hint), hooks per package, hosts per hook, executables written. The long parts sit in
``<details>``; the whole is capped in size, with a pointer to the artifact that has it all.

Everything a build chose (argv, paths, package names, hosts) is text, never Markdown or HTML:
it is escaped, so a package can't write a link, an image or a closing tag into the summary.
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence

from ciwatch.dataclass import dataclass
from ciwatch.report.model import FindingGroup, Report, group_findings

#: GitHub refuses a step summary over 1 MiB; leave room for what else the step writes.
DEFAULT_MAX_BYTES = 1000 * 1024
_ICONS = {"pass": "✅", "warn": "⚠️", "fail": "❌"}
_ORDER = {"pass": 0, "warn": 1, "fail": 2}
#: Markdown punctuation that could start a link, emphasis, a table cell or a heading.
_MARKDOWN = re.compile(r"([\\`*_{}\[\]()#+!|~<>])")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


@dataclass(frozen=True)
class NamedReport:
    name: str
    """What the reader knows the run by: the step, or the record's directory."""
    report: Report


def text(value: str) -> str:
    """Build-controlled text as inert Markdown: one line, HTML entities, punctuation escaped."""
    one_line = _CONTROL.sub(" ", value)
    return _MARKDOWN.sub(r"\\\1", html.escape(one_line, quote=False))


def code(value: str) -> str:
    """Inline code that no backtick in ``value`` can close early."""
    one_line = _CONTROL.sub(" ", value)
    fence = "`" * (max((len(run) for run in re.findall(r"`+", one_line)), default=0) + 1)
    return f"{fence} {one_line} {fence}"


def worst_verdict(verdicts: Sequence[str]) -> str:
    return max(verdicts, key=lambda verdict: _ORDER.get(verdict, 2), default="pass")


def render(report: Report, *, name: str | None = None, artifact: str | None = None, max_bytes: int = 0) -> str:
    """One run's summary; ``max_bytes`` 0: uncapped."""
    return render_many([NamedReport(name or "ciwatch", report)], artifact=artifact, max_bytes=max_bytes)


def render_many(reports: Sequence[NamedReport], *, artifact: str | None = None, max_bytes: int = 0) -> str:
    """Several runs of one job (the steps ``actions/setup`` wrapped): the job's verdict (the
    worst of them) and a table of runs, then each run's own summary."""
    verdict = worst_verdict([r.report.verdict.verdict for r in reports])
    counted = sum(r.report.verdict.counted_total for r in reports)
    head = [f"## {_ICONS.get(verdict, '')} ciwatch: {verdict} · {_plural(counted, 'finding')}", ""]
    if len(reports) > 1:
        head += ["| run | verdict | findings | hooks | mode |", "|---|---|---|---|---|"]
        head += [
            f"| {text(r.name)} | {r.report.verdict.verdict} | {r.report.verdict.counted_total} "
            f"| {len(r.report.hooks)} | {r.report.verdict.mode} |"
            for r in reports
        ]
        head.append("")
    body = []
    for named in reports:
        body += _run_section(named, heading=len(reports) > 1)
    return _capped("\n".join(head), "\n".join(body), artifact, max_bytes)


def _capped(head: str, body: str, artifact: str | None, max_bytes: int) -> str:
    """Head and body, cut at a line so that the whole fits ``max_bytes`` (UTF-8), with a note
    that says where the rest is. The head (verdict and table) is never cut."""
    whole = f"{head}\n{body}\n"
    if max_bytes <= 0 or len(whole.encode()) <= max_bytes:
        return whole
    where = f"the artifact {code(artifact)}" if artifact else "record.jsonl and verdict.json"
    note = f"\n\n**Summary cut to fit {max_bytes} bytes:** the full report is in {where} (`ciwatch report`).\n"
    # Room for the closing tags added below (a few per run).
    budget = max_bytes - len(head.encode()) - len(note.encode()) - 64
    kept: list[str] = []
    used = 0
    for line in body.split("\n"):
        size = len(line.encode()) + 1
        if used + size > budget:
            break
        kept.append(line)
        used += size
    # An open <details> would swallow the note: close what was cut inside one.
    opened = sum(line.startswith("<details") for line in kept) - sum(line == "</details>" for line in kept)
    kept += ["</details>"] * max(opened, 0)
    return f"{head}\n" + "\n".join(kept) + note


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" + ("" if count == 1 else "s")


def _run_section(named: NamedReport, heading: bool) -> list[str]:
    report = named.report
    lines = [f"### {text(named.name)}", ""] if heading else []
    lines += _verdict_lines(report)
    lines += _findings_lines(group_findings(report.verdict.counted))
    lines += _details("Hooks per package", _hook_lines(report))
    lines += _details("Hosts per hook", _host_lines(report))
    lines += _details("Executables written", _executable_lines(report))
    anomalies = [f"- {text(a.kind)}: {text(a.detail)} ({code(a.lineage)})" for a in report.anomalies]
    lines += _details("Anomalies", anomalies)
    return lines


def _verdict_lines(report: Report) -> list[str]:
    run, verdict = report.run, report.verdict
    ended = "not finished (ciwatch was stopped)" if not run.finished else f"exit {run.exit_code}"
    lines = [
        f"**{verdict.verdict}** in {verdict.mode} mode (fail on {verdict.fail_on}, policy {code(verdict.policy)}): "
        f"{_plural(verdict.counted_total, 'finding')} counted, {len(verdict.excepted)} excepted; "
        f"command {code(' '.join(run.command))}, {ended}.",
        "",
    ]
    if verdict.stored_differs and verdict.stored is not None:
        lines += [f"The live run's verdict.json says **{verdict.stored.verdict}**.", ""]
    if verdict.record_incomplete:
        lines += [f"The record is incomplete: {text(verdict.record_incomplete)}.", ""]
    lines += [f"- {text(sentence)}" for sentence in report.integrity]
    return lines


def _findings_lines(groups: list[FindingGroup]) -> list[str]:
    if not groups:
        return []
    lines = ["| severity | rule | package | hook | what |", "|---|---|---|---|---|"]
    details = []
    for group in groups:
        first = group.first
        more = f" ({len(group.findings)} times)" if len(group.findings) > 1 else ""
        lines.append(
            f"| {first.severity} | {first.rule} | {text(first.package or '-')} | {text(first.hook or '-')} "
            f"| {text(first.message)}{more} |"
        )
        details += [f"- **{first.rule}** {text(first.message)}", f"  - lineage: {code(first.lineage)}"]
        if first.hint:
            details.append(f"  - hint: {text(first.hint)}")
    return [*lines, "", *_details("Findings: lineage and hints", details, open_=True)]


def _hook_lines(report: Report) -> list[str]:
    lines = []
    for hook in report.hooks:
        spawned = ", ".join(code(command) for command in hook.spawned) or "nothing"
        lines.append(f"- {text(hook.package)}@{text(hook.version)} `{hook.hook}` ({hook.ecosystem}): ran {spawned}")
    return lines


def _host_lines(report: Report) -> list[str]:
    lines = []
    for group in report.network:
        owner = text(group.hook) if group.hook is not None else "the build (outside hooks)"
        lines.append(f"- {owner}")
        for host in group.hosts:
            local = " (loopback)" if host.local else ""
            kinds = ", ".join(host.kinds)
            lines.append(f"  - {code(host.host)}{local}: {_plural(host.count, 'contact')} ({kinds})")
    return lines


def _executable_lines(report: Report) -> list[str]:
    return [
        f"- {code(item.path)} ({item.file_type}, {item.size} bytes, sha256 {item.sha256[:16]}…) "
        f"by {code(item.written_by)}"
        for item in report.executables.files
    ]


def _details(title: str, lines: list[str], open_: bool = False) -> list[str]:
    """A collapsed section; its count is of items (lines that start with ``- ``), not lines."""
    if not lines:
        return []
    tag = "<details open>" if open_ else "<details>"
    count = sum(line.startswith("- ") for line in lines)
    return [tag, f"<summary>{title} ({count})</summary>", "", *lines, "", "</details>", ""]
