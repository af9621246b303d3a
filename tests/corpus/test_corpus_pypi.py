"""The real-world corpus for PyPI: popular packages installed from their sdists, so that their
builds run (PEP 517 hooks, build isolation fetching the backends as wheels, gcc compiling C
extensions, meson's compiler checks), from the index pip and uv are configured for, under
``ciwatch run --policy policies/default.yaml`` in the default mode. Each must install, each
sdist's hooks must be in the record under the package's name and version, and nothing of medium
or higher may be counted.

Two runs keep the file short: one ``pip install --no-binary`` of most of the corpus, and one
``uv pip install --no-binary`` (uv runs its PEP 517 hooks its own way) of the rest."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.corpus.support import CORPUS_MARKS, CorpusRun, Unreachable, assert_judged_ordinary, watch

pytestmark = CORPUS_MARKS

#: Built by pip, with what each one's build exercises.
PIP_SDISTS = {
    "pyyaml": "setuptools, C extension (Cython-generated) against libyaml; setuptools' distutils-precedence.pth",
    "markupsafe": "setuptools, C extension",
    "docopt": "legacy setup.py: the sdist has no pyproject.toml",
    "attrs": "hatchling, with the hatch-vcs and hatch-fancy-pypi-readme plugins",
    "idna": "flit_core",
    "tomlkit": "poetry-core",
    "meson-python": "meson-python (its own in-tree backend)",
}
#: Built by uv (whose isolated build environments are quick to make: the C extensions are here).
UV_SDISTS = {
    "pycairo": "meson-python, C extension against cairo: meson's compiler sanity checks and compile tests run",
    "psutil": "setuptools, C extension",
    "simplejson": "setuptools, C extension",
    "wrapt": "setuptools, C extension",
    "zope.interface": "setuptools, C extension",
}
#: Left out for the file's run time only (they build and pass here): C extensions whose builds
#: take longest under the tracer.
SLOW = ("msgpack", "cffi", "contourpy")
_NO_CRATES = "its build fetches Rust crates from the crate registry, which this machine does not reach"
#: Popular sdists with builds that cannot run here, and why (checked by installing them).
UNREACHABLE = (
    Unreachable("rpds-py", f"maturin: {_NO_CRATES}"),
    Unreachable("pydantic-core", f"maturin: {_NO_CRATES}"),
    Unreachable("cryptography", f"maturin: {_NO_CRATES}"),
    Unreachable("bcrypt", f"setuptools-rust: {_NO_CRATES}"),
    Unreachable("siphash24", "meson-python: its meson.build clones the c-siphash subproject from a git forge"),
)


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _venv(tmp_path: Path) -> Path:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    return venv


def _installed(venv: Path) -> dict[str, str]:
    """Canonical name -> version of what the venv holds, as pip reports it."""
    listed = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "list", "--format", "json"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return {_canonical(item["name"]): item["version"] for item in json.loads(listed)}


def assert_built_from_sdists(corpus: CorpusRun, venv: Path, names: list[str]) -> None:
    """Each sdist's wheel build ran as a hook named for the package and the version installed."""
    assert corpus.run.code == 0, corpus.explain()
    installed = _installed(venv)
    built = {(ecosystem, _canonical(package), version, hook) for ecosystem, package, version, hook in corpus.hooks()}
    for name in names:
        expected = ("pip", _canonical(name), installed.get(_canonical(name)), "build_wheel")
        assert expected in built, f"no build_wheel hook for {name}; hooks seen: {sorted(corpus.hooks())}"


def test_the_corpus_is_large_enough_and_lists_what_it_leaves_out() -> None:
    both = set(PIP_SDISTS) | set(UV_SDISTS)
    assert len(both) >= 12
    assert not both & ({item.package for item in UNREACHABLE} | set(SLOW))
    assert all(item.reason for item in UNREACHABLE)


def test_pip_builds_popular_sdists(tmp_path: Path) -> None:
    venv = _venv(tmp_path)
    names = sorted(PIP_SDISTS)
    # No cache: a wheel pip built before would be installed as is, and no hook would run.
    command = [str(venv / "bin" / "pip"), "install", "--no-cache-dir", "--no-binary", ",".join(names), *names]
    corpus = watch(command, tmp_path, tmp_path / "out")
    assert_built_from_sdists(corpus, venv, names)
    assert_judged_ordinary(corpus, ())


@pytest.mark.skipif(shutil.which("uv") is None, reason="uv is not installed (.ci/run installs it)")
def test_uv_builds_popular_sdists(tmp_path: Path) -> None:
    venv = _venv(tmp_path)
    names = sorted(UV_SDISTS)
    python = str(venv / "bin" / "python")
    command = ["uv", "pip", "install", "--no-cache", "--python", python, "--no-binary", ",".join(names), *names]
    corpus = watch(command, tmp_path, tmp_path / "out")
    assert_built_from_sdists(corpus, venv, names)
    assert_judged_ordinary(corpus, ())
