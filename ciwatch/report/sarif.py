"""``ciwatch report --format sarif``: SARIF 2.1.0 for code scanning (GitHub's upload, any SARIF
viewer). One run of the tool ``ciwatch``: every rule ciwatch knows, with its help from
docs/rules.md, and one result per finding (excepted ones carry a suppression, so a dashboard
shows them as dismissed instead of raising them).

Code scanning wants a file in the repository for every result: the line of the lockfile or
manifest that names the finding's package, else the CI configuration that ran the build
(``locations.py``). Its ``partialFingerprints`` are those of GitLab's code quality report
(``gitlab.fingerprint``): what the finding is about, never a pid or a time, so the same finding
on the next run is the same alert.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any

from ciwatch import __version__
from ciwatch.dataclass import dataclass
from ciwatch.report.gitlab import fingerprint
from ciwatch.report.locations import Location, ci_location, package_location, repository_root
from ciwatch.report.model import FindingItem, Report
from ciwatch.rules import ALL_RULES, RuleInfo

SCHEMA = "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json"
#: ciwatch's home. The rules' help links point into its docs/rules.md.
HOME = "https://ciwatch.dev"
RULES_DOC_URL = f"{HOME}/docs/rules.md"
#: docs/rules.md in a source checkout (an editable install, a CI clone of ciwatch); a wheel
#: without it gives each rule its summary and hint as help.
_RULES_DOC = Path(__file__).resolve().parents[2] / "docs" / "rules.md"
_FINGERPRINT_KEY = "ciwatch/v1"

#: ciwatch's severities as SARIF levels, and as GitHub's ``security-severity`` (a CVSS-like
#: score: above 9 critical, 7 high, 4 medium, else low), which ranks alerts in its dashboard.
_LEVEL = {"info": "note", "low": "note", "medium": "warning", "high": "error", "critical": "error"}
_SECURITY_SEVERITY = {"info": "1.0", "low": "3.0", "medium": "5.5", "high": "8.0", "critical": "9.5"}


@dataclass(frozen=True)
class SarifContext:
    """What the renderer needs beyond the report: where the build ran, and its job's identity
    (the record's header has both)."""

    cwd: str
    job: Mapping[str, str]


def render_sarif(report: Report, context: SarifContext) -> str:
    return json.dumps(sarif_log(report, context), indent=2) + "\n"


def sarif_log(report: Report, context: SarifContext) -> dict[str, Any]:
    root = repository_root(context.cwd)
    fallback = ci_location(root, context.job)
    rules = [rule.info for rule in ALL_RULES]
    index = {info.id: position for position, info in enumerate(rules)}
    findings = [*report.verdict.counted, *report.verdict.excepted]
    results = [_result(finding, index, _location(finding, root, context.cwd, fallback)) for finding in findings]
    run: dict[str, Any] = {
        "tool": {
            "driver": {
                "name": "ciwatch",
                "version": __version__,
                "semanticVersion": __version__,
                "informationUri": HOME,
                "rules": [_rule(info) for info in rules],
            }
        },
        "invocations": [_invocation(report)],
        "results": results,
        "columnKind": "unicodeCodePoints",
        "properties": {"verdict": report.verdict.verdict, "mode": report.verdict.mode},
    }
    return {"$schema": SCHEMA, "version": "2.1.0", "runs": [run]}


def _rule(info: RuleInfo) -> dict[str, Any]:
    severity = info.default_severity.label
    markdown = rule_help(info.id) or f"{info.summary}\n\n{info.hint}"
    return {
        "id": info.id,
        "name": "".join(part.capitalize() for part in info.id.split("-")),
        "shortDescription": {"text": info.summary},
        "fullDescription": {"text": f"{info.summary}. {info.hint}"},
        "help": {"text": plain_text(markdown), "markdown": markdown},
        "helpUri": f"{RULES_DOC_URL}#{info.id}",
        "defaultConfiguration": {"level": _LEVEL.get(severity, "warning")},
        "properties": {
            "tags": ["security", "supply-chain"],
            "security-severity": _SECURITY_SEVERITY.get(severity, "5.5"),
        },
    }


def _result(finding: FindingItem, index: Mapping[str, int], location: Location) -> dict[str, Any]:
    # Most messages name the hook's package already ("postinstall of pkg@1.0.0 ran ...").
    named = not finding.package or not finding.hook or finding.package in finding.message
    where = "" if named else f" ({finding.package}, {finding.hook})"
    result: dict[str, Any] = {
        "ruleId": finding.rule,
        "level": _LEVEL.get(finding.severity, "warning"),
        "message": {"text": f"{finding.message}{where}. Lineage: {finding.lineage}"},
        "locations": [_physical(location)],
        "partialFingerprints": {_FINGERPRINT_KEY: fingerprint(finding)},
        "properties": {
            "severity": finding.severity,
            "package": finding.package,
            "purl": finding.purl,
            "hook": finding.hook,
            "lineage": finding.lineage,
            "host": finding.host,
            "evidence": finding.evidence,
        },
    }
    if finding.rule in index:
        result["ruleIndex"] = index[finding.rule]
    if finding.excepted is not None:
        result["suppressions"] = [{"kind": "external", "status": "accepted", "justification": finding.excepted}]
    return result


def _physical(location: Location) -> dict[str, Any]:
    physical: dict[str, Any] = {"artifactLocation": {"uri": location.path}}
    if location.line is not None:
        physical["region"] = {"startLine": location.line}
    return {"physicalLocation": physical}


def _location(finding: FindingItem, root: Path, cwd: str, fallback: Location) -> Location:
    return package_location(root, cwd, finding.purl, finding.package) or fallback


def _invocation(report: Report) -> dict[str, Any]:
    run = report.run
    invocation: dict[str, Any] = {
        "executionSuccessful": run.finished and run.clean,
        "commandLine": " ".join(run.command),
        "arguments": list(run.command),
        "startTimeUtc": run.started_at,
    }
    if run.build_exit_code is not None:
        invocation["exitCode"] = run.build_exit_code
    return invocation


@cache
def _rule_sections() -> dict[str, str]:
    """docs/rules.md's ``## <rule>`` sections, by rule id ({} without the file)."""
    try:
        text = _RULES_DOC.read_text(encoding="utf-8")
    except OSError:
        return {}
    sections: dict[str, list[str]] = {}
    current: list[str] | None = None
    fenced = False
    for line in text.splitlines():
        if line.startswith("```"):
            fenced = not fenced
        if not fenced and (line.startswith("## ") or line.strip() == "---" or line.startswith("# ")):
            current = sections.setdefault(line[3:].strip(), []) if line.startswith("## ") else None
            continue
        if current is not None:
            current.append(line)
    return {rule: "\n".join(lines).strip() for rule, lines in sections.items()}


def rule_help(rule: str) -> str | None:
    """The rule's section of docs/rules.md, as Markdown."""
    return _rule_sections().get(rule)


def plain_text(markdown: str) -> str:
    """Markdown as a person reads it in plain text: links as their text, no emphasis marks."""
    text = re.sub(r"\[([^\]]+)\]\([^)]*\)", r"\1", markdown)
    return re.sub(r"\*\*([^*]+)\*\*", r"\1", text)
