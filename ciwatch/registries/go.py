"""go: ``go env -json`` for GOPROXY, GOSUMDB and the private-module settings (the defaults
come from the toolchain's own go.env, so go's answer includes them); without go, only the
variables the job sets."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping

from ciwatch.registries._base import Context, RegistrySource, host_source, log, source_for, split_urls

ECOSYSTEM = "go"

_VARIABLES = ("GOPROXY", "GOSUMDB", "GONOPROXY", "GONOSUMDB", "GOPRIVATE", "GOINSECURE", "GOFLAGS", "GOTOOLCHAIN")


def discover(ctx: Context) -> list[RegistrySource]:
    go = ctx.which("go")
    if go is None:
        settings = {name: ctx.env[name] for name in _VARIABLES if ctx.env.get(name)}
        return parse_go_env(settings, "", lambda name: name)
    # A neutral directory: inside a module whose go line asks for a newer toolchain, `go env`
    # would download that toolchain first (GOTOOLCHAIN=auto).
    out = ctx.output([go, "env", "-json", "GOVERSION", *_VARIABLES], cwd=ctx.scratch)
    if out is None:
        return []
    try:
        data = json.loads(out)
    except json.JSONDecodeError as error:
        log.debug("go env -json: %s", error)
        return []
    if not isinstance(data, dict):
        return []
    settings = {k: v for k, v in data.items() if isinstance(v, str)}
    version = settings.pop("GOVERSION", "") or "go"
    return parse_go_env(settings, version, lambda name: f"go env {name}")


def parse_go_env(settings: Mapping[str, str], version: str, label: Callable[[str], str]) -> list[RegistrySource]:
    """Registries in go's settings; ``label(name)`` says where a setting came from."""
    suffix = f" ({version})" if version else ""
    found: list[RegistrySource | None] = []
    for entry in split_urls(settings.get("GOPROXY", "")):
        if entry not in ("direct", "off"):
            found.append(source_for(ECOSYSTEM, f"{label('GOPROXY')}{suffix}", entry))
    sumdb = settings.get("GOSUMDB", "").split()
    if sumdb and sumdb[0] != "off":
        # "<name>[+<key>] [<url>]": without a URL the database is reached at https://<name>.
        where = f"{label('GOSUMDB')}{suffix}"
        if len(sumdb) > 1:
            found.append(source_for(ECOSYSTEM, where, sumdb[1]))
        else:
            found.append(host_source(ECOSYSTEM, where, sumdb[0].split("+", 1)[0]))
    for name in ("GOPRIVATE", "GONOPROXY"):
        # Module path patterns fetched straight from their version control host.
        for pattern in settings.get(name, "").split(","):
            first = pattern.strip().split("/", 1)[0]
            if first and "." in first and not re.search(r"[*?\[\]]", first):
                found.append(host_source(ECOSYSTEM, f"{label(name)}{suffix}, fetched directly", first))
    return [s for s in found if s is not None]
