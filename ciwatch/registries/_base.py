"""What the ecosystem modules share: the discovery context, tool queries and URL parsing.

Nothing here knows a registry: every host comes from a tool's answer, a config file or a
lockfile of the job being watched.
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import logging
import os
import re
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar, cast
from urllib.parse import urlsplit, urlunsplit

from ciwatch.dataclass import dataclass, field
from ciwatch.lifetime import dying_with_this_thread

log = logging.getLogger("ciwatch.registries")

T = TypeVar("T")


@dataclass(frozen=True)
class RegistrySource:
    """One host a package manager of the job may reach, and where ciwatch learned it."""

    host: str
    """Lowercase host name, with ``:port`` only when the port is not the scheme's default."""
    ecosystem: str
    """The package manager it belongs to: npm, yarn, pnpm, bun, pip, uv, poetry, cargo, go,
    gem, maven, gradle or apt."""
    source: str
    """Where it came from, for humans: ``npm config list (registry)``, ``Cargo.lock:12 (registry)``."""
    url: str | None = None
    """The URL it was learned from, without credentials, query or fragment; None when only
    the host is known."""


#: Ports that a URL of the scheme implies; a host keeps its port only when it differs.
_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443, "ssh": 22, "git": 9418, "ftp": 21}

#: scp-like git remotes: ``user@host:path``.
_SCP_LIKE = re.compile(r"^[A-Za-z0-9._~-]+@([A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+):(?!//)")
_HOST_CHARS = re.compile(r"^(?:[a-z0-9_](?:[a-z0-9_.-]*[a-z0-9_])?|\[[0-9a-f:.]+\])$")


def host_of(url: str) -> str | None:
    """The host a URL points at (``registry+https://…``, ``//host/…`` and ``git@host:…``
    included), or None for local files, placeholders and text that is no URL."""
    text = url.strip().strip("'\"")
    if not text:
        return None
    if text.startswith("//"):
        text = "https:" + text
    if "://" not in text:
        scp = _SCP_LIKE.match(text)
        return scp.group(1).lower() if scp else None
    try:
        parts = urlsplit(text)
        hostname = parts.hostname
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower().rsplit("+", 1)[-1]
    if not hostname or scheme == "file":
        return None
    host = hostname.lower()
    if ":" in host:
        host = f"[{host}]"
    if not _HOST_CHARS.match(host):
        return None  # an unexpanded ${VAR} or a template, not a host
    if port is not None and port != _DEFAULT_PORTS.get(scheme):
        host = f"{host}:{port}"
    return host


def public_url(url: str) -> str | None:
    """The URL without user, password, query and fragment (tokens live there), or None."""
    text = url.strip().strip("'\"")
    if text.startswith("//"):
        text = "https:" + text
    if "://" not in text:
        return None
    try:
        parts = urlsplit(text)
    except ValueError:
        return None
    netloc = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def source_for(ecosystem: str, source: str, url: str) -> RegistrySource | None:
    """A RegistrySource for ``url``, or None when the URL names no remote host."""
    host = host_of(url)
    if host is None:
        log.debug("%s: %s: %r names no remote host; skipped", ecosystem, source, url)
        return None
    return RegistrySource(host=host, ecosystem=ecosystem, source=source, url=public_url(url))


def host_source(ecosystem: str, source: str, host: str) -> RegistrySource | None:
    """A RegistrySource for a bare host name (a Go checksum database name, an index directory)."""
    parsed = host_of(f"//{host}/")
    if parsed is None:
        log.debug("%s: %s: %r is no host name; skipped", ecosystem, source, host)
        return None
    return RegistrySource(host=parsed, ecosystem=ecosystem, source=source)


def expand_vars(text: str, env: Mapping[str, str]) -> str:
    """Expand ``${NAME}`` the way npm's .npmrc and pip's requirements files do; unknown names stay."""
    return re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", lambda m: env.get(m.group(1), m.group(0)), text)


def split_urls(value: str) -> list[str]:
    """A config value that holds several URLs (pip's extra-index-url, GOPROXY) as a list."""
    return [part for part in re.split(r"[\s,|]+", value) if part]


def ancestors(directory: Path) -> Iterator[Path]:
    """``directory`` and each of its parents up to ``/``."""
    yield directory
    yield from directory.parents


def fingerprint(path: Path) -> str | None:
    """What a file holds, for the discovery cache: ``sha256:<hex>`` of a regular file's bytes,
    ``dir:<hex>`` over a directory's entry names (a file appearing in it changes it; the
    contents of the entries that matter are noted one by one), or None when there is nothing
    there (or nothing readable)."""
    try:
        if path.is_dir():
            return "dir:" + hashlib.sha256("\0".join(sorted(os.listdir(path))).encode()).hexdigest()
        return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


def program_identity(path: str) -> list[int | str] | None:
    """An executable as the cache tells it apart: its real path, size, mtime and inode."""
    try:
        real = os.path.realpath(path)
        info = os.stat(real)
    except OSError:
        return None
    return [real, info.st_size, info.st_mtime_ns, info.st_ino, info.st_dev]


@dataclass
class Inputs:
    """What one discovery read: files (with what they held), the programs it looked up and
    ran, and whether every query answered (an answer cut short by a timeout is not cached)."""

    files: dict[str, str | None] = field(default_factory=dict)
    programs: dict[str, list[int | str] | None] = field(default_factory=dict)
    """``which:<tool>`` or ``run:<path>`` -> the program's identity (None: not found)."""
    complete: bool = True
    changed_from_ns: int | None = None
    """When the build was released: a file changed since (its ctime, which no process can set
    back) is the build's, and teaches nothing (a hook writing a lockfile or an index's
    config.json must not choose its own registries); the answer is then not kept either."""

    def saw_file(self, path: Path) -> None:
        key = os.path.abspath(path)
        if key not in self.files:
            self.files[key] = fingerprint(Path(key))

    def saw_program(self, key: str, path: str | None) -> None:
        self.programs.setdefault(key, program_identity(path) if path else None)


#: The inputs of the discovery running on this thread (each discoverer runs in a copy of the
#: caller's context, so they all record into the one object).
recording: contextvars.ContextVar[Inputs | None] = contextvars.ContextVar("registries_recording", default=None)


def note_file(path: Path) -> None:
    """Tell the cache that discovery's answer depends on this file (its content or absence)."""
    inputs = recording.get()
    if inputs is not None:
        inputs.saw_file(path)


def present(path: Path) -> bool:
    """``path.exists()``, noted as an input of the answer."""
    note_file(path)
    return path.exists()


def is_file(path: Path) -> bool:
    """``path.is_file()``, noted as an input of the answer."""
    note_file(path)
    return path.is_file()


def read_text(path: Path) -> str | None:
    """The file's text, or None when it can't be read (missing, a directory, not UTF-8) or was
    changed by the build (:attr:`Inputs.changed_from_ns`)."""
    note_file(path)
    inputs = recording.get()
    if inputs is not None and inputs.changed_from_ns is not None:
        with contextlib.suppress(OSError):
            if path.stat().st_ctime_ns >= inputs.changed_from_ns:
                log.debug("not read: %s changed since the build started", path)
                inputs.complete = False
                return None
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        if not isinstance(error, FileNotFoundError):
            log.debug("cannot read %s: %s", path, error)
        return None


def display_path(path: Path, project_dir: Path) -> str:
    """``path`` relative to the project when it is inside it, else absolute."""
    try:
        return str(path.relative_to(project_dir))
    except ValueError:
        return str(path)


def _kill_group(process: subprocess.Popen[str]) -> None:
    """End a query that ran out of time, with every process of its group."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    try:
        process.communicate(timeout=1)
    except subprocess.TimeoutExpired:  # a grandchild left the group and keeps the pipes
        for pipe in (process.stdout, process.stderr):
            if pipe is not None:
                pipe.close()
        process.wait()


class _Once:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.done = False
        self.value: object = None


@dataclass
class Context:
    """What one discovery run knows: the project, the job's environment and a time budget."""

    project_dir: Path
    env: Mapping[str, str]
    deadline: float
    """``time.monotonic()`` value by which every tool query must have ended."""
    scratch: Path
    """A private temporary directory (neutral working directory, throwaway tool homes)."""
    commands: Sequence[Sequence[str]] = ()
    """The build's command as ciwatch was given it, and the commands of the shell code it
    runs (registries they name are the job's: ``command_line.commands``)."""
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _shared: dict[str, _Once] = field(default_factory=dict, repr=False)

    def which(self, tool: str) -> str | None:
        """The tool's path on the job's PATH, or None: a tool that is not there is not asked."""
        found = shutil.which(tool, path=self.env.get("PATH", os.defpath))
        inputs = recording.get()
        if inputs is not None:
            inputs.saw_program(f"which:{tool}", found)
        return found

    def home(self) -> Path | None:
        home = self.env.get("HOME")
        return Path(home) if home else None

    def env_get(self, name: str) -> str | None:
        """An environment variable, matched without regard to case (npm_config_* and
        NPM_CONFIG_* are the same setting); an empty value counts as unset."""
        value = self.env.get(name)
        if value:
            return value
        lowered = name.lower()
        for key, value in self.env.items():
            if key.lower() == lowered and value:
                return value
        return None

    def run(
        self, argv: Sequence[str], *, cwd: Path | None = None, env: Mapping[str, str] | None = None
    ) -> subprocess.CompletedProcess[str] | None:
        """Run a query within the time budget; None when it could not start or ran out of time.

        ``env`` adds to (or overrides) the job's environment.
        """
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            if (inputs := recording.get()) is not None:
                inputs.complete = False
            log.debug("no time left for %s", " ".join(argv))
            return None
        full_env = dict(self.env)
        if env:
            full_env.update(env)
        program = shutil.which(argv[0], path=full_env.get("PATH")) if "/" not in argv[0] else argv[0]
        inputs = recording.get()
        if inputs is not None:
            inputs.saw_program(f"run:{program or argv[0]}", program)
        if program is None:
            log.debug("%s: not found", argv[0])
            return None
        started = time.monotonic()
        try:
            # Its own process group, so that a timeout ends the tool's children too (one that
            # outlived it would hold the pipes open, and the wait for them would never end);
            # and dying with ciwatch, should ciwatch be killed while it runs.
            process = subprocess.Popen(
                dying_with_this_thread([program, *argv[1:]]),
                cwd=cwd or self.project_dir,
                env=full_env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                errors="replace",
                start_new_session=True,
            )
        except OSError as error:
            log.debug("%s: %s", " ".join(argv), error)
            return None
        try:
            stdout, stderr = process.communicate(timeout=remaining)
        except subprocess.TimeoutExpired:
            if inputs is not None:
                inputs.complete = False
            log.debug("%s: timed out after %.1f s", " ".join(argv), remaining)
            _kill_group(process)
            return None
        log.debug("%s: exit %d in %.2f s", " ".join(argv), process.returncode, time.monotonic() - started)
        return subprocess.CompletedProcess(list(argv), process.returncode, stdout, stderr)

    def output(
        self, argv: Sequence[str], *, cwd: Path | None = None, env: Mapping[str, str] | None = None
    ) -> str | None:
        """The query's stdout when it succeeded, else None (the failure is logged at debug)."""
        done = self.run(argv, cwd=cwd, env=env)
        if done is None:
            return None
        if done.returncode != 0:
            log.debug("%s failed: %s", " ".join(argv), done.stderr.strip()[-500:])
            return None
        return done.stdout

    def shared(self, key: str, compute: Callable[[], T]) -> T:
        """``compute()`` once per run, whoever asks first; the others wait for its value.

        For facts that several ecosystems need (pip's default index is also uv's and
        poetry's), so that no tool is asked twice.
        """
        with self._lock:
            once = self._shared.setdefault(key, _Once())
        with once.lock:
            if not once.done:
                once.value = compute()
                once.done = True
            return cast(T, once.value)


def pyproject(ctx: Context) -> dict[str, Any]:
    """The project's pyproject.toml, parsed once per discovery (uv and poetry both read it)."""
    return ctx.shared("pyproject", lambda: load_toml(ctx.project_dir / "pyproject.toml"))


def load_toml(path: Path) -> dict[str, Any]:
    """A TOML file, or ``{}`` when it is missing or broken."""
    import tomllib  # here: a cache hit reads no TOML

    text = read_text(path)
    if text is None:
        return {}
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        log.debug("%s: %s", path, error)
        return {}


def tool_table(ctx: Context, tool: str) -> dict[str, Any] | None:
    """``[tool.<tool>]`` of pyproject.toml, or None when the project has none."""
    tools = pyproject(ctx).get("tool")
    table = tools.get(tool) if isinstance(tools, dict) else None
    return table if isinstance(table, dict) else None
