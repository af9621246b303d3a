"""bun: ``bunfig.toml`` (``[install] registry`` and ``[install.scopes]``) in the project and
the home directory, ``BUN_CONFIG_REGISTRY``, the .npmrc files and ``npm_config_*`` settings bun
also reads, and its built-in default. bun has no command that prints them.

bun's default registry is npm's (bun's documentation says so, and names no other): when bun is
on the job's PATH, npm is asked for its own default, with no config file of any kind read, so
that the answer is what npm was built with. Without npm on the machine, bun's default can't be
learned and its requests are reported like any other host's."""

from __future__ import annotations

import os
import tempfile
import tomllib
from pathlib import Path

from ciwatch.registries import npm
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
    found += npm.from_npmrc_files(ctx, ECOSYSTEM)
    if ctx.which("bun"):
        found.append(_default(ctx))
    return [s for s in found if s is not None]


def _default(ctx: Context) -> RegistrySource | None:
    tool = ctx.which("npm")
    if tool is None:
        return None
    # An empty directory and no user or global config: only npm's built-in value (or the job's
    # own npm_config_registry, which bun reads too) answers.
    # (Files that don't exist: npm refuses one file named twice, /dev/null for both.)
    with tempfile.TemporaryDirectory(prefix="ciwatch-bun-") as empty:
        no_files = {
            **npm.QUIET_ENV,
            "npm_config_userconfig": os.path.join(empty, "user-npmrc"),
            "npm_config_globalconfig": os.path.join(empty, "global-npmrc"),
        }
        out = ctx.output([tool, "config", "get", "registry"], cwd=Path(empty), env=no_files)
    url = (out or "").strip()
    return source_for(ECOSYSTEM, "bun's default registry, as npm knows it", url) if url else None


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
