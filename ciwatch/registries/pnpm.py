"""pnpm: ``pnpm config list --json`` (registry and scoped registries; pnpm adds its own
defaults, such as the JSR scope, to the answer)."""

from __future__ import annotations

import json

from ciwatch.registries._base import Context, RegistrySource, log, source_for
from ciwatch.registries.npm import registry_settings
from ciwatch.registries.yarn import QUIET_ENV

ECOSYSTEM = "pnpm"


def discover(ctx: Context) -> list[RegistrySource]:
    pnpm = ctx.which("pnpm")
    if pnpm is None:
        return []
    out = ctx.output([pnpm, "config", "list", "--json"], env={**QUIET_ENV, "npm_config_update_notifier": "false"})
    return parse_pnpm_config(out) if out else []


def parse_pnpm_config(text: str) -> list[RegistrySource]:
    try:
        config = json.loads(text)
    except json.JSONDecodeError as error:
        log.debug("pnpm config list --json: not JSON: %s", error)
        return []
    if not isinstance(config, dict):
        return []
    found = [source_for(ECOSYSTEM, f"pnpm config list ({key})", url) for key, url in registry_settings(config)]
    return [s for s in found if s is not None]
