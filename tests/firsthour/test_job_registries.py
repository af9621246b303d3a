"""`registries: auto` allows the registries of the package managers the build runs, not of
every tool installed on the machine.

Issue: for an npm-only job the allowlist held the Rust, Maven, jsr, Debian and PyPI hosts
because those tools were installed.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path

from ciwatch.facts.ecosystems import Ecosystem
from ciwatch.record.events import RegistryAllowed
from ciwatch.registries import discover_registries
from tests.conftest import require
from tests.support.runner import CiwatchRun


def _family(name: str) -> Ecosystem:
    ecosystem = Ecosystem.named(name)
    assert ecosystem is not None, name
    return ecosystem.packages


def _families(run: CiwatchRun) -> set[Ecosystem]:
    return {_family(event.ecosystem) for event in run.events(RegistryAllowed)}


def test_a_build_that_runs_no_package_manager_is_allowed_no_registry(ciwatch: Callable[..., CiwatchRun]) -> None:
    run = ciwatch("--net", "off", "--", "true")
    assert run.code == 0, run.stderr
    assert run.events(RegistryAllowed) == []


def test_an_npm_job_is_allowed_npms_registries_only(ciwatch: Callable[..., CiwatchRun]) -> None:
    require("npm")
    # What the machine offers: more than npm's (pip is always here, for the tests themselves).
    offered = {_family(source.ecosystem) for source in discover_registries(Path.cwd(), dict(os.environ))}
    assert Ecosystem.PIP in offered and Ecosystem.NPM in offered
    run = ciwatch("--net", "off", "--", "npm", "--version")
    assert run.code == 0, run.stderr
    assert _families(run) == {Ecosystem.NPM}
    assert all("the build ran npm (pid" in event.source for event in run.events(RegistryAllowed))


def test_each_package_manager_run_brings_its_own(ciwatch: Callable[..., CiwatchRun]) -> None:
    require("npm")
    script = f"{sys.executable} -m pip --version >/dev/null && npm --version >/dev/null"
    run = ciwatch("--net", "off", "--", "sh", "-c", script)
    assert run.code == 0, run.stderr
    assert _families(run) == {Ecosystem.PIP, Ecosystem.NPM}
