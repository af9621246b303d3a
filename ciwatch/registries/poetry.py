"""poetry: ``[[tool.poetry.source]]`` and git/URL dependencies in pyproject.toml, the
repositories of poetry's config.toml and ``POETRY_REPOSITORIES_<NAME>_URL``.

poetry's implicit default is pip's default index (learned from pip); poetry drops it when a
primary (or legacy ``default``) source is declared and no source is named ``pypi``.
Looked at only when poetry is on PATH or the project uses it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ciwatch.registries import pip
from ciwatch.registries._base import (
    Context,
    RegistrySource,
    display_path,
    load_toml,
    present,
    source_for,
    tool_table,
)

ECOSYSTEM = "poetry"

_REPOSITORY_ENV = re.compile(r"^POETRY_REPOSITORIES_([A-Z0-9_]+)_URL$")


def uses_poetry(ctx: Context) -> bool:
    return (
        ctx.which("poetry") is not None
        or present(ctx.project_dir / "poetry.lock")
        or tool_table(ctx, "poetry") is not None
    )


def discover(ctx: Context) -> list[RegistrySource]:
    if not uses_poetry(ctx):
        return []
    found: list[RegistrySource | None] = []
    table = tool_table(ctx, "poetry") or {}
    shown = display_path(ctx.project_dir / "pyproject.toml", ctx.project_dir)
    sources = [s for s in table.get("source", []) if isinstance(s, dict)]
    for source in sources:
        if isinstance(source.get("url"), str):
            found.append(
                source_for(ECOSYSTEM, f"{shown} (tool.poetry.source {source.get('name', '?')})", source["url"])
            )
    for setting, url in _dependency_urls(table):
        found.append(source_for(ECOSYSTEM, f"{shown} ({setting})", url))
    config = _config_file(ctx)
    if config is not None:
        repositories = load_toml(config).get("repositories", {})
        if isinstance(repositories, dict):
            for name, repository in repositories.items():
                if isinstance(repository, dict) and isinstance(repository.get("url"), str):
                    found.append(source_for(ECOSYSTEM, f"{config} (repositories.{name})", repository["url"]))
    for variable, value in ctx.env.items():
        if _REPOSITORY_ENV.match(variable) and value:
            found.append(source_for(ECOSYSTEM, variable, value))
    if not _replaces_default(sources):
        found += pip.default_index(ctx, ECOSYSTEM)
    return [s for s in found if s is not None]


def _replaces_default(sources: list[dict[str, Any]]) -> bool:
    if any(str(s.get("name", "")).lower() == "pypi" for s in sources):
        return False
    return any(s.get("priority") in ("primary", "default") or s.get("default") is True for s in sources)


def _dependency_urls(table: dict[str, Any]) -> Iterator[tuple[str, str]]:
    groups: list[tuple[str, object]] = [("dependencies", table.get("dependencies"))]
    group_tables = table.get("group")
    if isinstance(group_tables, dict):
        for name, group in group_tables.items():
            if isinstance(group, dict):
                groups.append((f"group.{name}.dependencies", group.get("dependencies")))
    for where, dependencies in groups:
        if not isinstance(dependencies, dict):
            continue
        for package, spec in dependencies.items():
            for entry in spec if isinstance(spec, list) else [spec]:
                if isinstance(entry, dict):
                    for key in ("git", "url"):
                        if isinstance(entry.get(key), str):
                            yield f"{where}.{package}.{key}", entry[key]


def _config_file(ctx: Context) -> Path | None:
    explicit = ctx.env.get("POETRY_CONFIG_DIR")
    if explicit:
        return Path(explicit) / "config.toml"
    xdg = ctx.env.get("XDG_CONFIG_HOME")
    if xdg:
        return Path(xdg) / "pypoetry" / "config.toml"
    home = ctx.home()
    return home / ".config" / "pypoetry" / "config.toml" if home is not None else None
