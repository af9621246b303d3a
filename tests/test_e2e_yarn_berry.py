"""Yarn berry end to end, run the way projects pin it: ``yarnPath`` in ``.yarnrc.yml`` names the
release checked into ``.yarn/releases/yarn-<version>.cjs``, and ``yarn install`` (yarn 1 on
PATH) hands over to ``node .yarn/releases/yarn-<version>.cjs``. Berry has no ``sh -c`` wrapper:
its own shell runs a hook's commands, so each is a hook boundary under yarn's node process.

The release comes from ``@yarnpkg/cli-dist``, which .ci/run installs apart from yarn 1 on PATH
(it may not replace it), in /usr/local/lib/yarn-berry. Nothing reaches a registry: the
dependency is a local tarball."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from ciwatch.analysis.tree import ProcessTree
from tests.conftest import require
from tests.support.packages import npm_env
from tests.support.runner import run_ciwatch

pytestmark = pytest.mark.npm

RELEASE = "yarn-4.18.1.cjs"


def _berry_bundle() -> Path:
    bundle = Path("/usr/local/lib/yarn-berry/node_modules/@yarnpkg/cli-dist/bin/yarn.js")
    if not bundle.is_file():
        pytest.fail(f"{bundle} is missing; .ci/run installs @yarnpkg/cli-dist there")
    return bundle


def test_hooks_of_yarn_berry_run_through_yarn_path_are_attributed_and_judged(tmp_path: Path) -> None:
    for tool in ("yarn", "npm", "node"):
        require(tool)
    package = tmp_path / "hookpkg"
    package.mkdir()
    scripts = {"postinstall": "echo 'echo piped' | sh"}
    (package / "package.json").write_text(json.dumps({"name": "hookpkg", "version": "1.2.3", "scripts": scripts}))
    env = {**os.environ, **npm_env(tmp_path / ".npm-cache")}
    subprocess.run(["npm", "pack", "--silent", "--pack-destination", str(tmp_path)], cwd=package, env=env, check=True)
    project = tmp_path / "project"
    (project / ".yarn" / "releases").mkdir(parents=True)
    shutil.copy(_berry_bundle(), project / ".yarn" / "releases" / RELEASE)
    (project / ".yarnrc.yml").write_text(
        f"yarnPath: .yarn/releases/{RELEASE}\nnodeLinker: node-modules\nenableTelemetry: false\n"
        "enableGlobalCache: false\nenableScripts: true\n"
    )
    manifest = {
        "name": "project",
        "private": True,
        "dependencies": {"hookpkg": f"file:{tmp_path / 'hookpkg-1.2.3.tgz'}"},
        "dependenciesMeta": {"hookpkg": {"built": True}},
    }
    (project / "package.json").write_text(json.dumps(manifest))
    run = run_ciwatch(
        ["--net", "off", "--", "yarn", "install"],
        tmp_path / "out",
        cwd=project,
        env={"CI": "", "YARN_ENABLE_IMMUTABLE_INSTALLS": "false"},
    )
    assert run.code in (0, 1), run.stderr
    hooks = {(hook.ecosystem, hook.package, hook.version, hook.hook) for hook in ProcessTree(run.record).hooks}
    assert hooks == {("yarn", "hookpkg", "1.2.3", "postinstall")}, run.stdout
    verdict = json.loads((run.out_dir / "verdict.json").read_text())
    shells = [f for f in verdict["findings"] if f["rule"] == "hook-shell"]
    assert [f["package"] for f in shells] == ["hookpkg@1.2.3"], verdict["findings"]
