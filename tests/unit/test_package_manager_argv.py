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
