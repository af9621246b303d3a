"""Class 6 of issue 8: paths are judged by what they are, not how they're spelled.

A real npm install hook runs a C program (tests/support/c/path_aliases.c) that writes the
home's shell start-up files through /proc/self/root, /proc/self/cwd, a dirfd with ``..``,
/proc/self/fd/N/.., a symlinked directory and a ``..`` chain, and reads ~/.npmrc through
/proc/self/root. Bare, every write lands; under ciwatch each is persistence-write on the
canonical path (the record keeps the spelling), the read is credential-read, and block mode
fails the build.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ciwatch.record import read_record
from ciwatch.record.events import FileRead, FileWrite
from tests.support.attacks import (
    DEFAULT_POLICY,
    POLICY_FAILED,
    STRICT_POLICY,
    assert_found,
    assert_replay_agrees,
    findings_of,
    npm_install,
    npm_project,
    watch,
)
from tests.support.cprograms import program
from tests.support.internet import TestInternet

pytestmark = [pytest.mark.npm, pytest.mark.root]

STARTUP_FILES = (".bashrc", ".profile", ".zshrc", ".bash_login", ".bash_profile", ".zprofile")
PACKAGE, VERSION, HOOK = "path-tricks", "1.0.0", "postinstall"


def _home(root: Path) -> Path:
    home = root / "home"
    (home / ".ssh").mkdir(parents=True)
    (home / ".npmrc").write_text("//registry.invalid/:_authToken=npm_notarealtoken\n")
    (root / "scratch").mkdir()
    return home


def test_the_aliases_reach_the_files_bare(tmp_path: Path) -> None:
    import subprocess

    home = _home(tmp_path)
    done = subprocess.run([str(program("path_aliases")), str(home), str(tmp_path / "scratch")], capture_output=True)
    assert done.returncode == 0, done.stderr
    for name in STARTUP_FILES:
        assert (home / name).read_text() == "echo pwned\n", name
    assert b"read the npm token" in done.stdout


@pytest.fixture
def published(internet: TestInternet) -> None:
    script = '"$PATH_ALIASES" "$HOME" "$ALIAS_SCRATCH"'
    internet.publish_npm(PACKAGE, VERSION, package_json_extra={"scripts": {HOOK: script}})


@pytest.mark.parametrize("policy", [DEFAULT_POLICY, STRICT_POLICY], ids=["audit", "block"])
def test_every_alias_is_judged_as_the_file_it_names(
    internet: TestInternet, tmp_path: Path, published: None, policy: Path
) -> None:
    home = _home(tmp_path)
    project = npm_project(tmp_path / "project")
    env = {"PATH_ALIASES": str(program("path_aliases")), "ALIAS_SCRATCH": str(tmp_path / "scratch")}
    watched = watch(
        internet, home, project, tmp_path / "out", npm_install(f"{PACKAGE}@{VERSION}"), policy=policy, env=env
    )
    assert watched.record_end_code == 0, watched.stderr[-3000:]
    assert watched.verdict["verdict"] == "fail", watched.described()
    found = assert_found(watched, "persistence-write", f"{PACKAGE}@{VERSION}", HOOK)
    messages = "\n".join(f["message"] for f in found)
    for name in STARTUP_FILES:
        assert f"{home}/{name}" in messages, (name, messages)
    reads = assert_found(watched, "credential-read", f"{PACKAGE}@{VERSION}", HOOK)
    assert any(f"{home}/.npmrc" in f["message"] for f in reads)
    if policy == STRICT_POLICY:
        assert watched.code == POLICY_FAILED
    else:
        assert watched.code == 0
        record = read_record(watched.out)
        spelled = {e.event.path: e.event.as_written for e in record.events if isinstance(e.event, FileWrite)}
        assert spelled[f"{home}/.bashrc"] == f"/proc/self/root{home}/.bashrc"
        assert spelled[f"{home}/.profile"] == "/proc/self/cwd/.profile"
        read = [e.event for e in record.events if isinstance(e.event, FileRead) and e.event.path.endswith(".npmrc")]
        assert read and read[0].as_written == f"/proc/self/root{home}/.npmrc"
        assert not findings_of(watched, "exec-written-file")
    assert_replay_agrees(watched)


def test_a_read_by_alias_in_an_old_record_is_still_a_credential_read(tmp_path: Path) -> None:
    from tests.test_rules import HOME, Build, found

    build = Build(tmp_path)
    build.hook().read(f"/proc/self/root{HOME}/.npmrc")
    build.hook().read("/proc/self/environ")  # its own environment: not a credential
    [finding] = found(build.judge(), "credential-read")
    assert f"{HOME}/.npmrc" in finding.message
