"""``ciwatch summary``: one or more records (the steps of a CI job) judged and summed up for the
CI system: a Markdown summary, and the job's verdict as step outputs (GitHub) or a dotenv report
(GitLab) that later steps and jobs read. The job's verdict is the worst of its runs'."""

from __future__ import annotations

from pathlib import Path

from ciwatch.dataclass import dataclass
from ciwatch.policy.model import Policy
from ciwatch.record import read_record
from ciwatch.record.integrity import verify_record
from ciwatch.report.markdown import NamedReport, render_many, worst_verdict
from ciwatch.report.model import build_report, read_stored_verdict
from ciwatch.verdict import evaluate


@dataclass(frozen=True)
class JobSummary:
    verdict: str
    findings: int
    """Counted findings over every run."""
    runs: list[NamedReport]

    def markdown(self, artifact: str | None, max_bytes: int) -> str:
        return render_many(self.runs, artifact=artifact, max_bytes=max_bytes)

    def outputs(self) -> dict[str, str]:
        """Step outputs (``$GITHUB_OUTPUT``): single-line values, as the file takes them."""
        return {"verdict": self.verdict, "findings": str(self.findings), "runs": str(len(self.runs))}

    def dotenv(self) -> dict[str, str]:
        """GitLab's dotenv report: variables for later jobs (single lines, no comments)."""
        return {f"CIWATCH_{key.upper()}": value for key, value in self.outputs().items()}


def record_directories(paths: list[Path]) -> list[Path]:
    """Each path is a record's directory (or record.jsonl), or a directory of such directories
    (``actions/setup`` gives each wrapped step one under a common root)."""
    found = []
    for path in paths:
        if path.is_file() or (path / "record.jsonl").is_file():
            found.append(path)
        elif path.is_dir():
            found += sorted(child for child in path.iterdir() if (child / "record.jsonl").is_file())
    return found


def summarise(paths: list[Path], policy: Policy) -> JobSummary:
    runs = []
    for path in record_directories(paths):
        record = read_record(path)
        report = build_report(
            record,
            evaluate(record, policy),
            stored=read_stored_verdict(path),
            integrity=verify_record(path).lines(),
        )
        runs.append(NamedReport(path.name if path.is_dir() else path.parent.name, report))
    verdict = worst_verdict([run.report.verdict.verdict for run in runs])
    return JobSummary(verdict, sum(run.report.verdict.counted_total for run in runs), runs)


def write_variables(path: Path, variables: dict[str, str]) -> None:
    """Append ``KEY=value`` lines (GitHub's ``$GITHUB_OUTPUT`` is shared by the step's writers)."""
    with path.open("a", encoding="utf-8") as stream:
        for key, value in variables.items():
            stream.write(f"{key}={value}\n")
