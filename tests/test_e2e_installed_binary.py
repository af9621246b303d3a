"""esbuild's shape end to end, with the real npm and local packages: a package's postinstall
hard-links the binary its platform package installed over its own shim, renames it into place
and runs it (``--version``). The default policy passes the install, with the finding reported
and the reason it is not counted; the same hook writing the bytes itself is counted.

Nothing reaches a registry: both packages are local ``npm pack`` tarballs."""

from __future__ import annotations

import json
import os
import subprocess
import textwrap
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import require
from tests.support.packages import make_npm_project, npm_env
from tests.support.runner import run_ciwatch

pytestmark = pytest.mark.npm

#: esbuild's install.js, reduced to what it does on Linux when its platform package is there;
#: ``PLACE_BY=write`` makes up the bytes instead (esbuild's fallback writes what it fetched).
INSTALL_JS = textwrap.dedent(
    """\
    const fs = require("fs");
    const path = require("path");
    const { execFileSync } = require("child_process");
    const target = path.join(__dirname, "bin", "tool");
    if (process.env.PLACE_BY === "write") {
      fs.writeFileSync(target, "#!/bin/sh\\necho made-up\\n", { mode: 0o755 });
    } else {
      const temp = path.join(__dirname, "bin-tool");
      fs.linkSync(require.resolve("platbin/bin/tool"), temp);
      fs.renameSync(temp, target);
    }
    execFileSync(target, ["--version"], { stdio: "inherit" });
    """
)


def _pack(root: Path, manifest: dict[str, Any], files: dict[str, str]) -> Path:
    directory = root / manifest["name"]
    for relative, text in files.items():
        (directory / relative).parent.mkdir(parents=True, exist_ok=True)
        (directory / relative).write_text(text)
        (directory / relative).chmod(0o755 if text.startswith("#!") else 0o644)
    (directory / "package.json").write_text(json.dumps({"description": "ciwatch test package", **manifest}))
    env = {**os.environ, **npm_env(root / ".npm-cache")}
    subprocess.run(["npm", "pack", "--silent", "--pack-destination", str(root)], cwd=directory, env=env, check=True)
    return root / f"{manifest['name']}-{manifest['version']}.tgz"


@pytest.fixture(scope="module")
def tarballs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    for tool in ("npm", "node"):
        require(tool)
    root = tmp_path_factory.mktemp("installed-binary")
    platform = _pack(root, {"name": "platbin", "version": "1.0.0"}, {"bin/tool": "#!/bin/sh\necho 0.24.2\n"})
    shim = "#!/usr/bin/env node\nrequire('child_process').execFileSync(require.resolve('platbin/bin/tool'))\n"
    # Its platform package as an optional dependency, as esbuild's are (@esbuild/linux-x64...).
    manifest = {
        "name": "fakebuild",
        "version": "0.24.2",
        "scripts": {"postinstall": "node install.js"},
        "optionalDependencies": {"platbin": f"file:{platform}"},
    }
    builder = _pack(root, manifest, {"install.js": INSTALL_JS, "bin/tool": shim})
    return platform, builder


def _judged_install(tmp_path: Path, tarballs: tuple[Path, Path], place_by: str, manager: str = "npm") -> dict[str, Any]:
    _, builder = tarballs
    project = make_npm_project(tmp_path / "project", allow_scripts_from=[builder]).resolve()
    command = ["npm", "install", "--no-audit", "--no-fund", str(builder)]
    if manager == "pnpm":
        require("pnpm")
        command = ["pnpm", "add", "--store-dir", str(tmp_path / "pnpm-store"), f"file:{builder}"]
    run = run_ciwatch(
        ["--net", "off", "--", *command],
        tmp_path / "out",
        cwd=project,
        env={**npm_env(tmp_path / "npm-cache"), "PLACE_BY": place_by},
    )
    assert run.code in (0, 1), run.stderr
    ran = (project / "node_modules" / "fakebuild" / "bin" / "tool").resolve()
    assert ran.read_text().startswith("#!/bin/sh"), f"the hook did not put the binary in place: {run.stderr}"
    verdict: dict[str, Any] = json.loads((run.out_dir / "verdict.json").read_text())
    return verdict


@pytest.mark.parametrize("manager", ["npm", "pnpm"])
def test_a_hook_running_its_platform_packages_binary_passes_with_the_reason_recorded(
    tmp_path: Path, tarballs: tuple[Path, Path], manager: str
) -> None:
    verdict = _judged_install(tmp_path, tarballs, "link", manager)
    ran = [f for f in verdict["findings"] if f["rule"] == "exec-written-file"]
    assert len(ran) == 1, verdict["findings"]
    assert ran[0]["package"] == "fakebuild@0.24.2"
    assert (
        "hard-linked from" in ran[0]["excepted"] and f"platbin/bin/tool (installed by {manager})" in ran[0]["excepted"]
    )
    assert verdict["verdict"] == "pass" and verdict["counts"] == {}, verdict


def test_the_same_hook_writing_the_bytes_itself_is_counted(tmp_path: Path, tarballs: tuple[Path, Path]) -> None:
    verdict = _judged_install(tmp_path, tarballs, "write")
    ran = [f for f in verdict["findings"] if f["rule"] == "exec-written-file"]
    assert len(ran) == 1 and ran[0]["excepted"] is None, verdict["findings"]
    assert verdict["verdict"] == "fail"
