"""Who the build runs as: ciwatch may be root only to watch (fanotify, the sandbox's
namespace), started by ``sudo`` from the runner's user; the build then runs as that user
again, as it would without ciwatch.

The user is ``--user`` (a name or a uid; ``root`` keeps root), else, when ciwatch runs as
root under sudo, the user sudo was called by (``SUDO_UID``, ``SUDO_GID``). The build gets
that user's ids and groups and the environment it had before sudo, as far as sudo left it:
``HOME``, ``USER`` and ``LOGNAME`` are the user's again when sudo had set them to root's
(``sudo -E`` keeps the rest; a variable sudo removed can't be known here).
"""

from __future__ import annotations

import os
import pwd
from collections.abc import Mapping

from ciwatch.dataclass import dataclass
from ciwatch.errors import UsageError


@dataclass(frozen=True)
class BuildUser:
    uid: int
    gid: int
    groups: tuple[int, ...]
    name: str
    home: str


def resolve_build_user(option: str | None, env: Mapping[str, str], euid: int | None = None) -> BuildUser | None:
    """The user the build must run as, or None: as ciwatch itself."""
    euid = os.geteuid() if euid is None else euid
    if option is not None:
        entry = _lookup(option)
        if entry.pw_uid == euid:
            return None
        if euid != 0:
            raise UsageError(f"--user {option}: only root can run the build as another user")
        return _user(entry, entry.pw_gid)
    sudo_uid = env.get("SUDO_UID", "")
    if euid != 0 or not sudo_uid.isdigit() or int(sudo_uid) == 0:
        return None
    try:
        entry = pwd.getpwuid(int(sudo_uid))
    except KeyError:
        return None  # a uid with no account: nothing to give the build but root
    sudo_gid = env.get("SUDO_GID", "")
    return _user(entry, int(sudo_gid) if sudo_gid.isdigit() else entry.pw_gid)


def _lookup(option: str) -> pwd.struct_passwd:
    try:
        return pwd.getpwuid(int(option)) if option.isdigit() else pwd.getpwnam(option)
    except KeyError:
        raise UsageError(f"--user {option}: no such user", hint="Give a user name or uid from /etc/passwd.") from None


def _user(entry: pwd.struct_passwd, gid: int) -> BuildUser:
    groups = tuple(os.getgrouplist(entry.pw_name, gid))
    return BuildUser(entry.pw_uid, gid, groups, entry.pw_name, entry.pw_dir)


def environment_for(user: BuildUser | None, env: Mapping[str, str]) -> dict[str, str]:
    """The build's environment: ``env``, with what sudo changed to root's given back to ``user``."""
    result = dict(env)
    if user is None:
        return result
    root_home = _root_home()
    if not result.get("HOME") or result["HOME"] == root_home:
        result["HOME"] = user.home
    for name in ("USER", "LOGNAME"):
        if result.get(name, "root") == "root":
            result[name] = user.name
    return result


def _root_home() -> str:
    try:
        return pwd.getpwuid(0).pw_dir
    except KeyError:
        return "/root"
