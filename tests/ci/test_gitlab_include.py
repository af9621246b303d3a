"""The GitLab CI include end to end, under gitlab-ci-local with the shell executor: a pipeline
that includes ``gitlab/ciwatch.yml`` (``include: local`` with inputs) runs the malicious fixture
and fails on the verdict in block mode, inside ``script:``; the clean fixture passes; both keep
their records, the summary and the dotenv report with the verdict as artifacts.

ciwatch is installed by the include's before_script from this checkout into a venv of its own,
once: the second job finds it ready (``CIWATCH_VENV``, as a runner's image would have it).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from xml.etree import ElementTree

import pytest
import yaml

from ciwatch.record import read_record
from tests.ci.support import ROOT, GitlabRun, check_schema, make_repository, payload_server, run_gitlab_job

pytestmark = [pytest.mark.slow, pytest.mark.npm]

PIPELINE = f"""\
include:
  - local: gitlab/ciwatch.yml
    inputs:
      source: {ROOT}
      mode: block

.install:
  extends: .ciwatch
  script:
    - cd fixture/project
    - ciwatch_run npm install --no-audit --no-fund "../$PACKAGE"
    - echo "after the wrapped line"

evil:
  extends: .install
  variables:
    PACKAGE: evilpkg

clean:
  extends: .install
  variables:
    PACKAGE: cleanpkg
"""


@dataclass(frozen=True)
class Jobs:
    evil: GitlabRun
    clean: GitlabRun


@pytest.fixture(scope="module")
def jobs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Jobs]:
    base = tmp_path_factory.mktemp("gitlab")
    # gitlab-ci-local sets GITLAB_CI=false (a real runner: true), which ciwatch reads to know
    # the job is GitLab's; the rest of the job's variables are as a runner sets them.
    variables = {"CIWATCH_VENV": str(base / "venv"), "GITLAB_CI": "true"}
    with payload_server() as url:
        # A repository each: the shell executor runs a job in the project's own directory.
        runs = {
            job: run_gitlab_job(make_repository(base / job, url, {".gitlab-ci.yml": PIPELINE}), job, base, variables)
            for job in ("evil", "clean")
        }
        yield Jobs(runs["evil"], runs["clean"])


def _dotenv(run: GitlabRun) -> dict[str, str]:
    found = list(run.reports.rglob("ciwatch.env"))
    assert len(found) == 1, (list(run.reports.rglob("*")), run.log[-3000:])
    return dict(line.split("=", 1) for line in found[0].read_text().splitlines() if line)


def _records(run: GitlabRun) -> list[Path]:
    return sorted(path.parent for path in (run.artifacts / "ciwatch-out").glob("*/record.jsonl"))


def test_malicious_fixture_fails_the_job_on_the_verdict(jobs: Jobs) -> None:
    run = jobs.evil
    assert run.code != 0, run.log[-3000:]
    # Failed inside script: by the wrapped line's exit code 3, before the next line ran.
    assert "FAIL 3" in run.log, run.log[-3000:]
    assert "after the wrapped line" not in run.log
    assert "hook-shell: postinstall of evilpkg@6.6.6" in run.log
    assert len(_records(run)) == 1
    assert _dotenv(run) == {"CIWATCH_VERDICT": "fail", "CIWATCH_FINDINGS": "2", "CIWATCH_RUNS": "1"}


def test_report_is_in_a_collapsed_section_and_the_summary_kept(jobs: Jobs) -> None:
    run = jobs.evil
    assert "ciwatch_report" in run.log  # gitlab-ci-local shows a section's start and end by name
    summary = (run.artifacts / "ciwatch-out" / "summary.md").read_text()
    assert summary.startswith("## ❌ ciwatch: fail")
    assert "| high | hook-shell | evilpkg@6.6.6 | postinstall |" in summary


def test_merge_request_reports_code_quality_and_junit(jobs: Jobs) -> None:
    out = jobs.evil.artifacts / "ciwatch-out"
    issues = json.loads((out / "codequality.json").read_text())
    shell = [issue for issue in issues if issue["check_name"] == "hook-shell"]
    assert shell and "evilpkg@6.6.6" in shell[0]["description"] and shell[0]["severity"] == "critical"
    assert all(len(issue["fingerprint"]) == 64 and issue["location"]["lines"]["begin"] == 1 for issue in issues)
    suite = ElementTree.parse(out / "junit.xml").getroot()
    cases = {case.get("name"): case for case in suite.iter("testcase")}
    assert cases["hook-shell"].find("failure") is not None
    assert cases["persistence-write"].find("failure") is None  # a rule with nothing to say passes
    clean = ElementTree.parse(jobs.clean.artifacts / "ciwatch-out" / "junit.xml").getroot()
    assert [case for case in clean.iter("testcase") if case.find("failure") is not None] == []
    assert json.loads((jobs.clean.artifacts / "ciwatch-out" / "codequality.json").read_text()) == []


def test_clean_fixture_passes(jobs: Jobs) -> None:
    run = jobs.clean
    assert run.code == 0, run.log[-3000:]
    assert "after the wrapped line" in run.log
    assert _dotenv(run)["CIWATCH_VERDICT"] == "pass"
    assert len(_records(run)) == 1
    assert (_records(run)[0] / "verdict.json").is_file()


def test_include_declares_its_inputs_and_artifacts() -> None:
    spec, jobs_ = yaml.safe_load_all((ROOT / "gitlab" / "ciwatch.yml").read_text())
    assert {"source", "policy", "mode", "net", "out"} <= set(spec["spec"]["inputs"])
    template = jobs_[".ciwatch"]
    assert template["artifacts"]["when"] == "always"
    assert template["artifacts"]["reports"]["dotenv"].endswith("/ciwatch.env")
    assert template["artifacts"]["reports"]["codequality"].endswith("/codequality.json")
    assert template["artifacts"]["reports"]["junit"].endswith("/junit.xml")


def test_records_are_attributed_to_the_job_from_the_runners_variables(jobs: Jobs) -> None:
    contexts = [read_record(_records(run)[0]).header.job_context for run in (jobs.evil, jobs.clean)]
    assert [c["provider"] for c in contexts] == ["gitlab", "gitlab"]
    assert [c["CI_JOB_NAME"] for c in contexts] == ["evil", "clean"]
    assert all(c.get("CI_JOB_ID") and c.get("CI_PIPELINE_ID") for c in contexts)


def test_the_include_passes_gitlabs_ci_schema(tmp_path: Path) -> None:
    # An include with `spec: inputs` is two documents: its header, then the jobs. Each is checked
    # against check-jsonschema's vendored GitLab CI schema (offline).
    header, jobs = (ROOT / "gitlab" / "ciwatch.yml").read_text().split("\n---\n", 1)
    files = []
    for name, text in (("spec.yml", header + "\n"), ("jobs.yml", jobs)):
        (tmp_path / name).write_text(text)
        files.append(tmp_path / name)
    assert check_schema("vendor.gitlab-ci", files) == []
    # And the check can fail: a script that is not a list of lines.
    (tmp_path / "bad.yml").write_text("build:\n  script: 5\n")
    assert check_schema("vendor.gitlab-ci", [tmp_path / "bad.yml"]) != []
