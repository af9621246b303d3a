"""``ciwatch report --json``: the report's model as JSON, for machines.

The keys are a contract (docs/report-format.md): add, never rename. Every list is complete
(``--all`` changes nothing here)."""

from __future__ import annotations

import dataclasses
from typing import Any

from ciwatch.report.model import Report

#: Bumped only when a key changes meaning or goes away; new keys don't bump it.
REPORT_FORMAT = 1


def report_json(report: Report) -> dict[str, Any]:
    data = dataclasses.asdict(report)
    data["verdict"]["stored_differs"] = report.verdict.stored_differs
    return {"report_format": REPORT_FORMAT, **data}
