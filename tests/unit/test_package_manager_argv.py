"""Which package manager a process runs, from its argv: a script run through a shebang whose
interpreter carries options (pipx and uv write ``#!.../python -E``) is the script's."""

from __future__ import annotations

import pytest

from ciwatch.facts.ecosystems import Ecosystem
from ciwatch.facts.programs import package_manager_name, package_manager_of


@pytest.mark.parametrize(
    ("argv", "name"),
    [
        (["/root/.local/share/pipx/venvs/poetry/bin/python", "-E", "/usr/local/bin/poetry", "install"], "poetry"),
        (["python3", "-Es", "/usr/bin/pip", "install", "x"], "pip"),
        (["/usr/bin/python3", "/usr/bin/pip3", "install"], "pip3"),
        (["python", "-m", "pip", "install"], "pip"),
    ],
)
def test_script_after_interpreter_options(argv: list[str], name: str) -> None:
    assert package_manager_name(argv) == name
    assert package_manager_of(argv) is Ecosystem.PIP


@pytest.mark.parametrize(
    "argv",
    [
        ["python", "-c", "import pip"],  # inline code: not a script
        ["python", "-E", "setup.py", "build"],
        ["python", "-E"],
    ],
)
def test_not_a_package_manager(argv: list[str]) -> None:
    assert package_manager_of(argv) is None


@pytest.mark.parametrize(
    "argv",
    [
        ["/usr/bin/node", "/work/app/.yarn/releases/yarn-4.4.1.cjs", "install"],
        ["node", ".yarn/releases/yarn-berry.cjs", "install"],  # yarnPath may name any file there
        ["node", "/home/u/.cache/node/corepack/yarn/4.5.0/yarn-4.5.0.cjs"],
    ],
)
def test_yarn_berry_release_bundles(argv: list[str]) -> None:
    assert package_manager_of(argv) is Ecosystem.YARN
    assert package_manager_name(argv) == "yarn"


def test_a_script_beside_yarn_releases_is_not_yarn() -> None:
    assert package_manager_of(["node", "/work/app/.yarn/plugins/x.cjs"]) is None
