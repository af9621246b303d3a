"""The workflow commands ``ciwatch run`` prints in a GitHub job (warn and block modes), on a real
npm install whose hook writes many executables, one named to forge a workflow command, and pipes
a script into ``sh``: the most severe finding first, at most 10 annotations, the rest counted in
a notice, and nothing the build named can start a workflow command of its own."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import require
from tests.support.packages import NPM_QUIET_ENV
from tests.support.runner import run_ciwatch

pytestmark = pytest.mark.npm

#: Twelve executables in the project (executable-write, medium each), the first named with a
#: newline and a forged workflow command, then a script piped into sh (hook-shell, high).
_HOOK = (
    'cd "$INIT_CWD" && mkdir -p bin'
    " && f=$(printf 'bin/x\\n::error title=forged::pwned') && printf '#!/bin/sh\\n' > \"$f\" && chmod +x \"$f\""
    " && for i in 1 2 3 4 5 6 7 8 9 10 11; do printf '#!/bin/sh\\n' > bin/t$i && chmod +x bin/t$i; done"
    " && echo 'echo hi' | sh"
)


def test_most_severe_first_capped_counted_and_escaped(tmp_path: Path) -> None:
    require("npm")
    package = tmp_path / "noisy"
    package.mkdir()
    (package / "package.json").write_text(
        json.dumps({"name": "noisy", "version": "1.0.0", "scripts": {"postinstall": _HOOK}})
    )
    project = tmp_path / "project"
    project.mkdir()
    (project / "package.json").write_text(json.dumps({"name": "p", "version": "1.0.0", "private": True}))
    env = {**NPM_QUIET_ENV, "npm_config_cache": str(tmp_path / "npm-cache"), "GITHUB_ACTIONS": "true"}
    run = run_ciwatch(
        ["--mode", "block", "--net", "off", "--", "npm", "install", "--no-audit", "--no-fund", str(package)],
        tmp_path / "out",
        cwd=project,
        env=env,
    )
    assert run.code == 3, run.stderr
    commands = [line for line in run.stdout.splitlines() if line.startswith("::")]
    annotations = [line for line in commands if line.startswith(("::error", "::warning"))]
    assert annotations[0].startswith("::error title=ciwatch hook-shell::"), commands
    assert len(annotations) == 10
    assert commands[-1].startswith("::notice title=ciwatch::") and "more finding" in commands[-1]
    # The file's name reaches the annotation escaped: its newline can't start a command.
    assert any("x%0A::error title=forged::pwned" in line for line in annotations), annotations
    assert not any("forged" in line.split("::")[1] for line in commands), "a forged title"
    assert not any(line.startswith("::error title=forged") for line in run.stdout.splitlines())
