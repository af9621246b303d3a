"""The discovery cache: a fresh discovery's answer again, without asking the tools again.

Asking the package managers costs seconds of CPU (npm alone is a node start-up), alongside a
build that needs the CPU. The answer depends only on inputs ciwatch can check cheaply, so it
is kept per user and given back while every input is unchanged:

- the key (the entry's file name is its hash, and the entry holds it whole): ciwatch's
  version and the discovery code's files, the user, the project directory, the build's
  commands, and every environment variable a package manager or discovery reads (by name
  prefix, :data:`ENV_PREFIXES`: ``PATH``, ``HOME``, ``XDG_*``, ``npm_config_*``, ``PIP_*``…);
- the inputs recorded while the entry was made, checked at each hit: every file discovery
  read or looked for (content hash, or its absence), the configuration files the tools
  themselves read (:func:`tool_files`), and every program looked up or run (path, size,
  mtime, inode).

The discovered hosts become the job's allowlist, so the cache is guarded like a config file:
it lives in the user's cache directory (``/var/cache/ciwatch`` for root, whatever the
environment says, so that a job run under ``sudo`` for another user cannot write it), its
directory is 0700 and its entries 0600, written atomically, owned by ciwatch's user, and an
entry that is not is ignored. A build that writes into it is a ``persistence-write`` finding
(``facts/paths.py``). A build running as ciwatch's user can write it as it can write
``~/.npmrc``, which discovery trusts just the same: neither gives it more than the other.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import stat
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ciwatch import __version__
from ciwatch.facts.paths import CIWATCH_CACHE_SUBDIR
from ciwatch.registries._base import Inputs, RegistrySource, ancestors, fingerprint, program_identity

#: Environment variables (by case-insensitive prefix) that a package manager or discovery
#: reads. Generous on purpose: a variable too many only costs a miss.
ENV_PREFIXES = (
    "path",
    "home",
    "user",
    "logname",
    "xdg_",
    "npm_",
    "node_",
    "corepack_",
    "yarn_",
    "pnpm_",
    "bun_",
    "pip_",
    "python",
    "virtual_env",
    "conda_",
    "uv_",
    "poetry_",
    "cargo",
    "rustup",
    "go",
    "gem",
    "bundle",
    "ruby",
    "maven",
    "m2_",
    "mvn",
    "gradle",
    "java",
    "jdk_",
    "apt",
    "debian",
    "dpkg",
    "http_proxy",
    "https_proxy",
    "no_proxy",
    "all_proxy",
    "ssl_cert",
    "requests_ca",
    "curl_ca",
    "netrc",
)

#: Bump when an entry's layout or meaning changes.
_LAYOUT = 1


def cache_dir(env: Mapping[str, str] | None = None) -> Path:
    """Where this user's entries live. Root's are in /var/cache whatever the environment
    says: under sudo, HOME and XDG_CACHE_HOME may still be the calling user's."""
    env = os.environ if env is None else env
    if os.geteuid() == 0:
        return Path("/var/cache/ciwatch") / CIWATCH_CACHE_SUBDIR
    base = env.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "ciwatch" / CIWATCH_CACHE_SUBDIR


def _code_identity() -> list[Any]:
    """ciwatch's version and the discovery code's files (a changed discoverer is a miss)."""
    here = Path(__file__).parent
    files = sorted(here.glob("*.py"))
    return [__version__, _LAYOUT, [[p.name, *(program_identity(str(p)) or [])[1:3]] for p in files]]


def relevant_env(env: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in sorted(env.items()) if k.lower().startswith(ENV_PREFIXES)}


def _digest(value: object) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()


def make_key(project_dir: Path, env: Mapping[str, str], commands: Sequence[Sequence[str]]) -> dict[str, Any]:
    """What an entry is for. Values of variables and the commands are kept as hashes: they
    hold tokens (NPM_TOKEN, an index URL with a password), which must not land on disk."""
    return {
        "code": _code_identity(),
        "uid": os.geteuid(),
        "project": str(project_dir),
        "commands": _digest([list(c) for c in commands]),
        "env": {name: _digest(value) for name, value in relevant_env(env).items()},
    }


def tool_files(project_dir: Path, env: Mapping[str, str], programs: Mapping[str, Any]) -> list[Path]:
    """The configuration files the package managers read themselves (discovery sees only their
    answer): a change to any of them, or one appearing, must be a miss."""
    home = Path(env["HOME"]) if env.get("HOME") else None
    config_home = Path(env["XDG_CONFIG_HOME"]) if env.get("XDG_CONFIG_HOME") else (home / ".config" if home else None)
    config_dirs = [Path(d) for d in (env.get("XDG_CONFIG_DIRS") or "/etc/xdg").split(":") if d]
    files: list[Path] = []
    for directory in ancestors(project_dir):
        files += [directory / n for n in (".npmrc", ".yarnrc", ".yarnrc.yml", "pip.conf", ".cargo")]
    if home is not None:
        files += [home / n for n in (".npmrc", ".yarnrc", ".yarnrc.yml", ".pip/pip.conf", ".gemrc", ".pydistutils.cfg")]
        files += [home / ".m2/settings.xml", home / ".gradle/gradle.properties", home / ".gradle/init.d"]
    if config_home is not None:
        files += [config_home / "pip/pip.conf", config_home / "pnpm/rc", config_home / "go/env"]
    files += [d / "pip/pip.conf" for d in config_dirs]
    files += [Path("/etc/pip.conf"), Path("/etc/gemrc"), Path("/etc/npmrc")]
    files += [Path("/etc/apt/sources.list"), Path("/etc/apt/sources.list.d"), Path("/etc/apt/apt.conf")]
    files += [Path("/etc/apt/apt.conf.d")]
    for name, value in env.items():
        # Variables that name a config file (PIP_CONFIG_FILE, npm_config_userconfig, APT_CONFIG...).
        lowered = name.lower()
        if value.startswith("/") and ("config" in lowered or lowered.endswith("rc")):
            files.append(Path(value))
    if env.get("VIRTUAL_ENV"):
        files.append(Path(env["VIRTUAL_ENV"]) / "pip.conf")
    for identity in programs.values():
        if identity:
            # A tool's own prefix: npm's builtin and global npmrc, a venv's or an
            # interpreter's pip.conf (sys.prefix), Go's go.env.
            for prefix in Path(str(identity[0])).parents[:5]:
                files += [prefix / "npmrc", prefix / "etc/npmrc", prefix / "pip.conf", prefix / "go.env"]
    return files


def _expand(paths: Sequence[Path]) -> list[Path]:
    """Directories with the files directly in them (apt's sources.list.d: each file is read)."""
    out: list[Path] = []
    for path in paths:
        out.append(path)
        with contextlib.suppress(OSError):
            if path.is_dir():
                out += sorted(p for p in path.iterdir() if p.is_file())
    return out


def finish_inputs(inputs: Inputs, project_dir: Path, env: Mapping[str, str]) -> None:
    """Add the tools' own configuration files to what discovery recorded."""
    for path in _expand(tool_files(project_dir, env, inputs.programs)):
        inputs.saw_file(path)


def _still_true(inputs: Mapping[str, Any], env: Mapping[str, str]) -> bool:
    import shutil

    for path, was in inputs["files"].items():
        if fingerprint(Path(path)) != was:
            return False
    search = env.get("PATH", os.defpath)
    for key, was in inputs["programs"].items():
        kind, _, name = key.partition(":")
        found = shutil.which(name, path=search) if kind == "which" else name
        now = program_identity(found) if found and (kind == "which" or was is not None) else None
        if now != (list(was) if was is not None else None):
            return False
    return True


def _safe_dir(directory: Path) -> bool:
    """Ours alone: owned by this user, a real directory, writable by no one else."""
    try:
        info = os.lstat(directory)
    except OSError:
        return False
    return stat.S_ISDIR(info.st_mode) and info.st_uid == os.geteuid() and not info.st_mode & 0o022


def _entry_path(directory: Path, key: Mapping[str, Any]) -> Path:
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()
    return directory / f"{digest}.json"


def load(directory: Path, key: Mapping[str, Any], env: Mapping[str, str]) -> list[RegistrySource] | None:
    """The cached answer for ``key`` when every input it was made from is unchanged."""
    if not _safe_dir(directory) or not _safe_dir(directory.parent):
        return None
    path = _entry_path(directory, key)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        if info.st_uid != os.geteuid() or info.st_mode & 0o077 or not stat.S_ISREG(info.st_mode):
            return None
        try:
            entry = json.loads(handle.read())
        except ValueError:
            return None
    try:
        if entry["key"] != json.loads(json.dumps(key)) or not _still_true(entry["inputs"], env):
            return None
        return [RegistrySource(**source) for source in entry["sources"]]
    except (KeyError, TypeError, ValueError):
        return None


def _make_dir(directory: Path) -> bool:
    with contextlib.suppress(OSError):
        directory.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        directory.mkdir(mode=0o700, exist_ok=True)
    return _safe_dir(directory) and _safe_dir(directory.parent)


#: A temporary entry this old was left by a ciwatch that ended while writing it.
_STALE_S = 3600.0


def _sweep_temporaries(directory: Path) -> None:
    import time

    for path in directory.glob(".entry-*.tmp"):
        with contextlib.suppress(OSError):
            if time.time() - path.lstat().st_mtime > _STALE_S:
                path.unlink()


def store(directory: Path, key: Mapping[str, Any], inputs: Inputs, sources: Sequence[RegistrySource]) -> None:
    """Write the entry atomically (a reader sees the old one or the new one, never half)."""
    if not inputs.complete or not _make_dir(directory):
        return
    _sweep_temporaries(directory)
    entry = {
        "key": key,
        "inputs": {"files": inputs.files, "programs": inputs.programs},
        "sources": [vars(s) for s in sources],
    }
    fd, temporary = tempfile.mkstemp(dir=directory, prefix=".entry-", suffix=".tmp")  # mode 0600
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(entry, handle, sort_keys=True)
        os.replace(temporary, _entry_path(directory, key))
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        return
    _keep_newest(directory)


#: Entries kept: one a project and command line, so a machine building many projects (a
#: self-hosted runner) keeps the most recent ones, not every one it ever made.
ENTRIES_KEPT = 256


def _keep_newest(directory: Path, kept: int = ENTRIES_KEPT) -> None:
    entries = []
    for path in directory.glob("*.json"):
        with contextlib.suppress(OSError):
            entries.append((path.lstat().st_mtime, path))
    for _, path in sorted(entries, reverse=True)[kept:]:
        with contextlib.suppress(OSError):
            path.unlink()
