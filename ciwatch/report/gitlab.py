"""GitLab's merge-request reports from the report model: code quality (the widget lists each
counted finding, with a fingerprint that stays the same from run to run, so a finding is new
only once) and JUnit (one test case per rule, failed where the rule has counted findings).

Both formats are GitLab's: code quality is Code Climate's issue list with GitLab's subset of
fields (``description``, ``check_name``, ``fingerprint``, ``severity``, ``location``); JUnit is
the common ``testsuites`` XML that GitLab's test report reads.
"""

from __future__ import annotations

import hashlib
import json
import os
from xml.etree import ElementTree

from ciwatch.report.markdown import NamedReport
from ciwatch.report.model import FindingItem
from ciwatch.rules import ALL_RULES

#: ciwatch's severities as GitLab's code quality names them.
_SEVERITY = {"info": "info", "low": "minor", "medium": "major", "high": "critical", "critical": "blocker"}
#: Where a package's finding points when no better place is known: the file that says which
#: packages a job installs (the first that exists in the project), else the pipeline itself.
_MANIFESTS = (
    "package-lock.json",
    "npm-shrinkwrap.json",
    "yarn.lock",
    "pnpm-lock.yaml",
    "bun.lockb",
    "package.json",
    "poetry.lock",
    "uv.lock",
    "Pipfile.lock",
    "requirements.txt",
    "pyproject.toml",
    "Cargo.lock",
    "Gemfile.lock",
    "go.sum",
    "pom.xml",
    "build.gradle",
)
_PIPELINE = ".gitlab-ci.yml"


def fingerprint(finding: FindingItem) -> str:
    """Stable across runs: what the finding is about, never a pid, a time or a temp path."""
    key = "\0".join([finding.rule, finding.purl or finding.package or "", finding.hook or "", finding.host or ""])
    return hashlib.sha256((key + "\0" + finding.lineage).encode("utf-8", "surrogateescape")).hexdigest()


def code_quality(runs: list[NamedReport]) -> str:
    issues = []
    seen: set[str] = set()
    for run in runs:
        location = _location(run.report.run.cwd)
        for finding in run.report.verdict.counted:
            mark = fingerprint(finding)
            if mark in seen:
                continue  # the same finding in two steps of a job is one issue
            seen.add(mark)
            where = f" ({finding.package}, {finding.hook})" if finding.package and finding.hook else ""
            issues.append(
                {
                    "description": f"ciwatch {finding.rule}{where}: {finding.message}",
                    "check_name": finding.rule,
                    "fingerprint": mark,
                    "severity": _SEVERITY.get(finding.severity, "major"),
                    "location": {"path": location, "lines": {"begin": 1}},
                }
            )
    return json.dumps(issues, indent=2) + "\n"


def junit(runs: list[NamedReport]) -> str:
    """One test case per rule ciwatch knows, failed where the rule has counted findings."""
    by_rule: dict[str, list[tuple[str, FindingItem]]] = {rule.info.id: [] for rule in ALL_RULES}
    for run in runs:
        for finding in run.report.verdict.counted:
            by_rule.setdefault(finding.rule, []).append((run.name, finding))
    failed = sum(1 for found in by_rule.values() if found)
    suites = ElementTree.Element("testsuites", name="ciwatch", tests=str(len(by_rule)), failures=str(failed))
    suite = ElementTree.SubElement(
        suites, "testsuite", name="ciwatch", tests=str(len(by_rule)), failures=str(failed), errors="0"
    )
    for rule, found in by_rule.items():
        case = ElementTree.SubElement(suite, "testcase", classname="ciwatch", name=rule)
        if found:
            failure = ElementTree.SubElement(case, "failure", message=f"{len(found)} finding(s)", type=rule)
            lines = (f"[{f.severity}] {name}: {f.message}\n    {f.lineage}" for name, f in found)
            failure.text = _xml_text("\n".join(lines))
    return ElementTree.tostring(suites, encoding="unicode", xml_declaration=True) + "\n"


def _xml_text(text: str) -> str:
    """Text the build chose, as XML 1.0 can hold it: control characters and bytes that weren't
    UTF-8 (lone surrogates) shown as escapes instead of making the report unreadable."""
    return "".join(
        char
        if char in "\t\n" or (char.isprintable() and not "\ud800" <= char <= "\udfff")
        else f"\\x{ord(char) & 0xFF:02x}"
        for char in text
    )


def _location(project: str) -> str:
    for name in _MANIFESTS:
        if os.path.isfile(os.path.join(project, name)):
            return name
    return _PIPELINE
