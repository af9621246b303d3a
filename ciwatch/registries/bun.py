"""bun: ``bunfig.toml`` (``[install] registry`` and ``[install.scopes]``) in the project and
the home directory, and ``BUN_CONFIG_REGISTRY``. bun has no command that prints them."""

from __future__ import annotations

import tomllib
from pathlib import Path

from ciwatch.registries._base import Context, RegistrySource, display_path, log, read_text, source_for

ECOSYSTEM = "bun"


def discover(ctx: Context) -> list[RegistrySource]:
    found: list[RegistrySource | None] = []
    files = [ctx.project_dir / "bunfig.toml"]
    xdg = ctx.env.get("XDG_CONFIG_HOME")
    if xdg:
        files.append(Path(xdg) / ".bunfig.toml")
    home = ctx.home()
    if home is not None:
        files.append(home / ".bunfig.toml")
    for path in files:
        found += _from_bunfig(ctx, path)
    value = ctx.env.get("BUN_CONFIG_REGISTRY")
    if value:
        found.append(source_for(ECOSYSTEM, "BUN_CONFIG_REGISTRY", value))
    return [s for s in found if s is not None]


def _url_of(value: object) -> str | None:
    """A bunfig registry is a URL string or a table ``{ url = "…", token = "…" }``."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and isinstance(value.get("url"), str):
        return str(value["url"])
    return None


def _from_bunfig(ctx: Context, path: Path) -> list[RegistrySource | None]:
    text = read_text(path)
    if text is None:
        return []
    try:
        install = tomllib.loads(text).get("install", {})
    except tomllib.TOMLDecodeError as error:
        log.debug("%s: %s", path, error)
        return []
    if not isinstance(install, dict):
        return []
    shown = display_path(path, ctx.project_dir)
    found: list[RegistrySource | None] = []
    url = _url_of(install.get("registry"))
    if url:
        found.append(source_for(ECOSYSTEM, f"{shown} (install.registry)", url))
    scopes = install.get("scopes", {})
    if isinstance(scopes, dict):
        for scope, value in scopes.items():
            url = _url_of(value)
            if url:
                found.append(source_for(ECOSYSTEM, f"{shown} (install.scopes.{scope})", url))
    return found
