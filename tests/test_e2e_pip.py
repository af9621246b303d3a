"""pip end to end: the real pip builds local sdists whose build spawns ``sh -c`` that writes a
file, under ``ciwatch run --net off``. The record must name pip's build hook with the package's
name and version from PKG-INFO, trace the shell back through it to pip, and show the write.

Two sdists: one with only a ``setup.py`` (pip 23 with wheel installed runs its legacy
``python -c <shim> egg_info`` / ``bdist_wheel``; a pip without that path uses setuptools' PEP 517
fallback) and one whose pyproject.toml names ``setuptools.build_meta`` (``_in_process.py
prepare_metadata_for_build_wheel`` / ``build_wheel``). ``--no-index --no-build-isolation``:
nothing is fetched, and the test asserts that the run made no connection at all.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from ciwatch.analysis.tree import ProcessTree
from ciwatch.record import Record
from ciwatch.record.events import DnsQuery, FileWrite, NetConnect, NetSend
from ciwatch.record.vocabulary import FileOp
from tests.support.packages import PythonSdist, make_python_sdist, make_venv, pip_env, pip_install_command
from tests.support.runner import CiwatchRun, run_ciwatch

pytestmark = pytest.mark.pip

#: The hooks pip runs through ``_in_process.py`` for a wheel build without build isolation.
PEP517_HOOKS = {"get_requires_for_build_wheel", "prepare_metadata_for_build_wheel", "build_wheel"}


@pytest.fixture(scope="module")
def venv_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_venv(tmp_path_factory.mktemp("pip-venv") / "venv")


@dataclass(frozen=True)
class PipInstall:
    sdist: PythonSdist
    mark: Path
    """The file the build's shell writes."""
    run: CiwatchRun
    record: Record
    tree: ProcessTree


@pytest.fixture(scope="module", params=["setup.py", "pep517"])
def install(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, venv_python: Path) -> PipInstall:
    pep517 = request.param == "pep517"
    base = tmp_path_factory.mktemp("pip-" + ("pep517" if pep517 else "legacy"))
    if pep517:
        sdist = make_python_sdist(base / "dist", "pep517pkg", "2.0.0", pep517=True)
    else:
        sdist = make_python_sdist(base / "dist", "legacypkg", "0.3.1", pep517=False)
    marks = (base / "marks").resolve()
    marks.mkdir()
    run = run_ciwatch(
        ["--net", "off", "--", *pip_install_command(venv_python, sdist)],
        base / "out",
        cwd=base,
        env=pip_env(marks, base / "pip-cache"),
    )
    assert run.code == 0, run.stderr
    record = run.record
    return PipInstall(sdist, marks / sdist.mark, run, record, ProcessTree(record))


def test_package_was_built_and_installed(install: PipInstall, venv_python: Path) -> None:
    assert install.mark.read_text() == f"built {install.sdist.name}\n"
    subprocess.run([str(venv_python), "-c", f"import {install.sdist.name}"], check=True)
    end = install.record.end
    assert end is not None and end.clean and end.exit_code == 0
    network = [item for item in install.record.events if isinstance(item.event, NetConnect | NetSend | DnsQuery)]
    assert network == []


def test_build_hooks_are_named_with_package_and_version_from_pkg_info(install: PipInstall) -> None:
    hooks = install.tree.hooks
    assert hooks, "no pip hook found"
    assert {(hook.ecosystem, hook.package, hook.version) for hook in hooks} == {
        ("pip", install.sdist.name, install.sdist.version)
    }
    names = {hook.hook for hook in hooks}
    if install.sdist.pep517:
        assert "build_wheel" in names and names <= PEP517_HOOKS
    else:
        assert names == {"setup.py"} or ("build_wheel" in names and names <= PEP517_HOOKS), names
    for hook in hooks:
        boundary = next(node for node in install.tree.nodes if node.pid == hook.pid)
        assert install.tree.lineage(boundary) == f"pip install > {hook.label}"


def test_shell_traces_back_through_the_hook_to_pip(install: PipInstall) -> None:
    tree = install.tree
    shells = [node for node in tree.nodes if node.execs and node.argv[:2] == ["sh", "-c"]]
    assert shells, "the build's shell is not in the record"
    # pip runs the build (so setup.py, so the shell) once per hook.
    assert len(shells) == len(tree.hooks)
    for shell in shells:
        assert shell.argv[-1] == str(install.mark)
        assert shell.hook is not None and shell.hook in tree.hooks
        assert tree.lineage(shell) == f"pip install > {shell.hook.label} > sh -c"


def test_the_build_write_is_recorded_and_attributed(install: PipInstall) -> None:
    tree = install.tree
    writes = [
        (item.seq, item.event)
        for item in install.record.events
        if isinstance(item.event, FileWrite) and item.event.path == str(install.mark)
    ]
    assert len(writes) == len(tree.hooks)
    for seq, write in writes:
        assert write.op is FileOp.OPEN
        if not install.record.header.capabilities.get("fanotify_file_events"):  # fanotify has no flags
            assert write.flags is not None and write.flags & 0o1101 == 0o1101
        writer = tree.node_at(seq)
        assert writer is not None and writer.argv[:2] == ["sh", "-c"]
        assert writer.hook is not None and writer.hook.package == install.sdist.name
