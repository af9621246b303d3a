"""uv end to end: the real ``uv pip install`` builds local sdists, running each PEP 517 hook as
``python -c <import the backend as backend; call the hook>``. The hooks must be recognised as
pip-family hooks named from PKG-INFO, so that a build piping into ``sh`` is ``hook-shell`` under
uv as it is under pip. ``--offline --no-build-isolation`` into a venv that sees the test
runner's setuptools: nothing is fetched."""

from __future__ import annotations

import io
import json
import tarfile
import textwrap
from pathlib import Path
from typing import Any

import pytest

from ciwatch.analysis.tree import ProcessTree
from tests.conftest import require
from tests.support.packages import make_python_sdist, make_venv, pip_env
from tests.support.runner import run_ciwatch

pytestmark = pytest.mark.pip

#: A setup.py that runs what a pipe feeds a shell (a download, in the real attacks).
PIPING_SETUP_PY = textwrap.dedent(
    """\
    import os
    import subprocess

    from setuptools import setup

    mark = os.path.join(os.environ["BUILD_MARK_DIR"], "piped")
    subprocess.run(f"echo 'echo piped > {mark}' | sh", shell=True, check=True)
    setup(name="uvpiped", version="0.9.1", py_modules=["uvpiped"])
    """
)
PYPROJECT = '[build-system]\nrequires = ["setuptools>=40.8"]\nbuild-backend = "setuptools.build_meta"\n'


def _piping_sdist(root: Path) -> Path:
    files = {
        "PKG-INFO": "Metadata-Version: 2.1\nName: uvpiped\nVersion: 0.9.1\n",
        "setup.py": PIPING_SETUP_PY,
        "pyproject.toml": PYPROJECT,
        "uvpiped.py": "",
    }
    root.mkdir(parents=True, exist_ok=True)
    path = root / "uvpiped-0.9.1.tar.gz"
    with tarfile.open(path, "w:gz") as archive:
        for relative, text in files.items():
            info = tarfile.TarInfo(f"uvpiped-0.9.1/{relative}")
            info.size = len(text.encode())
            archive.addfile(info, io.BytesIO(text.encode()))
    return path


def _uv_install(base: Path, sdist: Path) -> tuple[ProcessTree, dict[str, Any]]:
    require("uv")
    python = make_venv(base / "venv")
    marks = base / "marks"
    marks.mkdir()
    project = base / "project"
    project.mkdir()
    command = ["uv", "pip", "install", "--offline", "--no-build-isolation", "--python", str(python), str(sdist)]
    env = {**pip_env(marks, base / "pip-cache"), "UV_NO_CONFIG": "1", "UV_CACHE_DIR": str(base / "uv-cache")}
    run = run_ciwatch(["--net", "off", "--", *command], base / "out", cwd=project, env=env)
    assert run.code in (0, 1), run.stderr
    return ProcessTree(run.record), json.loads((run.out_dir / "verdict.json").read_text())


def test_uvs_pep517_hooks_are_named_from_pkg_info(tmp_path: Path) -> None:
    sdist = make_python_sdist(tmp_path / "dist", "uvhooked", "2.3.4", pep517=True)
    tree, verdict = _uv_install(tmp_path, sdist.path)
    hooks = {(hook.ecosystem, hook.package, hook.version, hook.hook) for hook in tree.hooks}
    assert ("pip", "uvhooked", "2.3.4", "build_wheel") in hooks, hooks
    assert {hook for *_, hook in hooks} <= {
        "get_requires_for_build_wheel",
        "prepare_metadata_for_build_wheel",
        "build_wheel",
    }
    assert verdict["verdict"] == "pass", verdict["findings"]


def test_a_build_piping_into_sh_is_hook_shell_under_uv(tmp_path: Path) -> None:
    _, verdict = _uv_install(tmp_path, _piping_sdist(tmp_path / "dist"))
    shells = [f for f in verdict["findings"] if f["rule"] == "hook-shell"]
    assert shells, verdict["findings"]
    assert {(f["ecosystem"], f["package"]) for f in shells} == {("pip", "uvpiped@0.9.1")}
    assert verdict["verdict"] == "fail"
