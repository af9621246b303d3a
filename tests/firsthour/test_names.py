"""Names a person recognises: a local or editable install is named after its package, not
the folder it was checked out into."""

from __future__ import annotations

from pathlib import Path

from ciwatch.analysis.tree import ProcessTree
from tests.support.packages import make_venv, pip_env
from tests.support.runner import run_ciwatch

_PYPROJECT = """\
[build-system]
requires = ["setuptools>=64"]
build-backend = "setuptools.build_meta"

[project]
name = "acme-widgets"
version = "3.2.1"
"""


def test_an_editable_install_is_named_after_its_package(tmp_path: Path) -> None:
    checkout = tmp_path / "checkout-of-some-branch"
    (checkout / "acme_widgets").mkdir(parents=True)
    (checkout / "acme_widgets" / "__init__.py").write_text("")
    (checkout / "pyproject.toml").write_text(_PYPROJECT)
    python = make_venv(tmp_path / "venv")
    marks = tmp_path / "marks"
    marks.mkdir()
    command = [str(python), "-m", "pip", "install", "--no-index", "--no-build-isolation", "-e", str(checkout)]
    run = run_ciwatch(["--net", "off", "--", *command], tmp_path / "out", env=pip_env(marks, tmp_path / "cache"))
    assert run.code == 0, run.stderr
    hooks = ProcessTree(run.record).hooks
    assert hooks, "pip's build hooks were not seen"
    assert {(hook.package, hook.version) for hook in hooks} == {("acme-widgets", "3.2.1")}, hooks
