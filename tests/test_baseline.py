"""`ciwatch baseline`: from clean runs to a quiet first policy, each entry commented."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ciwatch.policy import load_policy
from ciwatch.rules import RULE_CATALOGUE
from tests.support.internet import EVIL, TestInternet

pytestmark = [pytest.mark.npm, pytest.mark.root]


def _ciwatch(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ciwatch", *args], cwd=cwd, capture_output=True, text=True, timeout=120
    )


def test_baseline_of_a_run_is_a_valid_policy_that_passes_that_run(internet: TestInternet, tmp_path: Path) -> None:
    internet.publish_npm(
        "telemetry-hook",
        "3.1.4",
        package_json_extra={"scripts": {"postinstall": f"curl -s -o /dev/null https://{EVIL}/ping"}},
    )
    project = tmp_path / "project"
    project.mkdir()
    (project / "package.json").write_text(json.dumps({"name": "project", "version": "1.0.0", "private": True}))
    out = tmp_path / "out"
    command = [
        sys.executable, "-m", "ciwatch", "run", "--upstream-ca", str(internet.ca_cert),
        "--out", str(out), "--", "npm", "install", "telemetry-hook",
    ]  # fmt: skip
    done = subprocess.run(
        internet.wrap_with_test_resolver(command),
        cwd=project,
        env=internet.client_env(tmp_path / "home"),
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr

    # Under a strict policy the run fails: an unfamiliar host, a hook nobody allowed.
    strict = Path(__file__).parent.parent / "policies" / "strict.yaml"
    before = _ciwatch("check", str(out), "--policy", str(strict), "--json")
    assert before.returncode == 3
    assert {"unfamiliar-egress", "unapproved-hook"} <= set(json.loads(before.stdout)["counts"])

    proposed = tmp_path / "policy.yml"
    made = _ciwatch("baseline", str(out), "-o", str(proposed))
    assert made.returncode == 0, made.stderr
    text = proposed.read_text()
    # Each entry says where it came from.
    host_line = next(line for line in text.splitlines() if EVIL in line)
    assert "by npm install telemetry-hook > postinstall of telemetry-hook@3.1.4 > curl" in host_line
    hook_line = next(line for line in text.splitlines() if line.strip().startswith('- "telemetry-hook@3.1.4"'))
    assert "postinstall ran in" in hook_line
    policy = load_policy(proposed, known_rules=RULE_CATALOGUE)
    assert policy.hooks_allowed is not None and [str(spec) for spec in policy.hooks_allowed] == ["telemetry-hook@3.1.4"]

    # The run it was made from passes under it, in block mode: what the rules still counted
    # (a hook that ran curl) is excepted for that package at that version, with an expiry.
    after = _ciwatch("check", str(out), "--policy", str(proposed), "--mode", "block", "--json")
    verdict = json.loads(after.stdout)
    assert after.returncode == 0 and verdict["verdict"] == "pass", verdict
    excepted = {(f["rule"], f["package"]) for f in verdict["findings"] if f["excepted"]}
    assert ("hook-network-tool", "telemetry-hook@3.1.4") in excepted, verdict["findings"]
    assert {e.rule for e in policy.exceptions} >= {"hook-network-tool"}
    assert all(e.expires is not None and e.package is not None for e in policy.exceptions)
    assert all(str(e.package).startswith("npm:telemetry-hook@") for e in policy.exceptions)
    checked = _ciwatch("policy", "check", str(proposed))
    assert checked.returncode == 0 and "ok" in checked.stdout
