"""Running package installs under ``ciwatch run`` against the test internet, and judging them.

Shared by the attack re-enactments (tests/test_attacks.py) and the clean installs
(tests/test_clean_installs.py): a fresh npm project, the real npm or pip under ciwatch with a
policy from ``policies/``, the live ``verdict.json``, and ``ciwatch check`` on the same record,
which must agree with it.
"""

from __future__ import annotations

import atexit
import functools
import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from ciwatch.record import read_record
from ciwatch.record.events import Event
from tests.support.internet import TestInternet

REPO = Path(__file__).resolve().parents[2]
POLICIES = REPO / "policies"
DEFAULT_POLICY = POLICIES / "default.yaml"
STRICT_POLICY = POLICIES / "strict.yaml"
#: ``ciwatch run``'s exit code when block mode fails a build that itself succeeded.
POLICY_FAILED = 3

E = TypeVar("E", bound=Event)


@dataclass(frozen=True)
class Watched:
    """One ``ciwatch run``: its exit code, output, and the live verdict."""

    code: int
    stdout: str
    stderr: str
    out: Path
    policy: Path
    mode: str | None
    cwd: Path | None = None
    """Where the command ran (the npm project)."""

    @property
    def output(self) -> str:
        """What the run printed, stdout then stderr (with ``--foreground-scripts``, the hooks' output)."""
        return self.stdout + self.stderr

    def events(self, kind: type[E]) -> list[E]:
        """The record's events of ``kind``, in order."""
        return [item.event for item in read_record(self.out).events if isinstance(item.event, kind)]

    @property
    def verdict(self) -> dict[str, Any]:
        path = self.out / "verdict.json"
        assert path.exists(), f"no verdict.json (exit {self.code}):\n{self.stderr[-3000:]}"
        result: dict[str, Any] = json.loads(path.read_text())
        return result

    @property
    def record_end_code(self) -> int | None:
        """The build's own exit code, as the record's end event has it."""
        end = read_record(self.out).end
        return end.build_exit_code if end is not None else None

    @property
    def findings(self) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = self.verdict["findings"]
        return found

    def rules(self) -> set[str]:
        return {finding["rule"] for finding in self.findings}

    def described(self) -> str:
        """The findings, one a line, for assertion messages."""
        return "\n".join(
            f"  {f['rule']} [{f['severity']}] {f['package']} {f['hook']} {f['host']}: {f['message']}"
            for f in self.findings
        )


def npm_project(directory: Path, **package_json: Any) -> Path:
    """An empty npm project (``package.json`` only) to install into."""
    directory.mkdir(parents=True)
    manifest = {"name": "project", "version": "1.0.0", "private": True, **package_json}
    (directory / "package.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return directory


def npm_install(*packages: str) -> list[str]:
    """The install a CI job runs: the real npm, from the registry npm is configured for."""
    return ["npm", "install", "--no-audit", "--no-fund", *packages]


def pip_install(target: Path, *requirements: str, isolation: bool = False) -> list[str]:
    """The real pip, from the index pip is configured for (PIP_INDEX_URL), into ``target``:
    nothing lands in the interpreter's own site-packages."""
    command = [sys.executable, "-m", "pip", "install", "--no-cache-dir", "--target", str(target)]
    if not isolation:
        command.append("--no-build-isolation")  # the build sees the runner's setuptools, as a CI venv would
    return [*command, *requirements]


def watch(
    internet: TestInternet,
    home: Path,
    cwd: Path,
    out: Path,
    command: list[str],
    *,
    policy: Path = DEFAULT_POLICY,
    mode: str | None = None,
    net: str | None = None,
    options: tuple[str, ...] = (),
    env: dict[str, str] | None = None,
) -> Watched:
    """``ciwatch run --policy POLICY [--mode MODE] [--net NET] OPTIONS --out OUT -- COMMAND`` in
    ``cwd``, as a user runs it, with the test internet's resolver and CA; HOME is ``home``."""
    run_env = internet.client_env(home)
    run_env.update(env or {})
    args = [sys.executable, "-m", "ciwatch", "run", "--upstream-ca", str(internet.ca_cert), "--policy", str(policy)]
    if mode is not None:
        args += ["--mode", mode]
    if net is not None:
        args += ["--net", net]
    args += [*options, "--out", str(out), "--", *command]
    done = subprocess.run(
        internet.wrap_with_test_resolver(args), cwd=cwd, env=run_env, capture_output=True, text=True, timeout=240
    )
    return Watched(done.returncode, done.stdout, done.stderr, out, policy, mode, cwd)


def _finding_key(finding: dict[str, Any]) -> tuple[str, ...]:
    return tuple(
        str(finding.get(key)) for key in ("rule", "severity", "package", "ecosystem", "hook", "host", "excepted")
    )


def assert_replay_agrees(watched: Watched) -> dict[str, Any]:
    """``ciwatch check OUT --policy POLICY [--mode MODE] --json`` judges the stored record as the
    live run did: the same verdict, the same findings (rule, severity, package, hook, host), and
    exit code 3 exactly when the verdict is fail."""
    args = [sys.executable, "-m", "ciwatch", "check", str(watched.out), "--policy", str(watched.policy), "--json"]
    if watched.mode is not None:
        args += ["--mode", watched.mode]
    done = subprocess.run(args, capture_output=True, text=True, timeout=120)
    replayed: dict[str, Any] = json.loads(done.stdout)
    live = watched.verdict
    assert done.returncode == (POLICY_FAILED if replayed["verdict"] == "fail" else 0), done.stderr
    assert replayed["verdict"] == live["verdict"], (replayed["verdict"], live["verdict"], watched.described())
    assert replayed["counts"] == live["counts"]
    assert Counter(map(_finding_key, replayed["findings"])) == Counter(map(_finding_key, live["findings"])), (
        "live:\n" + watched.described() + "\nreplayed:\n" + json.dumps(replayed["findings"], indent=1)
    )
    return replayed


def findings_of(watched: Watched, rule: str) -> list[dict[str, Any]]:
    return [finding for finding in watched.findings if finding["rule"] == rule]


def assert_found(watched: Watched, rule: str, package: str, hook: str) -> list[dict[str, Any]]:
    """At least one ``rule`` finding, and every one of them is about ``package``'s ``hook``."""
    found = findings_of(watched, rule)
    assert found, f"no {rule} finding; the findings are:\n{watched.described()}"
    wrong = [f for f in found if (f["package"], f["hook"]) != (package, hook)]
    assert not wrong, f"{rule} attributed to something other than {hook} of {package}:\n{watched.described()}"
    return found


@functools.cache
def _build_dir() -> Path:
    directory = Path(tempfile.mkdtemp(prefix="ciwatch-attacks-"))
    atexit.register(shutil.rmtree, directory, ignore_errors=True)
    return directory


@functools.cache
def compiled(source: str) -> bytes:
    """The ELF executable gcc makes of the C ``source`` (once per session): for payloads that
    are binaries in the real incidents."""
    directory = _build_dir()
    stem = hashlib.sha256(source.encode()).hexdigest()[:16]
    (directory / f"{stem}.c").write_text(source)
    done = subprocess.run(
        ["gcc", "-O1", "-Wall", "-Werror", "-o", str(directory / stem), str(directory / f"{stem}.c")],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    return (directory / stem).read_bytes()
