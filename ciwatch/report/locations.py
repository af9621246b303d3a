"""Where in the repository a finding points: the line of a lockfile or manifest that names the
package whose hook made it, else the CI configuration that ran the build. Code-scanning
dashboards (SARIF) need a file in the repository for every result; a line that names the
package is where a reviewer acts (pin, remove or except it).

Lockfiles are read as text, line by line, never parsed: a lockfile of any version or dialect
names its packages on a line of their own, and a line number is all that is needed.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path

from ciwatch.dataclass import dataclass

#: Files bigger than this are not searched (a lockfile of 50 000 packages is about 30 MB).
_MAX_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class Location:
    path: str
    """Relative to the repository's root, ``/``-separated."""
    line: int | None
    """1-based; None when the location is a file or directory as a whole."""


def _python_name(name: str) -> str:
    """PEP 503: ``Foo.Bar_baz`` and ``foo-bar-baz`` are one package."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _npm_lock(name: str) -> Callable[[str], bool]:
    # v2/v3 (``"node_modules/NAME": {``, maybe nested) and v1 (``"NAME": {`` under dependencies).
    keys = (f'"node_modules/{name}":', f'/node_modules/{name}":', f'"{name}": {{')
    return lambda line: any(key in line for key in keys)


def _yarn_lock(name: str) -> Callable[[str], bool]:
    # classic: ``NAME@^1.0.0, NAME@^1.1.0:``; berry: ``"NAME@npm:1.0.0":``
    return lambda line: not line.startswith(" ") and line.lstrip('"').startswith(f"{name}@")


def _pnpm_lock(name: str) -> Callable[[str], bool]:
    # v6: ``  /NAME@1.0.0:``, v9: ``  NAME@1.0.0:`` (quoted when scoped)
    return lambda line: line.strip().strip("'\"").lstrip("/").startswith(f"{name}@") and line.rstrip().endswith(":")


def _json_key(name: str) -> Callable[[str], bool]:
    # package.json's dependencies, Pipfile.lock's packages.
    return lambda line: re.search(rf'"{re.escape(name)}"\s*:', line) is not None


def _toml_name(name: str, *, python: bool) -> Callable[[str], bool]:
    # poetry.lock, uv.lock, Cargo.lock: ``name = "NAME"``.
    wanted = _python_name(name) if python else name

    def matches(line: str) -> bool:
        found = re.match(r'\s*name\s*=\s*"([^"]+)"', line)
        return found is not None and (_python_name(found[1]) if python else found[1]) == wanted

    return matches


def _requirement(name: str) -> Callable[[str], bool]:
    # requirements.txt, pyproject.toml's dependency strings: ``NAME==1.0``, ``"NAME>=1"``.
    wanted = _python_name(name)

    def matches(line: str) -> bool:
        found = re.match(r'\s*"?([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:[\[=<>!~;@ ,"]|$)', line)
        return found is not None and _python_name(found[1]) == wanted

    return matches


def _gem_lock(name: str) -> Callable[[str], bool]:
    # Gemfile.lock: ``    NAME (1.0.0)``
    return lambda line: re.match(rf"\s+{re.escape(name)} \(", line) is not None


#: Ecosystem -> (file, how a line names the package), most precise first.
_MANIFESTS: Mapping[str, tuple[tuple[str, Callable[[str], Callable[[str], bool]]], ...]] = {
    "npm": (
        ("package-lock.json", _npm_lock),
        ("npm-shrinkwrap.json", _npm_lock),
        ("yarn.lock", _yarn_lock),
        ("pnpm-lock.yaml", _pnpm_lock),
        ("package.json", _json_key),
    ),
    "pypi": (
        ("poetry.lock", lambda name: _toml_name(name, python=True)),
        ("uv.lock", lambda name: _toml_name(name, python=True)),
        ("Pipfile.lock", _json_key),
        ("requirements.txt", _requirement),
        ("pyproject.toml", _requirement),
    ),
    "cargo": (
        ("Cargo.lock", lambda name: _toml_name(name, python=False)),
        ("Cargo.toml", lambda name: lambda line: re.match(rf"\s*{re.escape(name)}\s*=", line) is not None),
    ),
    "gem": (("Gemfile.lock", _gem_lock), ("Gemfile", lambda name: lambda line: f"gem '{name}'" in line)),
}


def repository_root(cwd: str) -> Path:
    """The repository the build ran in: the nearest directory at or above ``cwd`` with ``.git``
    (the build may run in a subdirectory), else ``cwd`` itself."""
    start = Path(cwd)
    for directory in (start, *start.parents):
        if (directory / ".git").exists():
            return directory
    return start


def package_location(root: Path, cwd: str, purl: str | None, package: str | None) -> Location | None:
    """The first line, in the build's directory's lockfiles and manifests, that names the package
    (``purl`` says its ecosystem; without one every ecosystem's files are searched)."""
    name = _package_name(purl, package)
    if name is None:
        return None
    ecosystem = purl.split(":", 1)[1].split("/", 1)[0] if purl and purl.startswith("pkg:") else None
    for kind, files in _MANIFESTS.items():
        if ecosystem is not None and ecosystem != kind:
            continue
        for file_name, matcher in files:
            path = Path(cwd) / file_name
            line = _first_line(path, matcher(name))
            if line is not None:
                return Location(_relative(root, path), line)
    return None


def ci_location(root: Path, job: Mapping[str, str]) -> Location:
    """The CI configuration that ran the job: GitHub's workflow file (from ``GITHUB_WORKFLOW_REF``,
    ``owner/repo/.github/workflows/ci.yml@refs/heads/main``), GitLab's pipeline file, else the
    directory of GitHub's workflows."""
    ref = job.get("GITHUB_WORKFLOW_REF", "")
    repository = job.get("GITHUB_REPOSITORY", "")
    if ref and repository and ref.startswith(repository + "/"):
        return Location(ref[len(repository) + 1 :].split("@", 1)[0], None)
    if job.get("provider") == "gitlab" or (root / ".gitlab-ci.yml").is_file():
        return Location(".gitlab-ci.yml", None)
    return Location(".github/workflows", None)


def _package_name(purl: str | None, package: str | None) -> str | None:
    """``@scope/name`` from ``@scope/name@1.0.0`` (the last ``@`` starts the version)."""
    if package:
        return package.rsplit("@", 1)[0] if package.rfind("@") > 0 else package
    if purl and purl.startswith("pkg:"):
        tail = purl.split("/", 1)[1] if "/" in purl else ""
        return tail.split("@", 1)[0].replace("%40", "@") or None
    return None


def _first_line(path: Path, matches: Callable[[str], bool]) -> int | None:
    try:
        if not path.is_file() or path.stat().st_size > _MAX_BYTES:
            return None
        with path.open(encoding="utf-8", errors="replace") as stream:
            for number, line in enumerate(stream, start=1):
                if matches(line):
                    return number
    except OSError:
        return None
    return None


def _relative(root: Path, path: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return os.path.relpath(path, root).replace(os.sep, "/")
