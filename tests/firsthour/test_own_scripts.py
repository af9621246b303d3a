"""A script the user runs by name is the user's command, not a package's hook.

Issue: `ciwatch run -- npm test` treated the project's test script as a hook: every syscall of
the test suite was followed, and the hook-only rules raised high findings (`credential-read`
for `ps` reading /proc/1/environ, `executable-write` for a tool rehashing its shims). The
project's install-time scripts, run by `npm install`, stay hooks, named as the project's.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from ciwatch.analysis.tree import ProcessTree
from tests.conftest import require
from tests.support.packages import npm_env
from tests.support.runner import run_ciwatch

pytestmark = pytest.mark.npm

#: What a test suite does that a hook must not: read another process's environment, write an
#: executable into a bin directory, spawn a shell.
_SUITE = (
    "cat /proc/1/environ > /dev/null 2>&1; mkdir -p shims && printf '#!/bin/sh\\necho shim\\n' > shims/tool "
    "&& chmod +x shims/tool && sh -c 'echo suite ran'"
)


def _project(directory: Path) -> Path:
    directory.mkdir()
    manifest = {
        "name": "own-scripts",
        "version": "2.0.0",
        "private": True,
        "scripts": {"test": _SUITE, "build": _SUITE, "postinstall": "sh -c 'echo project postinstall'"},
    }
    (directory / "package.json").write_text(json.dumps(manifest))
    return directory


@pytest.mark.parametrize("script", [["npm", "test"], ["npm", "run", "build"]])
def test_the_projects_own_script_run_by_name_is_not_a_hook(tmp_path: Path, script: list[str]) -> None:
    require("npm")
    project = _project(tmp_path / "project")
    run = run_ciwatch(
        ["--net", "off", "--", *script],
        tmp_path / "out",
        cwd=project,
        env={**npm_env(tmp_path / "cache"), "PATH": os.environ["PATH"]},
    )
    assert run.code == 0, run.stderr
    assert "suite ran" in run.stdout
    assert ProcessTree(run.record).hooks == []
    verdict = json.loads((tmp_path / "out" / "verdict.json").read_text())
    assert verdict["verdict"] == "pass", verdict["findings"]


def test_the_projects_install_time_script_is_still_a_hook(tmp_path: Path) -> None:
    require("npm")
    project = _project(tmp_path / "project")
    run = run_ciwatch(
        ["--net", "off", "--", "npm", "install", "--no-audit", "--no-fund", "--offline"],
        tmp_path / "out",
        cwd=project,
        env=npm_env(tmp_path / "cache"),
    )
    assert run.code == 0, run.stderr
    hooks = ProcessTree(run.record).hooks
    assert [(hook.package, hook.version, hook.hook) for hook in hooks] == [("own-scripts", "2.0.0", "postinstall")]
