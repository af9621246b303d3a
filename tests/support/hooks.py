"""An npm package whose install hook does one thing, run bare and installed under ciwatch.

The evasion tests (tests/evasion/) each show a technique three ways: bare (the hook's code, or
the install, without ciwatch), then the package installed under ``ciwatch run`` (audit, block,
``--net sandbox``), then what the verdict and the record say. ``Hooks`` (the ``hooks`` fixture
of tests/evasion/conftest.py) publishes the package to the test internet and runs the install
in a fresh project; the ``assert_*`` helpers are the verdict checks those tests share.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support.attacks import (
    DEFAULT_POLICY,
    POLICY_FAILED,
    Watched,
    assert_replay_agrees,
    npm_install,
    npm_project,
    watch,
)
from tests.support.cprograms import program
from tests.support.internet import TestInternet

HOOK = "postinstall"
VERSION = "1.0.0"


def run_bare(
    argv: Sequence[str],
    *,
    internet: TestInternet | None = None,
    home: Path | None = None,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float = 60,
) -> subprocess.CompletedProcess[str]:
    """The technique without ciwatch: ``argv`` (with ``env`` over this environment, or over the
    test internet's client environment and resolver, HOME ``home``, when ``internet`` is given).
    It must succeed."""
    command = list(argv)
    if internet is not None:
        assert home is not None, "a bare run on the test internet needs a HOME"
        run_env: dict[str, str] | None = {**internet.client_env(home), **(env or {})}
        command = internet.wrap_with_test_resolver(command)
    else:
        run_env = {**os.environ, **env} if env else None
    done = subprocess.run(command, cwd=cwd, env=run_env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def bare_probe(probe: str, *args: str) -> str:
    """What the C program ``probe`` (tests/support/c/) prints when run bare with ``args``."""
    return run_bare([str(program(probe)), *args]).stdout


@dataclass(frozen=True)
class Hooks:
    """Publishing hook packages to ``internet`` and installing them in projects under ``root``:
    ROOT/project (a fresh npm project), HOME ROOT/home, the record in ROOT/out."""

    internet: TestInternet
    root: Path

    def publish(
        self,
        name: str,
        command: str,
        *,
        files: Mapping[str, str] | None = None,
        main: bool = False,
        version: str = VERSION,
        hook: str = HOOK,
    ) -> str:
        """Publish ``name@version`` whose ``hook`` script is ``command`` (``files`` beside its
        package.json; with ``main``, an empty index.js as its main module); its spec."""
        extra: dict[str, Any] = {"scripts": {hook: command}}
        if main:
            extra = {"main": "index.js", **extra}
            files = {"index.js": "module.exports = {};\n", **(files or {})}
        self.internet.publish_npm(name, version, package_json_extra=extra, files=files)
        return f"{name}@{version}"

    def install(
        self,
        spec: str,
        *,
        under: str | None = None,
        home: Path | None = None,
        project: Path | None = None,
        out: str = "out",
        policy: Path = DEFAULT_POLICY,
        mode: str | None = None,
        net: str | None = None,
        env: dict[str, str] | None = None,
        options: tuple[str, ...] = (),
        foreground: bool = False,
    ) -> Watched:
        """``npm install SPEC`` (``--foreground-scripts`` with ``foreground``) under ``ciwatch
        run`` in ROOT[/UNDER]/project, made fresh unless ``project`` is given, with the record in
        ROOT[/UNDER]/OUT."""
        root = self.root / under if under else self.root
        command = npm_install(spec)
        if foreground:
            command.append("--foreground-scripts")
        project = project if project is not None else npm_project(root / "project")
        home = home if home is not None else root / "home"
        return watch(
            self.internet,
            home,
            project,
            root / out,
            command,
            policy=policy,
            mode=mode,
            net=net,
            options=options,
            env=env,
        )

    def install_probe(
        self, probe: str, name: str, args: Iterable[str], *, under: str | None = None, **install: Any
    ) -> tuple[Watched, str]:
        """Publish ``name`` whose postinstall runs the C program ``probe`` with ``args``, and
        install it under ciwatch with the hook's output shown; the run and the package's spec."""
        spec = self.publish(name, " ".join([str(program(probe)), *args]))
        return self.install(spec, under=under, foreground=True, **install), spec

    def bare_install(self, spec: str, project: Path, *, home: Path | None = None) -> subprocess.CompletedProcess[str]:
        """``npm install SPEC`` in ``project`` without ciwatch, on the test internet. It must succeed."""
        home = home if home is not None else self.root / "home"
        return run_bare(npm_install(spec), internet=self.internet, home=home, cwd=project, timeout=240)

    def bare_script(self, name: str, text: str, interpreter: str) -> subprocess.CompletedProcess[str]:
        """The hook's own script, ROOT/NAME, run by ``interpreter`` without ciwatch on the test
        internet (HOME ROOT/home). It must succeed."""
        script = self.root / name
        script.write_text(text)
        return run_bare([interpreter, str(script)], internet=self.internet, home=self.root / "home")


def explained(watched: Watched) -> str:
    """The end of ciwatch's stderr and the findings, for assertion messages (only the stderr
    when there is no verdict)."""
    findings = watched.described() if (watched.out / "verdict.json").exists() else "(no verdict.json)"
    return watched.stderr[-3000:] + "\n" + findings


def assert_exit(watched: Watched, code: int) -> None:
    """``ciwatch run`` exited with ``code``."""
    assert watched.code == code, explained(watched)


def assert_refused(watched: Watched) -> None:
    """Block mode failed a build that itself succeeded (verdict fail, exit 3), and ``ciwatch
    check`` agrees."""
    assert watched.verdict["verdict"] == "fail", watched.described()
    assert watched.record_end_code == 0 and watched.code == POLICY_FAILED, explained(watched)
    assert_replay_agrees(watched)


def hosts_of(findings: Iterable[dict[str, Any]]) -> set[str]:
    """The hosts the findings name."""
    return {finding["host"] for finding in findings}
