"""The packages a project itself allows to run install hooks, read from its own files:
npm's ``allowScripts`` (package.json), pnpm's ``onlyBuiltDependencies`` / ``allowBuilds``
(package.json's ``pnpm`` section or pnpm-workspace.yaml), and LavaMoat's ``allowScripts``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def _allowed_keys(value: Any) -> list[str]:
    """Names from a list, or from a mapping whose value is true (``{"pkg": true}``)."""
    if isinstance(value, list):
        return [str(item) for item in value if isinstance(item, str)]
    if isinstance(value, dict):
        return [str(name) for name, allowed in value.items() if allowed is True or allowed == "true"]
    return []


def project_hook_allowlists(project_dir: Path) -> list[tuple[list[str], str]]:
    """(packages, where it was read) for each allowlist the project declares."""
    found: list[tuple[list[str], str]] = []
    manifest = project_dir / "package.json"
    try:
        package = json.loads(manifest.read_text()) if manifest.is_file() else {}
    except (OSError, ValueError):
        package = {}
    if isinstance(package, dict):
        if "allowScripts" in package:
            found.append((_allowed_keys(package["allowScripts"]), "package.json allowScripts"))
        pnpm = package.get("pnpm")
        if isinstance(pnpm, dict):
            for key in ("onlyBuiltDependencies", "allowBuilds"):
                if key in pnpm:
                    found.append((_allowed_keys(pnpm[key]), f"package.json pnpm.{key}"))
        lavamoat = package.get("lavamoat")
        if isinstance(lavamoat, dict) and "allowScripts" in lavamoat:
            found.append((_allowed_keys(lavamoat["allowScripts"]), "package.json lavamoat.allowScripts"))
    workspace = project_dir / "pnpm-workspace.yaml"
    if workspace.is_file():
        import yaml  # here: most projects have no pnpm workspace, and every run reads this

        try:
            data = yaml.safe_load(workspace.read_text()) or {}
        except (OSError, yaml.YAMLError):
            data = {}
        if isinstance(data, dict):
            for key in ("onlyBuiltDependencies", "allowBuilds"):
                if key in data:
                    found.append((_allowed_keys(data[key]), f"pnpm-workspace.yaml {key}"))
    return [(packages, source) for packages, source in found if packages]
