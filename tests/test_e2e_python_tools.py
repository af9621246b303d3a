"""uv, pipx and poetry end to end: each real tool installs, from the test internet's index
(pypi.test), an sdist whose build runs the shared payload (tests/support/ecosystems.py), under
``ciwatch run`` with the default policy and the default ``--net redirect``. The verdict must name
the ``pip`` ecosystem (the packages are PyPI's, whichever tool installs them), the sdist's
``name@version`` and the PEP 517 hook that built it.

The sdists use an in-tree PEP 517 backend with no requirements (tests/support/internet/packages.py),
so the tools' build isolation fetches nothing but the sdist. The tools come from PyPI (.ci/run).
"""

from __future__ import annotations

import os
import subprocess
import textwrap
from pathlib import Path

import pytest

from tests.conftest import require
from tests.support.attacks import Watched, watch
from tests.support.ecosystems import Payload, assert_findings_name_hook, assert_payload_ran
from tests.support.internet import TestInternet

pytestmark = [pytest.mark.pip, pytest.mark.root]

VERSION = "2.7.1"
#: The build runs setup.py (so the payload) in each of these; the first to run it is named.
PEP517_HOOKS = frozenset({"get_requires_for_build_wheel", "prepare_metadata_for_build_wheel", "build_wheel"})


def _publish(internet: TestInternet, name: str, payload: Payload) -> None:
    module = name.replace("-", "_")
    setup_code = textwrap.dedent(
        f"""\
        import subprocess
        subprocess.run(["sh", "-c", {payload.script!r}], check=True)
        """
    )
    internet.publish_sdist(
        name,
        VERSION,
        setup_code=setup_code,
        files={f"{module}/__init__.py": "def main():\n    print('hi')\n"},
        entry_points={"console_scripts": {name: f"{module}:main"}},
    )


def _install(
    internet: TestInternet,
    tmp_path: Path,
    tool: str,
    command: list[str],
    env: dict[str, str],
    *,
    name_last: bool = True,
) -> Watched:
    """Publish ``{tool}-hooked`` and run ``command`` (with the package's name last, unless
    ``name_last`` is false: the project names it)."""
    require(tool)
    name = f"{tool}-hooked"
    payload = Payload(tool, tmp_path / "home" / "bin")
    _publish(internet, name, payload)
    project = tmp_path / "project"
    project.mkdir(exist_ok=True)
    watched = watch(
        internet, tmp_path / "home", project, tmp_path / "out", [*command, name] if name_last else command, env=env
    )
    assert watched.code == 0, watched.output[-3000:]
    assert_payload_ran(payload, internet)
    return watched


def test_uv_pip_install(internet: TestInternet, tmp_path: Path) -> None:
    require("uv")
    venv = tmp_path / "venv"
    subprocess.run(["uv", "venv", "-q", str(venv)], check=True, env={**os.environ, "HOME": str(tmp_path)})
    env = {"UV_INDEX_URL": internet.simple_index_url, "UV_CACHE_DIR": str(tmp_path / "uv-cache")}
    watched = _install(
        internet, tmp_path, "uv", ["uv", "pip", "install", "--python", str(venv / "bin" / "python")], env
    )
    assert_findings_name_hook(watched, "pip", "uv-hooked", VERSION, PEP517_HOOKS)


@pytest.mark.parametrize("backend", ["pip", "uv"])
def test_pipx_install(internet: TestInternet, tmp_path: Path, backend: str) -> None:
    """pipx 1.18 builds with uv when uv is on PATH, with pip when told so."""
    home = tmp_path / "home"
    env = {
        "PIPX_HOME": str(home / "pipx"),
        "PIPX_BIN_DIR": str(home / "pipx-bin"),
        "PIPX_MAN_DIR": str(home / "pipx-man"),
        "PIP_INDEX_URL": internet.simple_index_url,
        # pipx would upgrade its shared pip from the index (pypi.test has no pip): the pip
        # that ensurepip bundles does.
        "PIPX_DISABLE_SHARED_LIBS_AUTO_UPGRADE": "1",
    }
    watched = _install(
        internet,
        tmp_path,
        "pipx",
        ["pipx", "install", "--backend", backend, "--index-url", internet.simple_index_url],
        env,
    )
    assert_findings_name_hook(watched, "pip", "pipx-hooked", VERSION, PEP517_HOOKS)


POETRY_PROJECT = """\
[project]
name = "app"
version = "0.1.0"
requires-python = ">=3.11"
dependencies = ["poetry-hooked=={version}"]

[tool.poetry]
package-mode = false

[[tool.poetry.source]]
name = "test-index"
url = "{index}"
priority = "primary"
"""


def test_poetry_install(internet: TestInternet, tmp_path: Path) -> None:
    """A project that names the index as its only source (a primary source turns PyPI off)."""
    project = tmp_path / "project"
    project.mkdir()
    (project / "pyproject.toml").write_text(POETRY_PROJECT.format(version=VERSION, index=internet.simple_index_url))
    env = {
        "POETRY_VIRTUALENVS_IN_PROJECT": "true",
        "POETRY_CACHE_DIR": str(tmp_path / "poetry-cache"),
        "POETRY_NO_INTERACTION": "1",
    }
    command = ["poetry", "install", "--no-root"]
    watched = _install(internet, tmp_path, "poetry", command, env, name_last=False)
    assert_findings_name_hook(watched, "pip", "poetry-hooked", VERSION, PEP517_HOOKS)
