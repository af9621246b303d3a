"""GitHub Actions workflow commands for findings (``warn`` and ``block`` modes).

GitHub shows at most 10 error and 10 warning annotations per step: the most severe go first,
and the rest are counted in a notice (verdict.json has them all)."""

from __future__ import annotations

from ciwatch.verdict import Verdict

_LIMIT = 10


def _escape_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(text: str) -> str:
    return _escape_data(text).replace(":", "%3A").replace(",", "%2C")


def workflow_commands(verdict: Verdict) -> list[str]:
    ordered = sorted(verdict.counted, key=lambda finding: -finding.severity)
    lines = []
    for finding in ordered[:_LIMIT]:
        level = "error" if finding.severity >= verdict.fail_on else "warning"
        title = _escape_property(f"ciwatch {finding.rule}")
        message = _escape_data(f"{finding.message}\n{finding.lineage}\nhint: {finding.hint}")
        lines.append(f"::{level} title={title}::{message}")
    if len(ordered) > _LIMIT:
        lines.append(f"::notice title=ciwatch::{len(ordered) - _LIMIT} more finding(s) in verdict.json")
    return lines
