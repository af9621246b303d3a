"""The real-world corpus: real installs of popular packages, from the registries this machine
reaches through their ordinary clients, judged by ``policies/default.yaml`` in the default mode
(trace plus the redirect proxy). A monitor that cries wolf on the most common hooks gets switched
off, so every package here must pass with no counted finding of medium or higher.

Which registry a client reaches is the client's business (its own defaults and configuration);
nothing here names one. A package whose hook needs more of the internet than the registries
(a binary from a project's release page, say) can't install here: the test lists it with that
reason (``Unreachable``) instead of leaving it out silently."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support.runner import CiwatchRun, run_ciwatch

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_POLICY = ROOT / "policies" / "default.yaml"

#: Every corpus test reaches a public registry and runs once per CI run (not once per Python).
CORPUS_MARKS = [pytest.mark.public_registry, pytest.mark.corpus]

_LOUD = {"medium", "high", "critical"}


@dataclass(frozen=True)
class Unreachable:
    """A popular package left out here, and why: its hook needs a host that is not a registry."""

    package: str
    reason: str


@dataclass
class CorpusRun:
    run: CiwatchRun

    @property
    def verdict(self) -> dict[str, Any]:
        loaded: dict[str, Any] = json.loads((self.run.out_dir / "verdict.json").read_text())
        return loaded

    @property
    def loud(self) -> list[dict[str, Any]]:
        """Counted findings of medium or higher: what would fail or warn a real job."""
        return [f for f in self.verdict["findings"] if f["excepted"] is None and f["severity"] in _LOUD]

    @property
    def not_counted(self) -> list[dict[str, Any]]:
        """Findings the verdict holds with the reason they were not counted (for audit)."""
        return [f for f in self.verdict["findings"] if f["excepted"] is not None]

    def hooks(self) -> set[tuple[str, str, str | None, str]]:
        """(ecosystem, package, version, hook) of every hook that ran."""
        from ciwatch.analysis.tree import ProcessTree

        return {(h.ecosystem, h.package, h.version, h.hook) for h in ProcessTree(self.run.record).hooks}

    def hooked_packages(self) -> set[str]:
        return {package for _, package, _, _ in self.hooks()}

    def explain(self) -> str:
        """What a failing assertion shows: the loud findings, then the end of ciwatch's output."""
        lines = [f"{f['severity']} {f['rule']} {f['package']}: {f['message']}" for f in self.loud]
        return "\n".join([*lines, "--- output (end) ---", self.run.stdout[-2000:], self.run.stderr[-3000:]])


def watch(
    command: list[str],
    cwd: Path,
    out: Path,
    *,
    env: Mapping[str, str] | None = None,
    extra: Iterable[str] = (),
    timeout: float = 1200,
) -> CorpusRun:
    """``ciwatch run --policy policies/default.yaml [extra] -- command`` in ``cwd``."""
    args = ["--policy", str(DEFAULT_POLICY), *extra, "--", *command]
    return CorpusRun(run_ciwatch(args, out, cwd=cwd, env=dict(env or {}), timeout=timeout))


def assert_judged_ordinary(corpus: CorpusRun, expected_hooks: Iterable[str]) -> None:
    """The build succeeded, the packages expected to run hooks did, and nothing loud was counted."""
    assert corpus.run.code == 0, corpus.explain()
    missing = set(expected_hooks) - corpus.hooked_packages()
    assert not missing, f"no hook seen for {sorted(missing)}; hooks seen: {sorted(corpus.hooks())}"
    assert corpus.loud == [], corpus.explain()
    for finding in corpus.not_counted:  # shown with -s / -rP: what a reviewer audits
        print(f"not counted: {finding['severity']} {finding['rule']} {finding['package']}: {finding['excepted']}")
