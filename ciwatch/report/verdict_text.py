"""The verdict in a few lines: what a person reads at the end of the build's output."""

from __future__ import annotations

import click

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
