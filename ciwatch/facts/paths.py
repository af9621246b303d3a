"""Files that hold credentials (what the tracer watches a hook's reads for, and what the
credential-read rule judges), and the directories where package managers put what they install."""

from __future__ import annotations

import fnmatch
import glob
import os
import re
from collections.abc import Mapping

#: ``~`` is the job's home directory.
CREDENTIAL_PATTERNS = (
    "~/.npmrc",
    "~/.yarnrc",
    "~/.yarnrc.yml",
    "~/.pypirc",
    "~/.netrc",
    "~/.git-credentials",
    "~/.ssh/*",
    "~/.aws/*",
    "~/.azure/*",
    "~/.config/gcloud/*",
    "~/.config/gh/*",
    "~/.config/hub",
    "~/.docker/config.json",
    "~/.kube/config",
    "~/.cargo/credentials*",
    "~/.gem/credentials",
    "~/.m2/settings*.xml",
    "~/.gradle/gradle.properties",
    "/proc/*/environ",
    "/proc/*/mem",
    "/proc/*/maps",
    "/etc/shadow",
)


def _credential_patterns(home: str) -> list[str]:
    """``CREDENTIAL_PATTERNS`` with ``~`` made ``home`` (those in the home left out without one)."""
    expanded = []
    for pattern in CREDENTIAL_PATTERNS:
        if pattern.startswith("~"):
            if not home:
                continue
            pattern = home.rstrip("/") + pattern[1:]
        expanded.append(pattern)
    return expanded


def is_credential_path(path: str, home: str, own_pid: int | None = None) -> bool:
    """Whether ``path`` holds credentials; a process reading its own /proc entries doesn't count."""
    if own_pid is not None and (path.startswith(f"/proc/{own_pid}/") or path.startswith("/proc/self/")):
        return False
    if path.startswith("/proc/thread-self/"):
        return False
    return any(fnmatch.fnmatchcase(path, pattern) for pattern in _credential_patterns(home))


_GLOB_CHARACTERS = re.compile(r"[*?\[]")


def credential_prefixes(home: str) -> tuple[str, ...]:
    """Texts one of which starts every path ``is_credential_path`` can accept: each pattern up
    to its first glob character (fnmatch's ``*`` spans ``/``, so only that literal head is
    certain), the shortest of those that share a head. A path that starts with none of them is
    no credential, whoever reads it: the compiled stop loop resumes such reads without asking."""
    heads = sorted({_GLOB_CHARACTERS.split(pattern, maxsplit=1)[0] for pattern in _credential_patterns(home)})
    kept: list[str] = []
    for head in heads:  # sorted: a head's own prefixes come before it
        if not any(head.startswith(shorter) for shorter in kept):
            kept.append(head)
    return tuple(kept)


def credential_places(home: str, limit: int = 500) -> list[str]:
    """The files and directories ``CREDENTIAL_PATTERNS`` name that exist now, outside /proc:
    what can be watched for opens instead of judging every open's path. A directory in the
    home stands for the files made in it later; ``*`` spans directories in a pattern, so a
    pattern's directory brings its subdirectories and their files (at most ``limit`` places)."""
    places: list[str] = []
    for pattern in CREDENTIAL_PATTERNS:
        if pattern.startswith("/proc/") or (pattern.startswith("~") and not home):
            continue
        in_home = pattern.startswith("~")
        path = home.rstrip("/") + pattern[1:] if in_home else pattern
        directory, name = os.path.split(path)
        if name == "*":
            for root, _dirs, files in os.walk(directory):
                places.append(root)
                places.extend(os.path.join(root, file) for file in files)
                if len(places) >= limit:
                    return places[:limit]
            continue
        if in_home:
            places.append(directory)
        places.extend(sorted(glob.glob(glob.escape(directory) + "/" + name)) if glob.has_magic(name) else [path])
    return list(dict.fromkeys(places))[:limit]


#: The system's account databases, and the backups and temporary copies their tools write
#: beside them (``passwd-``, ``shadow+``, ``group.lock``...): who may log in, as whom.
ACCOUNT_FILE_PATTERNS = (
    "/etc/passwd*",
    "/etc/shadow*",
    "/etc/group*",
    "/etc/gshadow*",
    "/etc/subuid*",
    "/etc/subgid*",
)


#: The CI provider's files that carry into later steps of the job: what a step appends to
#: ``$GITHUB_ENV`` is in the environment of every later step, ``$GITHUB_PATH`` prepends to their
#: PATH, ``$GITHUB_OUTPUT``/``$GITHUB_STATE`` feed later steps' inputs and the action's post
#: step. (``$GITHUB_STEP_SUMMARY`` is only shown: harmless.)
CI_ENV_FILE_VARIABLES = ("GITHUB_ENV", "GITHUB_PATH", "GITHUB_OUTPUT", "GITHUB_STATE")


def ci_env_files(env: Mapping[str, str]) -> dict[str, str]:
    """The files that the build's environment names as carrying into later steps (variable ->
    path): GitHub's file commands, and GitLab dotenv reports a job names in a variable
    (``*DOTENV*``, ``*_ENV_FILE``). Paths, not values: recorded in the header for ``check``."""
    found: dict[str, str] = {}
    for name, value in env.items():
        upper = name.upper()
        named = name in CI_ENV_FILE_VARIABLES or "DOTENV" in upper or upper.endswith("_ENV_FILE")
        if named and value.startswith("/"):
            found[name] = value
    return found


def proc_alias(path: str, pid: int, cwd: str) -> str:
    """A path's ``/proc`` spelling undone as far as a record allows (for an exec's script
    argument, which the tracer did not resolve): ``/proc/self|thread-self|PID/root/X`` is
    ``/X`` and ``.../cwd/X`` is ``cwd/X`` for the process itself. Fd aliases stay as they are."""
    for prefix in ("/proc/self/", "/proc/thread-self/", f"/proc/{pid}/"):
        if path.startswith(prefix):
            rest = path[len(prefix) :]
            if rest == "root" or rest.startswith("root/"):
                return "/" + rest[5:]
            if cwd and (rest == "cwd" or rest.startswith("cwd/")):
                return cwd.rstrip("/") + "/" + rest[4:]
    return path


def is_fd_alias(path: str) -> bool:
    """``/proc/<any>/fd/N``, ``/dev/fd/N``, ``/dev/stdin``: a file run by its descriptor, whose
    origin (a memfd, a pipe, a deleted file) the path doesn't say."""
    parts = path.split("/")
    if path.startswith("/dev/fd/") or path in ("/dev/stdin", "/dev/stdin/"):
        return True
    if len(parts) < 5 or parts[1] != "proc":
        return False
    return parts[3] == "fd" or (parts[3] == "task" and len(parts) > 6 and parts[5] == "fd")


#: Where package managers put what they install: a hook writing there is doing its job.
INSTALL_OUTPUT_DIRS = frozenset(
    {
        "node_modules",
        ".pnpm-store",
        ".yarn",
        "site-packages",
        "dist-packages",
        ".venv",
        "venv",
        "target",
        "vendor",
        "__pycache__",
        ".eggs",
        "build",
        ".gradle",
        ".m2",
        # The XDG cache: where hooks put the browsers and tools they download for the package
        # (Playwright, Puppeteer, Cypress, Electron); nothing runs from it unless asked.
        ".cache",
    }
)


def is_install_output(path: str) -> bool:
    return any(part in INSTALL_OUTPUT_DIRS for part in path.split("/"))


#: The directory below ciwatch's per-user cache directory (``~/.cache/ciwatch``,
#: ``$XDG_CACHE_HOME/ciwatch``, ``/var/cache/ciwatch`` for root) that holds the registry
#: discovery cache: its entries become the next run's allowlist.
CIWATCH_CACHE_SUBDIR = "registries-v1"

#: Where ciwatch keeps per-user state and caches: a build that writes there could change what
#: a later run of ciwatch allows (the discovery cache is an allowlist). The last pattern is
#: any cache directory, wherever XDG_CACHE_HOME pointed.
CIWATCH_STATE_PATTERNS = (
    "~/.cache/ciwatch/*",
    "~/.local/state/ciwatch/*",
    "~/.config/ciwatch/*",
    "/var/cache/ciwatch/*",
    "/var/lib/ciwatch/*",
    f"*/ciwatch/{CIWATCH_CACHE_SUBDIR}/*",
)
