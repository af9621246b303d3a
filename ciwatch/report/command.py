"""``ciwatch report``: the record read and judged, its report built, and printed in the form
asked (the terminal's, or JSON). What the record's hashes say goes to stderr as well."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from ciwatch.policy.model import Policy
from ciwatch.record import read_record
from ciwatch.record.integrity import verify_record
from ciwatch.report.json_format import report_json
from ciwatch.report.model import ReportOptions, build_report, read_stored_verdict
from ciwatch.report.terminal import render
from ciwatch.verdict import evaluate


def show_report(
    path: Path, policy: Policy, options: ReportOptions, *, as_json: bool, full: bool, color: bool | None
) -> int:
    record = read_record(path)
    integrity = verify_record(path).lines()
    stored = read_stored_verdict(path)
    built = build_report(record, evaluate(record, policy), options, stored=stored, integrity=integrity)
    if as_json:
        click.echo(json.dumps(report_json(built), indent=2))
    else:
        use_color = sys.stdout.isatty() if color is None else color
        click.echo(_encodable(render(built, color=use_color, full=full)), color=use_color)
    for line in integrity:
        click.secho(f"ciwatch: {line}", fg="yellow", err=True)
    return 0


def _encodable(text: str) -> str:
    """A record keeps bytes that weren't UTF-8 as lone surrogates (PEP 383: a file or package
    name): shown as ``\\udcXX``, never an encoding error at the last step."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")
