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
)
from tests.support.cprograms import program
from tests.support.hooks import HOOK, Hooks, run_bare

pytestmark = [pytest.mark.npm, pytest.mark.root]

STARTUP_FILES = (".bashrc", ".profile", ".zshrc", ".bash_login", ".bash_profile", ".zprofile")


def _home(root: Path) -> Path:
    home = root / "home"
    (home / ".ssh").mkdir(parents=True)
    (home / ".npmrc").write_text("//registry.invalid/:_authToken=npm_notarealtoken\n")
    (root / "scratch").mkdir()
    return home


def test_the_aliases_reach_the_files_bare(tmp_path: Path) -> None:
    home = _home(tmp_path)
    done = run_bare([str(program("path_aliases")), str(home), str(tmp_path / "scratch")])
    for name in STARTUP_FILES:
        assert (home / name).read_text() == "echo pwned\n", name
    assert "read the npm token" in done.stdout


@pytest.mark.parametrize("policy", [DEFAULT_POLICY, STRICT_POLICY], ids=["audit", "block"])
def test_every_alias_is_judged_as_the_file_it_names(hooks: Hooks, tmp_path: Path, policy: Path) -> None:
    package = hooks.publish("path-tricks", '"$PATH_ALIASES" "$HOME" "$ALIAS_SCRATCH"')
    home = _home(tmp_path)
    env = {"PATH_ALIASES": str(program("path_aliases")), "ALIAS_SCRATCH": str(tmp_path / "scratch")}
    watched = hooks.install(package, home=home, policy=policy, env=env)
    assert watched.record_end_code == 0, watched.stderr[-3000:]
    assert watched.verdict["verdict"] == "fail", watched.described()
    found = assert_found(watched, "persistence-write", package, HOOK)
    messages = "\n".join(f["message"] for f in found)
    for name in STARTUP_FILES:
        assert f"{home}/{name}" in messages, (name, messages)
    reads = assert_found(watched, "credential-read", package, HOOK)
    assert any(f"{home}/.npmrc" in f["message"] for f in reads)
    if policy == STRICT_POLICY:
        assert watched.code == POLICY_FAILED
    else:
        assert watched.code == 0
        spelled = {e.path: e.as_written for e in watched.events(FileWrite)}
        read = [e for e in watched.events(FileRead) if e.path.endswith(".npmrc")]
        assert read
        if not read_record(watched.out).header.capabilities.get("fanotify_file_events"):
            # The stops keep the spelling; fanotify reports the file itself, never its alias.
            assert spelled[f"{home}/.bashrc"] == f"/proc/self/root{home}/.bashrc"
            assert spelled[f"{home}/.profile"] == "/proc/self/cwd/.profile"
            assert read[0].as_written == f"/proc/self/root{home}/.npmrc"
        assert not findings_of(watched, "exec-written-file")
    assert_replay_agrees(watched)


def test_a_read_by_alias_in_an_old_record_is_still_a_credential_read(tmp_path: Path) -> None:
    from tests.test_rules import HOME, Build, found

    build = Build(tmp_path)
    build.hook().read(f"/proc/self/root{HOME}/.npmrc")
    build.hook().read("/proc/self/environ")  # its own environment: not a credential
    [finding] = found(build.judge(), "credential-read")
    assert f"{HOME}/.npmrc" in finding.message
