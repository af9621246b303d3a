"""`ciwatch baseline` of clean runs makes those runs pass, and nothing more.

Issue: on xterm.js the proposed policy held only `hooks.allowed` and registries, and `ciwatch
check --mode block --policy <baseline>` of the same record still failed. Each finding a rule
still counts gets the narrowest exception (its rule, the package at its exact version), with a
reason to write and an expiry; another package doing the same still fails.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from ciwatch.policy import load_policy
from ciwatch.rules import RULE_CATALOGUE
from tests.conftest import require
from tests.support.packages import (
    make_npm_package,
    make_npm_project,
    make_python_sdist,
    make_venv,
    npm_env,
    pip_env,
    pip_install_command,
)
from tests.support.runner import ciwatch_command, run_ciwatch

#: What esbuild's postinstall does (its platform binary put in place, then run to check it),
#: plus a shell: findings under the default rules, none of them malicious.
_INSTALL_BINARY = (
    "mkdir -p bin && cp /bin/true bin/native && chmod +x bin/native && ./bin/native && sh -c 'echo checked'"
)


def _ciwatch(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*ciwatch_command(), *args], capture_output=True, text=True, timeout=120)


def _npm_record(tmp_path: Path, name: str) -> Path:
    require("npm")
    package = make_npm_package(tmp_path / f"{name}-src", name, "0.24.2", {"postinstall": _INSTALL_BINARY})
    project = make_npm_project(tmp_path / f"{name}-project", [package.directory])
    out = tmp_path / f"{name}-out"
    run = run_ciwatch(
        ["--net", "off", "--", "npm", "install", "--no-audit", "--no-fund", "--offline", str(package.directory)],
        out,
        cwd=project,
        env=npm_env(tmp_path / "npm-cache"),
    )
    assert run.code == 0, run.stderr
    return out


def _pip_record(tmp_path: Path) -> Path:
    sdist = make_python_sdist(tmp_path / "sdists", "nativebuild", "1.4.0", pep517=False)
    python = make_venv(tmp_path / "venv")
    out = tmp_path / "pip-out"
    marks = tmp_path / "marks"
    marks.mkdir()
    run = run_ciwatch(
        ["--net", "off", "--", *pip_install_command(python, sdist)], out, env=pip_env(marks, tmp_path / "pc")
    )
    assert run.code == 0, run.stderr
    return out


def _check(record: Path, policy: Path) -> dict[str, object]:
    done = _ciwatch("check", str(record), "--policy", str(policy), "--mode", "block", "--json")
    assert done.returncode in (0, 3), done.stderr
    verdict: dict[str, object] = json.loads(done.stdout)
    return verdict


@pytest.mark.npm
def test_baseline_of_real_installs_makes_them_pass_and_no_more(tmp_path: Path) -> None:
    records = [_npm_record(tmp_path, "esbuildlike"), _pip_record(tmp_path)]
    strict = Path(__file__).parents[2] / "policies" / "strict.yaml"
    for record in records:
        assert _check(record, strict)["verdict"] == "fail"  # they do count something

    proposed = tmp_path / "policy.yml"
    made = _ciwatch("baseline", *map(str, records), "-o", str(proposed))
    assert made.returncode == 0, made.stderr
    policy = load_policy(proposed, known_rules=RULE_CATALOGUE)
    assert policy.exceptions, proposed.read_text()
    for exception in policy.exceptions:
        assert exception.expires is not None
        assert exception.package is not None and exception.package.version_range, exception
    for record in records:
        verdict = _check(record, proposed)
        assert verdict["verdict"] == "pass", (verdict["counts"], proposed.read_text())

    # Narrow: the same behaviour by another package (or another version) still counts.
    other = _npm_record(tmp_path, "lookalike")
    assert _check(other, proposed)["counts"], "the baseline excepted more than the packages it saw"


def test_baseline_exits_2_on_a_missing_record(tmp_path: Path) -> None:
    done = _ciwatch("baseline", str(tmp_path / "nothing-here"))
    assert done.returncode == 2
