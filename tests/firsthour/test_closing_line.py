"""A run is never silent: one closing line says the verdict, the counts and where the record
is; `--quiet` drops it on a pass. `--fail-exit-code` picks the code of a policy failure, and
verdict.json says why the run exited as it did."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from tests.support.runner import CiwatchRun

#: A policy that fails a hook-free build: its one finding (a refused signal to ciwatch) counts.
_STRICT = "version: 1\nmode: block\nfail-on: low\nrules:\n  tracer-evasion: low\n"


def test_a_passing_run_ends_with_one_line(ciwatch: Callable[..., CiwatchRun], tmp_path: Path) -> None:
    out = tmp_path / "out"
    run = ciwatch("--net", "off", "--", "true", out_dir=out)
    assert run.code == 0
    assert run.stderr.splitlines() == [f"ciwatch: pass · 0 findings · 0 hooks · record in {out}/"]


def test_quiet_drops_the_line_on_a_pass(ciwatch: Callable[..., CiwatchRun]) -> None:
    run = ciwatch("--quiet", "--net", "off", "--", "true")
    assert run.code == 0
    assert run.stderr == ""


def _failing_policy(tmp_path: Path) -> Path:
    policy = tmp_path / "policy.yml"
    policy.write_text(_STRICT)
    return policy


_SIGNAL_CIWATCH = "kill -STOP -1 2>/dev/null"  # refused, and a tracer-evasion finding


def test_fail_exit_code_is_chosen_and_verdict_json_says_why(ciwatch: Callable[..., CiwatchRun], tmp_path: Path) -> None:
    policy = _failing_policy(tmp_path)
    out = tmp_path / "out"
    options = ["--net", "off", "--policy", str(policy), "--fail-exit-code", "42"]
    run = ciwatch(*options, "--", "sh", "-c", f"{_SIGNAL_CIWATCH}; exit 0", out_dir=out)
    assert run.code == 42, run.stderr
    verdict = json.loads((out / "verdict.json").read_text())
    assert verdict["verdict"] == "fail" and verdict["exit_code"] == 42
    assert "verdict is fail in block mode" in verdict["exit_reason"]
    assert run.stderr.splitlines()[-1].startswith("ciwatch: fail · 1 finding · 0 hooks · block mode · record in")


def test_the_builds_own_failure_wins_and_verdict_json_says_so(
    ciwatch: Callable[..., CiwatchRun], tmp_path: Path
) -> None:
    policy = _failing_policy(tmp_path)
    out = tmp_path / "out"
    run = ciwatch(
        "--net", "off", "--policy", str(policy), "--", "sh", "-c", "kill -STOP -1 2>/dev/null; exit 5", out_dir=out
    )
    assert run.code == 5
    verdict = json.loads((out / "verdict.json").read_text())
    assert verdict["exit_code"] == 5 and verdict["exit_reason"] == "the build's own exit code"


def test_fail_exit_code_is_checked_before_the_build_starts(ciwatch: Callable[..., CiwatchRun], tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    run = ciwatch("--fail-exit-code", "0", "--net", "off", "--", "touch", str(marker))
    assert run.code == 2
    assert "--fail-exit-code" in run.stderr
    assert not marker.exists()
