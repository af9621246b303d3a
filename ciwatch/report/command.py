"""``ciwatch report``: the record read and judged, its report built, and written in the format
asked (docs/report-format.md) to stdout or ``-o FILE``. What the record's hashes say goes to
stderr as well. Each format's module is imported only when it is asked for."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path

import click

from ciwatch.dataclass import dataclass, field
from ciwatch.errors import UsageError
from ciwatch.policy.model import Policy
from ciwatch.record import Record, read_record
from ciwatch.record.integrity import verify_record
from ciwatch.record.reader import resolve_record_path
from ciwatch.report.markdown import NamedReport
from ciwatch.report.model import Report, ReportOptions, build_report, read_stored_verdict
from ciwatch.verdict import evaluate

FORMATS = ("terminal", "json", "markdown", "html", "sarif", "codequality", "junit", "dotenv", "intoto")


@dataclass(frozen=True)
class OutputRequest:
    format: str = "terminal"
    output: Path | None = None
    """None: stdout."""
    full: bool = False
    color: bool | None = None
    subjects: Sequence[str] = field(default_factory=tuple)
    """``--subjects`` globs (intoto)."""


@dataclass(frozen=True)
class _Judged:
    path: Path
    record: Record
    policy: Policy
    report: Report

    @property
    def name(self) -> str:
        """What the reader knows the run by: its directory."""
        return self.path.name if self.path.is_dir() else self.path.parent.name


def show_report(path: Path, policy: Policy, options: ReportOptions, request: OutputRequest) -> int:
    if request.subjects and request.format != "intoto":
        raise UsageError("--subjects applies to --format intoto only")
    record = read_record(path)
    integrity = verify_record(path).lines()
    stored = read_stored_verdict(path)
    built = build_report(record, evaluate(record, policy), options, stored=stored, integrity=integrity)
    judged = _Judged(path, record, policy, built)
    if request.format == "terminal":
        _terminal(built, request)
    else:
        _write(_render(judged, request), request.output)
    for line in integrity:
        click.secho(f"ciwatch: {line}", fg="yellow", err=True)
    return 0


def _terminal(report: Report, request: OutputRequest) -> None:
    from ciwatch.report.terminal import render

    use_color = (request.output is None and sys.stdout.isatty()) if request.color is None else request.color
    text = _encodable(render(report, color=use_color, full=request.full))
    if request.output is None:
        click.echo(text, color=use_color)
    else:
        _write(text + "\n", request.output)


def _render(judged: _Judged, request: OutputRequest) -> str:
    report, runs = judged.report, [NamedReport(judged.name, judged.report)]
    match request.format:
        case "json":
            from ciwatch.report.json_format import report_json

            return json.dumps(report_json(report), indent=2) + "\n"
        case "markdown":
            from ciwatch.report.markdown import render_many

            return render_many(runs)
        case "html":
            from ciwatch.report.html import render_html

            return render_html(report, record=judged.record)
        case "sarif":
            from ciwatch.report.sarif import SarifContext, render_sarif

            return render_sarif(report, SarifContext(judged.record.header.cwd, judged.record.header.job_context))
        case "codequality":
            from ciwatch.report.gitlab import code_quality

            return code_quality(runs)
        case "junit":
            from ciwatch.report.gitlab import junit

            return junit(runs)
        case "dotenv":
            from ciwatch.report.ci_summary import JobSummary

            summary = JobSummary(report.verdict.verdict, report.verdict.counted_total, runs)
            return "".join(f"{key}={value}\n" for key, value in summary.dotenv().items())
        case "intoto":
            return _intoto(judged, request)
    raise UsageError(f"--format {request.format}: expected one of {', '.join(FORMATS)}")


def _intoto(judged: _Judged, request: OutputRequest) -> str:
    from ciwatch.report.intoto import attest

    record_file = resolve_record_path(judged.path)
    attestation = attest(judged.record, judged.report, judged.policy, record_file, request.subjects)
    for name in attestation.missing:
        click.secho(
            f"ciwatch: {_encodable(name)} was written by the build and is gone: not attested", fg="yellow", err=True
        )
    return json.dumps(attestation.statement, indent=2) + "\n"


def _write(text: str, output: Path | None) -> None:
    text = _encodable(text)
    if output is None:
        click.echo(text, nl=False)
        return
    try:
        output.write_text(text, encoding="utf-8")
    except OSError as error:
        raise UsageError(
            f"-o {output}: {error.strerror or error}", hint="name a file in a directory that exists"
        ) from None


def _encodable(text: str) -> str:
    """A record keeps bytes that weren't UTF-8 as lone surrogates (PEP 383: a file or package
    name): shown as ``\\udcXX``, never an encoding error at the last step."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")
