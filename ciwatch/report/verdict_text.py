"""The verdict in a few lines: what a person reads at the end of the build's output."""

from __future__ import annotations

import os
from pathlib import Path

import click

from ciwatch.policy.model import Mode
from ciwatch.verdict import Verdict, VerdictKind

_COLOURS = {VerdictKind.PASS: "green", VerdictKind.WARN: "yellow", VerdictKind.FAIL: "red"}
_MAX_FINDINGS = 15


def render_verdict(verdict: Verdict, color: bool = False) -> str:
    def style(text: str, **kwargs: object) -> str:
        return click.style(text, **kwargs) if color else text  # type: ignore[arg-type]

    counted = verdict.counted
    head = style(f"ciwatch verdict: {verdict.verdict}", fg=_COLOURS[verdict.verdict], bold=True)
    summary = f"{len(counted)} finding(s)" + (
        f", {len(verdict.findings) - len(counted)} excepted" if len(verdict.findings) > len(counted) else ""
    )
    lines = [
        f"{head} ({verdict.mode} mode, policy {verdict.policy_source}, fail on {verdict.fail_on.label}+): {summary}"
    ]
    if verdict.refusals:
        lines.append(f"  {verdict.refusals} connection(s) or lookup(s) refused live")
    ordered = sorted(counted, key=lambda f: (-f.severity, f.rule))
    for finding in ordered[:_MAX_FINDINGS]:
        lines.append(f"  [{finding.severity.label}] {finding.rule}: {finding.message}")
        lines.append(f"      {finding.lineage}")
        if finding.purl:
            lines.append(f"      package: {finding.purl}")
    if len(ordered) > _MAX_FINDINGS:
        lines.append(f"  ... and {len(ordered) - _MAX_FINDINGS} more in verdict.json")
    for exception in verdict.expired_exceptions:
        lines.append(
            style(f"  expired exception ({exception.expires}) for {exception.rule} at {exception.source}", fg="yellow")
            + ": it no longer applies"
        )
    if ordered:
        lines.append(f"  hint: {ordered[0].hint}")
    return "\n".join(lines)


def summary_line(verdict: Verdict, out_dir: Path, color: bool = False) -> str:
    """The run's last line: ``ciwatch: pass · 0 findings · 1 hook · record in ciwatch-out/``."""
    counted = len(verdict.counted)
    excepted = len(verdict.findings) - counted
    parts = [
        click.style(str(verdict.verdict), fg=_COLOURS[verdict.verdict], bold=True) if color else str(verdict.verdict),
        _plural(counted, "finding"),
    ]
    if excepted:
        parts.append(f"{excepted} excepted")
    parts.append(_plural(verdict.hooks, "hook"))
    if verdict.mode is not Mode.AUDIT:
        parts.append(f"{verdict.mode} mode")
    parts.append(f"record in {_shown_dir(out_dir)}")
    return "ciwatch: " + " · ".join(parts)


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" + ("" if count == 1 else "s")


def _shown_dir(directory: Path) -> str:
    """As the user would type it: relative to the working directory when under it."""
    try:
        shown = directory.resolve().relative_to(Path.cwd().resolve())
    except ValueError:
        shown = directory
    return f"{os.fsdecode(shown)}/" if str(shown) != "." else "./"
