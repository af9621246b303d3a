"""npm: ``npm config list --json`` (registry and scoped registries from every .npmrc and
``npm_config_*`` variable, with npm's own default), or the .npmrc files when npm is absent."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from pathlib import Path

from ciwatch.registries._base import Context, RegistrySource, display_path, expand_vars, log, read_text, source_for

ECOSYSTEM = "npm"

#: Keeps npm from looking for a newer npm while it answers.
QUIET_ENV = {"npm_config_update_notifier": "false"}


def discover(ctx: Context) -> list[RegistrySource]:
    npm = ctx.which("npm")
    found = _from_npm(ctx, npm) if npm else from_npmrc_files(ctx, ECOSYSTEM)
    corepack = ctx.env_get("COREPACK_NPM_REGISTRY")
    if corepack:
        found.append(source_for(ECOSYSTEM, "COREPACK_NPM_REGISTRY", corepack))
    return [s for s in found if s is not None]


def registry_settings(config: Mapping[str, object]) -> Iterator[tuple[str, str]]:
    """``(key, url)`` for ``registry`` and each ``@scope:registry`` of an npm-style config."""
    for key, value in config.items():
        if not isinstance(value, str) or not value:
            continue
        if key == "registry" or (key.startswith("@") and key.endswith(":registry")):
            yield key, value


def env_setting_name(ctx: Context, key: str) -> str | None:
    """The ``npm_config_<key>`` variable of the job that sets ``key``, if one does."""
    wanted = f"npm_config_{key}".lower()
    for name, value in ctx.env.items():
        if value and name.lower() == wanted:
            return name
    return None


def _from_npm(ctx: Context, npm: str) -> list[RegistrySource | None]:
    out = ctx.output([npm, "config", "list", "--json"], env=QUIET_ENV)
    if out is None:
        return []
    try:
        config = json.loads(out)
    except json.JSONDecodeError as error:
        log.debug("npm config list --json: not JSON: %s", error)
        return []
    if not isinstance(config, dict):
        return []
    found: list[RegistrySource | None] = []
    for key, url in registry_settings(config):
        variable = env_setting_name(ctx, key)
        label = f"npm config list ({key}, from {variable})" if variable else f"npm config list ({key})"
        found.append(source_for(ECOSYSTEM, label, url))
    return found


def parse_npmrc(text: str, env: Mapping[str, str]) -> dict[str, str]:
    """The settings of an .npmrc (ini lines ``key=value``), with ``${VAR}`` expanded."""
    settings: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line[0] in "#;" or "=" not in line:
            continue
        key, _, value = line.partition("=")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        settings[expand_vars(key.strip(), env)] = expand_vars(value, env)
    return settings


def npmrc_files(ctx: Context) -> list[Path]:
    """The .npmrc files npm would read, project first (npm's own order of precedence)."""
    files = [ctx.project_dir / ".npmrc"]
    user = ctx.env_get("npm_config_userconfig")
    home = ctx.home()
    if user:
        files.append(Path(user))
    elif home is not None:
        files.append(home / ".npmrc")
    global_config = ctx.env_get("npm_config_globalconfig")
    if global_config:
        files.append(Path(global_config))
    return files


def from_npmrc_files(ctx: Context, ecosystem: str) -> list[RegistrySource | None]:
    """Registries named in the .npmrc files and ``npm_config_*`` variables, read without npm
    (so npm's built-in default is not among them)."""
    found: list[RegistrySource | None] = []
    for path in npmrc_files(ctx):
        text = read_text(path)
        if text is None:
            continue
        for key, url in registry_settings(parse_npmrc(text, ctx.env)):
            found.append(source_for(ecosystem, f"{display_path(path, ctx.project_dir)} ({key})", url))
    for name, value in ctx.env.items():
        lowered = name.lower()
        if not lowered.startswith("npm_config_"):
            continue
        key = lowered[len("npm_config_") :]
        for setting, url in registry_settings({key: value}):
            found.append(source_for(ecosystem, f"{name} ({setting})", url))
    return found
