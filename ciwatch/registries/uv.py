"""uv: ``[tool.uv]`` in pyproject.toml, uv.toml (project, user, system), ``UV_*`` variables.

uv ignores pip.conf. Its implicit default index is the same as pip's, so when nothing
replaces it, the default is the one pip reports (:func:`ciwatch.registries.pip.default_index`).
Looked at only when uv is on PATH or the project uses it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
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
    split_urls,
    tool_table,
)

ECOSYSTEM = "uv"

#: Variables whose URLs uv uses; the first two replace the default index.
_ENV = (
    ("UV_DEFAULT_INDEX", True),
    ("UV_INDEX_URL", True),
    ("UV_INDEX", False),
    ("UV_EXTRA_INDEX_URL", False),
    ("UV_FIND_LINKS", False),
    ("UV_PYTHON_INSTALL_MIRROR", False),
    ("UV_PYPY_INSTALL_MIRROR", False),
)


def uses_uv(ctx: Context) -> bool:
    return (
        ctx.which("uv") is not None
        or present(ctx.project_dir / "uv.lock")
        or present(ctx.project_dir / "uv.toml")
        or tool_table(ctx, "uv") is not None
    )


def discover(ctx: Context) -> list[RegistrySource]:
    if not uses_uv(ctx):
        return []
    found: list[RegistrySource | None] = []
    replaced_default = False
    for path, table in _config_tables(ctx):
        shown = display_path(path, ctx.project_dir)
        for setting, url, is_default in settings_urls(table):
            found.append(source_for(ECOSYSTEM, f"{shown} ({setting})", url))
            replaced_default |= is_default
    for variable, replaces in _ENV:
        for entry in split_urls(ctx.env.get(variable, "")):
            found.append(source_for(ECOSYSTEM, variable, _without_index_name(entry)))
            replaced_default |= replaces
    if not replaced_default:
        found += pip.default_index(ctx, ECOSYSTEM)
    return [s for s in found if s is not None]


def _without_index_name(entry: str) -> str:
    """``UV_INDEX`` entries may be ``name=url``."""
    name, sep, rest = entry.partition("=")
    return rest if sep and "://" not in name else entry


def _config_tables(ctx: Context) -> Iterator[tuple[Path, Mapping[str, Any]]]:
    project = tool_table(ctx, "uv")
    if project is not None:
        yield ctx.project_dir / "pyproject.toml", project
    files = [ctx.project_dir / "uv.toml"]
    explicit = ctx.env.get("UV_CONFIG_FILE")
    if explicit:
        files.append(Path(explicit))
    else:
        xdg = ctx.env.get("XDG_CONFIG_HOME")
        home = ctx.home()
        if xdg:
            files.append(Path(xdg) / "uv" / "uv.toml")
        elif home is not None:
            files.append(home / ".config" / "uv" / "uv.toml")
        for directory in (ctx.env.get("XDG_CONFIG_DIRS") or "/etc/xdg").split(":"):
            if directory:
                files.append(Path(directory) / "uv" / "uv.toml")
        files.append(Path("/etc/uv/uv.toml"))
    for path in files:
        table = load_toml(path)
        if table:
            yield path, table


def settings_urls(table: Mapping[str, Any]) -> Iterator[tuple[str, str, bool]]:
    """``(setting, url, replaces_default_index)`` for the URLs in a uv settings table."""
    indexes = table.get("index")
    if isinstance(indexes, list):
        for index in indexes:
            if isinstance(index, dict) and isinstance(index.get("url"), str):
                name = index.get("name", "?")
                yield f"index {name}", index["url"], index.get("default") is True
    for scope, prefix in ((table, ""), (table.get("pip"), "pip.")):
        if not isinstance(scope, dict):
            continue
        for key in ("index-url", "extra-index-url", "find-links", "python-install-mirror", "pypy-install-mirror"):
            value = scope.get(key)
            values = value if isinstance(value, list) else [value]
            for url in values:
                if isinstance(url, str):
                    yield f"{prefix}{key}", url, key == "index-url"
    sources = table.get("sources")
    if isinstance(sources, dict):
        for package, spec in sources.items():
            for entry in spec if isinstance(spec, list) else [spec]:
                if isinstance(entry, dict):
                    for key in ("git", "url"):
                        if isinstance(entry.get(key), str):
                            yield f"sources.{package}.{key}", entry[key], False
