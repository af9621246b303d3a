"""Yarn: ``yarn config list --json`` for Yarn 1 (its own settings and the npm ones it merges),
``yarn config --json`` for Yarn 2+ (Berry); the .yarnrc files when yarn is absent."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import yaml

from ciwatch.registries._base import (
    Context,
    RegistrySource,
    ancestors,
    display_path,
    log,
    read_text,
    source_for,
)
from ciwatch.registries.npm import registry_settings

ECOSYSTEM = "yarn"

#: Corepack must not download a yarn release just to answer; Berry must not phone home.
QUIET_ENV = {"COREPACK_ENABLE_NETWORK": "0", "COREPACK_ENABLE_DOWNLOAD_PROMPT": "0", "YARN_ENABLE_TELEMETRY": "0"}

#: Berry settings whose value is a registry URL.
_BERRY_URL_KEYS = ("npmRegistryServer", "npmPublishRegistry")


def discover(ctx: Context) -> list[RegistrySource]:
    yarn = ctx.which("yarn")
    if yarn is None:
        found = _from_files(ctx)
    else:
        version = ctx.output([yarn, "--version"], env=QUIET_ENV)
        if version is None:
            return []
        version = version.strip()
        if version.startswith("1."):
            out = ctx.output([yarn, "config", "list", "--json"], env=QUIET_ENV)
            found = parse_yarn1_config(out, f"yarn {version}") if out else []
        else:
            out = ctx.output([yarn, "config", "--json"], env=QUIET_ENV)
            found = parse_berry_config(out, f"yarn {version}") if out else []
    return [s for s in found if s is not None]


def _json_lines(text: str) -> Iterator[object]:
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            yield json.loads(line)
        except json.JSONDecodeError:
            log.debug("yarn: not a JSON line: %.100s", line)


def parse_yarn1_config(text: str, tool: str) -> list[RegistrySource | None]:
    """Yarn 1 prints an ``inspect`` object for its own config, then one for npm's."""
    found: list[RegistrySource | None] = []
    inspected = [m for m in _json_lines(text) if isinstance(m, dict) and m.get("type") == "inspect"]
    for index, message in enumerate(inspected):
        data = message.get("data")
        if not isinstance(data, dict):
            continue
        part = "yarn config list" if index == 0 else "yarn config list, npm part"
        for key, url in registry_settings(data):
            found.append(source_for(ECOSYSTEM, f"{part} ({key}, {tool})", url))
    return found


def berry_registry_urls(key: str, value: object) -> Iterator[tuple[str, str]]:
    """``(setting, url)`` for the registry URLs in one Berry setting's value."""
    if key in _BERRY_URL_KEYS and isinstance(value, str) and value:
        yield key, value
    elif key == "npmScopes" and isinstance(value, dict):
        for scope, settings in value.items():
            if isinstance(settings, dict):
                for inner in _BERRY_URL_KEYS:
                    url = settings.get(inner)
                    if isinstance(url, str) and url:
                        yield f"npmScopes.{scope}.{inner}", url
    elif key == "npmRegistries" and isinstance(value, dict):
        for url in value:
            if isinstance(url, str):
                yield key, url


def parse_berry_config(text: str, tool: str) -> list[RegistrySource | None]:
    """Berry prints NDJSON, one ``{"key", "effective", "source", …}`` object per setting."""
    found: list[RegistrySource | None] = []
    for message in _json_lines(text):
        if not isinstance(message, dict) or not isinstance(message.get("key"), str):
            continue
        origin = message.get("source")
        where = f"from {origin}" if isinstance(origin, str) and origin else "default"
        for setting, url in berry_registry_urls(message["key"], message.get("effective")):
            found.append(source_for(ECOSYSTEM, f"yarn config ({setting}, {where}, {tool})", url))
    return found


def _from_files(ctx: Context) -> list[RegistrySource | None]:
    """Without yarn: the .yarnrc.yml files (Berry) and .yarnrc files (Yarn 1) up the tree and
    in the home directory, and ``YARN_NPM_REGISTRY_SERVER``; yarn's defaults stay unknown."""
    found: list[RegistrySource | None] = []
    directories = list(ancestors(ctx.project_dir))
    home = ctx.home()
    if home is not None and home not in directories:
        directories.append(home)
    rc_name = ctx.env.get("YARN_RC_FILENAME") or ".yarnrc.yml"
    for directory in directories:
        found += _from_berry_file(ctx, directory / rc_name)
        found += _from_yarn1_file(ctx, directory / ".yarnrc")
    for variable in ("YARN_NPM_REGISTRY_SERVER", "YARN_NPM_PUBLISH_REGISTRY", "YARN_REGISTRY"):
        value = ctx.env.get(variable)
        if value:
            found.append(source_for(ECOSYSTEM, variable, value))
    return found


def _from_berry_file(ctx: Context, path: Path) -> list[RegistrySource | None]:
    text = read_text(path)
    if text is None:
        return []
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        log.debug("%s: %s", path, error)
        return []
    if not isinstance(data, dict):
        return []
    shown = display_path(path, ctx.project_dir)
    return [
        source_for(ECOSYSTEM, f"{shown} ({setting})", url)
        for key, value in data.items()
        for setting, url in berry_registry_urls(str(key), value)
    ]


def _from_yarn1_file(ctx: Context, path: Path) -> list[RegistrySource | None]:
    text = read_text(path)
    if text is None:
        return []
    settings: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, _, value = line.partition(" ")
        settings[key.strip("\"'")] = value.strip().strip("\"'")
    shown = display_path(path, ctx.project_dir)
    return [source_for(ECOSYSTEM, f"{shown} ({key})", url) for key, url in registry_settings(settings)]
