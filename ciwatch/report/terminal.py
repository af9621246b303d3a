"""The terminal rendering of a report (``ciwatch report``): the verdict and its findings first,
then the run, hooks, executables written, hosts by hook, anomalies. Each list is capped to fit
a screen unless ``full`` (``--all``)."""

from __future__ import annotations

import dataclasses
import re
from typing import TypeVar

import click

from ciwatch.dataclass import dataclass, field
from ciwatch.report.executables import Executables
from ciwatch.report.model import FindingGroup, HostGroup, Report, RunInfo, VerdictInfo, group_findings

#: Lines per section before "... and N more": the summary must fit on one screen.
_MAX_LINES = 12
#: Groups of findings shown before "... and N more" (each takes four or five lines).
_MAX_FINDINGS = 8
_MAX_TITLE = 160
_MAX_SPAWNED = 8
_COLOURS = {"pass": "green", "warn": "yellow", "fail": "red"}
#: Control characters in what the build chose (argv, paths, package names): an escape sequence
#: could move the cursor and rewrite the verdict line. Whitespace becomes a space, the rest \xNN.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_T = TypeVar("_T")


@dataclass
class _Section:
    title: str
    lines: list[str] = field(default_factory=list)
    footer: list[str] = field(default_factory=list)
    """After the cap, never cut by it: what the reader must know the list leaves out."""


def _style(text: str, color: bool, **style: object) -> str:
    return click.style(text, **style) if color else text  # type: ignore[arg-type]


def _capped(lines: list[str], full: bool, limit: int = _MAX_LINES) -> list[str]:
    if full or len(lines) <= limit:
        return lines
    return [*lines[: limit - 1], f"... and {len(lines) - limit + 1} more (--all shows them)"]


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" + ("" if count == 1 else "s")


def _visible(match: re.Match[str]) -> str:
    char = match.group()
    return " " if char in "\t\n\r\v\f" else f"\\x{ord(char):02x}"


def _printable(value: _T) -> _T:
    """A copy of the report's data with every control character made visible."""
    if isinstance(value, str):
        return _CONTROL.sub(_visible, value)  # type: ignore[return-value]
    if isinstance(value, list):
        return [_printable(item) for item in value]  # type: ignore[return-value]
    if isinstance(value, dict):
        return {_printable(key): _printable(item) for key, item in value.items()}  # type: ignore[return-value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        changes = {f.name: _printable(getattr(value, f.name)) for f in dataclasses.fields(value)}
        return dataclasses.replace(value, **changes)
    return value


def render(report: Report, color: bool = False, full: bool = False) -> str:
    report = _printable(report)
    out = _verdict_lines(report.verdict, report.hook_filter, color, full)
    out += _run_lines(report.run, color)
    if report.hook_filter is not None:
        out.append(f"  showing only the hooks of {report.hook_filter}")
    for section in (
        _hooks_section(report),
        _executables_section(report.executables),
        _network_section(report.network),
        _anomalies_section(report),
    ):
        out.append("")
        out.append(_style(section.title, color, bold=True))
        lines = _capped(section.lines, full) + section.footer
        out.extend("  " + line for line in (lines or ["none"]))
    return "\n".join(out)


def _verdict_lines(verdict: VerdictInfo, hook_filter: str | None, color: bool, full: bool) -> list[str]:
    head = _style(f"ciwatch verdict: {verdict.verdict}", color, fg=_COLOURS.get(verdict.verdict), bold=True)
    counted = _plural(len(verdict.counted), "finding")
    if hook_filter is not None:
        counted += f" of {hook_filter} ({verdict.counted_total} in the run)"
    if verdict.excepted:
        counted += f", {len(verdict.excepted)} excepted"
    lines = [f"{head} ({verdict.mode} mode, policy {verdict.policy}, fail on {verdict.fail_on}+): {counted}"]
    stored = verdict.stored
    if stored is not None and verdict.stored_differs:
        lines.append(
            _style(f"  verdict.json says {stored.verdict}", color, fg="yellow")
            + f" ({stored.mode} mode, policy {stored.policy}): the run may have used another policy"
        )
    if verdict.record_incomplete:
        lines.append(_style(f"  the record is incomplete: {verdict.record_incomplete}", color, fg="yellow"))
    if verdict.refusals:
        lines.append(f"  {verdict.refusals} connection(s) or lookup(s) refused live")
    for expired in verdict.expired_exceptions:
        lines.append(_style(f"  expired exception: {expired}", color, fg="yellow") + ": it no longer applies")
    groups = group_findings(verdict.counted)
    shown = groups if full else groups[:_MAX_FINDINGS]
    hinted: set[str] = set()
    for group in shown:
        lines += _group_lines(group, full, show_hint=group.first.rule not in hinted)
        hinted.add(group.first.rule)
    if len(shown) < len(groups):
        rest = sum(len(group.findings) for group in groups[len(shown) :])
        lines.append(f"  ... and {_plural(rest, 'more finding')} (--all shows them)")
    for finding in verdict.excepted if full else verdict.excepted[:_MAX_FINDINGS]:
        lines.append(f"  excepted [{finding.severity}] {finding.rule} · {finding.package or '-'}: {finding.excepted}")
    return lines


def _group_lines(group: FindingGroup, full: bool, show_hint: bool) -> list[str]:
    """``[high] rule · pkg@1.0.0 · postinstall``, the message(s), the lineage and (once per
    rule) the hint."""
    finding = group.first
    title = " · ".join(part for part in (finding.rule, finding.package, finding.hook) if part)
    count = f" ({len(group.findings)} findings)" if len(group.findings) > 1 else ""
    lines = [f"  [{finding.severity}] {title}{count}"]
    messages = [item.message for item in group.findings]
    lines += [f"      {message}" for message in (messages if full else messages[:1])]
    if not full and len(messages) > 1:
        lines.append(f"      ... and {len(messages) - 1} more by the same process (--all shows them)")
    lines.append(f"      lineage: {finding.lineage}")
    if show_hint:
        lines.append(f"      hint: {finding.hint}")
    return lines


def _run_lines(run: RunInfo, color: bool) -> list[str]:
    # One line, whatever the command: a multi-line `sh -c` script would push the summary off the screen.
    title = " ".join(" ".join(run.command).split())
    if len(title) > _MAX_TITLE:
        title = title[: _MAX_TITLE - 3] + "..."
    ids = " ".join(f"{key}={value}" for key, value in run.job.items() if key != "provider")
    lines = [
        _style(f"ciwatch record: {title}", color, bold=True),
        f"  job: {run.job['provider']} {ids}".rstrip(),
        f"  started: {run.started_at} in {run.cwd} (--net {run.net_mode})",
    ]
    if not run.finished:
        lines.append(_style("  the record has no end: ciwatch was killed before the run finished", color, fg="yellow"))
        return lines
    how = f"signal {run.build_signal}" if run.build_signal else f"exit {run.build_exit_code}"
    state = "" if run.clean else _style(f" (not clean: {run.error})", color, fg="yellow")
    lines.append(f"  finished: {how} -> exit code {run.exit_code} in {run.duration_s or 0:.1f}s{state}")
    return lines


def _hooks_section(report: Report) -> _Section:
    section = _Section("Hooks")
    if report.package_managers and report.hook_filter is None:
        section.lines.append("package managers: " + ", ".join(report.package_managers))
    for hook in report.hooks:
        line = f"{hook.ecosystem}: {hook.label}"
        ran = hook.spawned
        if ran:
            more = f" (+{len(ran) - _MAX_SPAWNED})" if len(ran) > _MAX_SPAWNED else ""
            line += " -> " + ", ".join(ran[:_MAX_SPAWNED]) + more
        section.lines.append(line)
    if not report.hooks:
        section.lines.append("no lifecycle hooks ran")
    return section


def _executables_section(executables: Executables) -> _Section:
    section = _Section("Executables and scripts written")
    for item in executables.files:
        section.lines.append(f"{item.path} ({item.file_type}, sha256 {item.sha256[:12]}) by {item.written_by}")
    unlisted = []
    if executables.mode_only:
        unlisted.append(f"{_plural(executables.mode_only, 'file')} with only an execute bit")
    if executables.inert_scripts:
        unlisted.append(_plural(executables.inert_scripts, "git sample hook"))
    if unlisted:
        section.footer.append(f"not listed: {' and '.join(unlisted)} (the record has them)")
    return section


def _network_section(groups: list[HostGroup]) -> _Section:
    section = _Section("Network (hosts by hook)")
    for group in groups:
        section.lines.append(f"{group.hook or 'outside hooks'}:")
        for host in group.hosts:
            kinds = "+".join(host.kinds)
            by = ", ".join(host.processes[:3])
            section.lines.append(f"  {host.host} ({kinds} x{host.count}) by {by or '?'}")
    return section


def _anomalies_section(report: Report) -> _Section:
    section = _Section("Anomalies and leftovers")
    for item in report.anomalies:
        if item.kind == "leftover":
            section.lines.append(item.detail)
        else:
            section.lines.append(f"{item.kind}: {item.detail} in {item.lineage}")
    return section
