"""`npm ci` of a small real project through the redirect proxy, against the registry npm is
configured for: every request is recorded, and every tarball that came through has the
SHA-512 its lockfile pins. The registry's host is never written here: npm says what it is."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ciwatch.record import read_record
from ciwatch.record.events import EgressFlow, RegistryAllowed

pytestmark = [pytest.mark.public_registry, pytest.mark.npm]

DEPENDENCIES = {"is-number": "7.0.0", "ms": "2.1.3", "escape-string-regexp": "4.0.0", "picocolors": "1.0.0"}


def _npm_env(tmp_path: Path) -> dict[str, str]:
    return {
        **os.environ,
        "npm_config_cache": str(tmp_path / "cache"),  # empty: npm ci downloads every tarball
        "npm_config_update_notifier": "false",
        "npm_config_audit": "false",
        "npm_config_fund": "false",
    }


def test_npm_ci_through_the_proxy_records_every_tarball_with_its_lockfile_integrity(tmp_path):
    project = tmp_path / "project"
    project.mkdir()
    manifest = {"name": "public-fixture", "version": "1.0.0", "private": True, "dependencies": DEPENDENCIES}
    (project / "package.json").write_text(json.dumps(manifest))
    env = _npm_env(tmp_path)
    lock = subprocess.run(
        ["npm", "install", "--package-lock-only"], cwd=project, env=env, capture_output=True, text=True, timeout=300
    )
    assert lock.returncode == 0, lock.stderr
    lockfile = json.loads((project / "package-lock.json").read_text())
    integrities = {
        path: entry["integrity"] for path, entry in lockfile["packages"].items() if path and "integrity" in entry
    }
    assert len(integrities) == len(DEPENDENCIES)

    out = tmp_path / "out"
    done = subprocess.run(
        [sys.executable, "-m", "ciwatch", "run", "--net", "redirect", "--out", str(out), "--", "npm", "ci"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    record = read_record(out)
    flows = [item.event for item in record.events if isinstance(item.event, EgressFlow)]
    assert flows and all(f.error is None and f.status == 200 for f in flows), [f for f in flows if f.status != 200]
    downloaded = {f.sha512 for f in flows if f.sha512}
    for path, integrity in integrities.items():
        algorithm, _, digest = integrity.partition("-")
        assert algorithm == "sha512", integrity
        assert base64.b64decode(digest).hex() in downloaded, f"{path}: no recorded download has {integrity}"
    registry = subprocess.run(
        ["npm", "config", "get", "registry"], cwd=project, env=env, capture_output=True, text=True
    )
    registry_host = registry.stdout.strip().split("//", 1)[1].split("/", 1)[0]
    assert {f.host for f in flows} == {registry_host}
    assert registry_host in {e.host for e in (i.event for i in record.events) if isinstance(e, RegistryAllowed)}
    verdict = json.loads((out / "verdict.json").read_text())
    assert "unfamiliar-egress" not in verdict["counts"], verdict
