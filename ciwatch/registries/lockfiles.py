"""Lockfiles and requirements files: the hosts the project's packages resolve to.

Each source names the file, the line where the host first appears in it (where the format
makes that cheap) and the field it came from: ``yarn.lock:12 (resolved)``. Only the
project's own directory is read (plus the files a requirements file includes); workspaces
share the lockfile at their root.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import NamedTuple

from ciwatch.registries._base import (
    Context,
    RegistrySource,
    display_path,
    expand_vars,
    host_of,
    log,
    note_file,
    public_url,
    read_text,
)


class Hit(NamedTuple):
    """A URL in a file: what it is (``resolved``, ``source registry``…) and its line, if known."""

    url: str
    kind: str
    line: int | None = None


#: A URL, or an scp-like git remote (``git@host.name:path``; the host must have a dot, so
#: that yarn's ``name@npm:1.0.0`` is not taken for one).
_URL = re.compile(
    r"(?:[a-zA-Z][a-zA-Z0-9+.-]*://|[A-Za-z0-9._~-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+:(?!//))[^\s\"',}\]]+"
)


def discover(ctx: Context) -> list[RegistrySource]:
    found: list[RegistrySource] = []
    for name, (ecosystem, parse) in LOCKFILES.items():
        path = ctx.project_dir / name
        text = read_text(path)
        if text is None:
            continue
        try:
            hits = list(parse(text))
        except (ValueError, TypeError, AttributeError) as error:  # malformed: keep what others give
            log.debug("%s: cannot parse: %s", path, error)
            continue
        found += sources_from_hits(ecosystem, name, hits)
    found += requirements(ctx)
    return found


def sources_from_hits(ecosystem: str, file_label: str, hits: list[Hit]) -> list[RegistrySource]:
    """One source per (host, kind) of a file: where the host first appears."""
    found: list[RegistrySource] = []
    seen: set[tuple[str, str]] = set()
    for hit in hits:
        host = host_of(hit.url)
        if host is None or (host, hit.kind) in seen:
            continue
        seen.add((host, hit.kind))
        where = f"{file_label}:{hit.line}" if hit.line is not None else file_label
        found.append(RegistrySource(host, ecosystem, f"{where} ({hit.kind})", public_url(hit.url)))
    return found


def npm_lock(text: str) -> Iterator[Hit]:
    """package-lock.json / npm-shrinkwrap.json: ``resolved`` of ``packages`` (v2, v3) and of
    the nested ``dependencies`` (v1, also kept in v2)."""
    data = json.loads(text)
    packages = data.get("packages")
    if isinstance(packages, dict):
        for package in packages.values():
            if isinstance(package, dict) and isinstance(package.get("resolved"), str):
                yield Hit(package["resolved"], "resolved")
    stack = [data.get("dependencies")]
    while stack:
        dependencies = stack.pop()
        if not isinstance(dependencies, dict):
            continue
        for dependency in dependencies.values():
            if isinstance(dependency, dict):
                if isinstance(dependency.get("resolved"), str):
                    yield Hit(dependency["resolved"], "resolved")
                stack.append(dependency.get("dependencies"))


def _field_urls(text: str, field: re.Pattern[str]) -> Iterator[Hit]:
    """URLs in the values of the lines whose field matches ``field`` (group 1 names it)."""
    for number, line in enumerate(text.splitlines(), 1):
        match = field.search(line)
        if match:
            for url in _URL.findall(line[match.end(1) :]):
                yield Hit(url, match.group(1), number)


_YARN_FIELD = re.compile(r"^\s+(resolved|resolution)\b")


def yarn_lock(text: str) -> Iterator[Hit]:
    """yarn.lock: Yarn 1's ``resolved "URL#sha1"``; Berry's ``resolution: "name@URL"`` (its
    registry packages carry no URL, only ``name@npm:version``)."""
    return _field_urls(text, _YARN_FIELD)


_PNPM_FIELD = re.compile(r"\b(tarball|repo):")


def pnpm_lock(text: str) -> Iterator[Hit]:
    """pnpm-lock.yaml: ``resolution: {tarball: URL}`` and git ``repo: URL``."""
    return _field_urls(text, _PNPM_FIELD)


def poetry_lock(text: str) -> Iterator[Hit]:
    """poetry.lock: ``url`` of each ``[package.source]`` (legacy indexes, git, URLs)."""
    section = ""
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if stripped.startswith("["):
            section = stripped
            continue
        match = re.match(r'^url\s*=\s*"([^"]+)"', stripped)
        if match and section == "[package.source]":
            yield Hit(match.group(1), "package.source", number)


_UV_FIELD = re.compile(r'\b(registry|git|url)\s*=\s*"([^"]+)"')


def uv_lock(text: str) -> Iterator[Hit]:
    """uv.lock: ``source = { registry = … }`` / ``{ git = … }`` and the ``url`` of each sdist,
    wheel and direct URL (the file hosts)."""
    for number, line in enumerate(text.splitlines(), 1):
        for match in _UV_FIELD.finditer(line):
            kind = "url" if match.group(1) == "url" else f"source {match.group(1)}"
            yield Hit(match.group(2), kind, number)


def pipfile_lock(text: str) -> Iterator[Hit]:
    """Pipfile.lock: ``_meta.sources[].url`` and git / file URLs of packages."""
    data = json.loads(text)
    for source in data.get("_meta", {}).get("sources", []):
        if isinstance(source, dict) and isinstance(source.get("url"), str):
            yield Hit(source["url"], f"source {source.get('name', '?')}")
    for group in ("default", "develop"):
        packages = data.get(group)
        if isinstance(packages, dict):
            for package in packages.values():
                if isinstance(package, dict):
                    for key in ("git", "file"):
                        if isinstance(package.get(key), str):
                            yield Hit(package[key], key)


def pipfile(text: str) -> Iterator[Hit]:
    """Pipfile: ``[[source]] url``."""
    section = ""
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if stripped.startswith("["):
            section = stripped
            continue
        match = re.match(r"""^url\s*=\s*["']([^"']+)["']""", stripped)
        if match and section == "[[source]]":
            yield Hit(match.group(1), "source", number)


_CARGO_SOURCE = re.compile(r'^source\s*=\s*"([^"]+)"')


def cargo_lock(text: str) -> Iterator[Hit]:
    """Cargo.lock: ``source = "registry+URL"`` / ``"sparse+URL"`` / ``"git+URL?…#rev"``."""
    for number, line in enumerate(text.splitlines(), 1):
        match = _CARGO_SOURCE.match(line)
        if match:
            value = match.group(1)
            kind = value.split("+", 1)[0] if "+" in value.split("://", 1)[0] else "source"
            yield Hit(value, kind, number)


def gemfile_lock(text: str) -> Iterator[Hit]:
    """Gemfile.lock: ``remote:`` of the GEM, GIT and PLUGIN SOURCE sections."""
    for number, line in enumerate(text.splitlines(), 1):
        match = re.match(r"^\s+remote:\s+(\S+)", line)
        if match:
            yield Hit(match.group(1), "remote", number)


LOCKFILES: Mapping[str, tuple[str, Callable[[str], Iterator[Hit]]]] = {
    "package-lock.json": ("npm", npm_lock),
    "npm-shrinkwrap.json": ("npm", npm_lock),
    "yarn.lock": ("yarn", yarn_lock),
    "pnpm-lock.yaml": ("pnpm", pnpm_lock),
    "poetry.lock": ("poetry", poetry_lock),
    "uv.lock": ("uv", uv_lock),
    "Pipfile.lock": ("pip", pipfile_lock),
    "Pipfile": ("pip", pipfile),
    "Cargo.lock": ("cargo", cargo_lock),
    "Gemfile.lock": ("gem", gemfile_lock),
}
"""File name -> (ecosystem, parser)."""


# -- requirements files -----------------------------------------------------------------------

_URL_OPTIONS = {
    "-i": "--index-url",
    "--index-url": "--index-url",
    "--extra-index-url": "--extra-index-url",
    "-f": "--find-links",
    "--find-links": "--find-links",
}
_INCLUDE_OPTIONS = ("-r", "--requirement", "-c", "--constraint")
_COMMENT = re.compile(r"(^|\s)#.*$")


def requirement_files(project_dir: Path) -> list[Path]:
    """``*requirements*.txt`` at the root and the ``.txt`` files of a ``requirements/`` directory."""
    note_file(project_dir)  # a requirements file that appears changes the answer
    note_file(project_dir / "requirements")
    files = sorted(project_dir.glob("*requirements*.txt"))
    files += sorted((project_dir / "requirements").glob("*.txt"))
    return [f for f in files if f.is_file()]


def requirements(ctx: Context) -> list[RegistrySource]:
    found: list[RegistrySource] = []
    seen: set[Path] = set()
    for path in requirement_files(ctx.project_dir):
        found += _requirements_file(ctx, path, seen)
    return found


def _requirements_file(ctx: Context, path: Path, seen: set[Path]) -> list[RegistrySource]:
    resolved = path.resolve()
    if resolved in seen:
        return []
    seen.add(resolved)
    text = read_text(path)
    if text is None:
        return []
    hits: list[Hit] = []
    includes: list[Path] = []
    for number, line in _logical_lines(text):
        for hit_or_include in parse_requirement_line(expand_vars(line, ctx.env), number):
            if isinstance(hit_or_include, Hit):
                hits.append(hit_or_include)
            elif "://" in hit_or_include:
                hits.append(Hit(hit_or_include, "included file", number))
            else:
                includes.append(path.parent / hit_or_include)
    found = sources_from_hits("pip", display_path(resolved, ctx.project_dir), hits)
    for include in includes:
        found += _requirements_file(ctx, include, seen)
    return found


def _logical_lines(text: str) -> Iterator[tuple[int, str]]:
    """Lines with comments removed and backslash continuations joined, numbered where they start."""
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), 1):
        if not pending:
            start = number
        line = _COMMENT.sub("", raw)
        if line.endswith("\\"):
            pending.append(line[:-1])
            continue
        pending.append(line)
        yield start, " ".join(pending).strip()
        pending = []
    if pending:
        yield start, " ".join(pending).strip()


def parse_requirement_line(line: str, number: int) -> Iterator[Hit | str]:
    """The URLs of one requirements line (as Hits) and the files it includes (as strings)."""
    tokens = line.split()
    index = 0
    while index < len(tokens):
        token = tokens[index]
        option, eq, inline = token.partition("=")
        value: str | None = None
        if option in _URL_OPTIONS or option in _INCLUDE_OPTIONS:
            if eq:
                value = inline
            elif index + 1 < len(tokens):
                index += 1
                value = tokens[index]
            if value is not None:
                if option in _URL_OPTIONS:
                    yield Hit(value, _URL_OPTIONS[option], number)
                else:
                    yield value
        elif not token.startswith("-") or (eq and "://" in inline):
            for url in _URL.findall(inline if token.startswith("-") else token):
                yield Hit(url.split("#", 1)[0], "direct url", number)
        index += 1
