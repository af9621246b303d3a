"""ciwatch run as root under sudo (privileged to watch) runs the build as the user who called
sudo, with that user's home: the build behaves as it would have without ciwatch. ``--user``
names the user; ``--user root`` keeps root."""

from __future__ import annotations

import os
import pwd
from pathlib import Path

import pytest

from ciwatch.errors import UsageError
from ciwatch.session.builduser import BuildUser, environment_for, resolve_build_user
from tests.support.runner import run_ciwatch

NOBODY = pwd.getpwnam("nobody")
_SHOW = 'id -u; id -g; echo "$HOME $USER $LOGNAME"; echo written > by-build.txt'


def _sudo_env(user: pwd.struct_passwd) -> dict[str, str]:
    """What sudo leaves: root's HOME and USER, and who called it."""
    return {
        "SUDO_UID": str(user.pw_uid),
        "SUDO_GID": str(user.pw_gid),
        "SUDO_USER": user.pw_name,
        "HOME": pwd.getpwuid(0).pw_dir,
        "USER": "root",
        "LOGNAME": "root",
    }


def test_the_user_is_sudo_s_caller_only_for_root() -> None:
    env = _sudo_env(NOBODY)
    user = resolve_build_user(None, env, euid=0)
    assert user is not None and (user.uid, user.gid, user.name) == (NOBODY.pw_uid, NOBODY.pw_gid, "nobody")
    assert resolve_build_user(None, env, euid=1000) is None  # not root: nothing to give back
    assert resolve_build_user(None, {**env, "SUDO_UID": "0"}, euid=0) is None
    assert resolve_build_user("root", env, euid=0) is None
    with pytest.raises(UsageError):
        resolve_build_user("no-such-user-here", env, euid=0)
    with pytest.raises(UsageError):
        resolve_build_user("root", {}, euid=1000)


def test_the_environment_is_the_user_s_where_sudo_made_it_root_s() -> None:
    user = BuildUser(NOBODY.pw_uid, NOBODY.pw_gid, (), "nobody", "/home/nobody")
    env = environment_for(user, {**_sudo_env(NOBODY), "PATH": "/bin", "CI": "true"})
    assert (env["HOME"], env["USER"], env["LOGNAME"], env["PATH"], env["CI"]) == (
        "/home/nobody",
        "nobody",
        "nobody",
        "/bin",
        "true",
    )
    kept = environment_for(user, {"HOME": "/home/runner", "USER": "runner"})  # sudo -E kept them
    assert (kept["HOME"], kept["USER"]) == ("/home/runner", "runner")


@pytest.mark.skipif(os.geteuid() != 0, reason="runs ciwatch as root")
def test_a_build_under_sudo_runs_as_the_caller(tmp_path: Path) -> None:
    workspace = tmp_path / "w"
    workspace.mkdir()
    workspace.chmod(0o777)
    run = run_ciwatch(["--net", "off", "--", "sh", "-c", _SHOW], tmp_path / "out", cwd=workspace, env=_sudo_env(NOBODY))
    assert run.code == 0, run.stderr
    uid, gid, names = run.stdout.splitlines()[:3]
    assert (int(uid), int(gid)) == (NOBODY.pw_uid, NOBODY.pw_gid)
    assert names == f"{NOBODY.pw_dir} nobody nobody"
    assert (workspace / "by-build.txt").stat().st_uid == NOBODY.pw_uid
    assert run.record.header.home == NOBODY.pw_dir  # credentials are judged against the user's home


@pytest.mark.skipif(os.geteuid() != 0, reason="runs ciwatch as root")
def test_user_root_keeps_root(tmp_path: Path) -> None:
    run = run_ciwatch(
        ["--net", "off", "--user", "root", "--", "sh", "-c", "id -u"], tmp_path / "out", env=_sudo_env(NOBODY)
    )
    assert run.code == 0, run.stderr
    assert run.stdout.split() == ["0"]
