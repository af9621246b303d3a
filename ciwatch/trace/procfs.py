"""What the tracer reads from /proc about a stopped tracee."""

from __future__ import annotations

import os
import re
import signal

from ciwatch.attribution.hooks import pip_build_hook
from ciwatch.record.events import ProcessExec

#: The only environment variables whose values a record holds: they say which package
#: manager, package and hook a process belongs to. Everything else (tokens!) stays out.
ATTRIBUTION_ENV = frozenset(
    {
        "npm_package_name",
        "npm_package_version",
        "npm_lifecycle_event",
        "npm_lifecycle_script",
        "npm_package_json",
        "npm_package_resolved",
        "npm_package_integrity",
        "npm_command",
        "npm_execpath",
        "npm_config_user_agent",
        "INIT_CWD",
        "PNPM_SCRIPT_SRC_DIR",
        "BERRY_BIN_FOLDER",
        "PROJECT_CWD",
        "CARGO_PKG_NAME",
        "CARGO_PKG_VERSION",
        "CARGO_MANIFEST_DIR",
        "CARGO_PRIMARY_PACKAGE",
        "DPKG_MAINTSCRIPT_PACKAGE",
        "DPKG_MAINTSCRIPT_NAME",
        "DPKG_MAINTSCRIPT_ARCH",
        "DPKG_RUNNING_VERSION",
        "DPKG_ADMINDIR",
        "DPKG_ROOT",
        "PEP517_BUILD_BACKEND",
        "_PYPROJECT_HOOKS_BUILD_BACKEND",
        "PIP_BUILD_TRACKER",
        "MAVEN_PROJECTBASEDIR",
    }
)


def fsdecode(raw: bytes) -> str:
    """Bytes from a tracee as str, losslessly (undecodable bytes become lone surrogates)."""
    return raw.decode("utf-8", "surrogateescape")


def read_file(path: str) -> bytes:
    try:
        with open(path, "rb") as stream:
            return stream.read()
    except OSError:
        return b""


def readlink(path: str) -> str:
    try:
        return os.readlink(path)
    except OSError:
        return ""


def cmdline(pid: int) -> list[str]:
    raw = read_file(f"/proc/{pid}/cmdline")
    if raw.endswith(b"\0"):
        raw = raw[:-1]
    return [fsdecode(arg) for arg in raw.split(b"\0")] if raw else []


def attribution_env(pid: int) -> dict[str, str]:
    env = {}
    for entry in read_file(f"/proc/{pid}/environ").split(b"\0"):
        name, sep, value = entry.partition(b"=")
        if sep and fsdecode(name) in ATTRIBUTION_ENV:
            env[fsdecode(name)] = fsdecode(value)
    return env


def cwd(pid: int) -> str:
    return readlink(f"/proc/{pid}/cwd")


def fd_path(pid: int, fd: int) -> str:
    return readlink(f"/proc/{pid}/fd/{fd}")


_TGID = re.compile(rb"^Tgid:\s*(\d+)", re.MULTILINE)
_PPID = re.compile(rb"^PPid:\s*(\d+)", re.MULTILINE)


def tgid_and_ppid(tid: int) -> tuple[int, int] | None:
    status = read_file(f"/proc/{tid}/status")
    tgid, ppid = _TGID.search(status), _PPID.search(status)
    if tgid is None or ppid is None:
        return None
    return int(tgid.group(1)), int(ppid.group(1))


def tgid_of(tid: int) -> int | None:
    ids = tgid_and_ppid(tid)
    return ids[0] if ids else None


def comm(pid: int) -> str:
    return fsdecode(read_file(f"/proc/{pid}/comm").rstrip(b"\n"))


def pidfd_target(pid: int, fd: int) -> int | None:
    """The process that file descriptor ``fd`` of ``pid`` stands for when a signal is sent
    through it: a pidfd (its fdinfo says ``Pid:``) or a /proc/PID directory."""
    for line in read_file(f"/proc/{pid}/fdinfo/{fd}").splitlines():
        if line.startswith(b"Pid:"):
            value = line.split()[1:2]
            return int(value[0]) if value and value[0].lstrip(b"-").isdigit() else None
    target = readlink(f"/proc/{pid}/fd/{fd}")
    head, _, number = target.rpartition("/")
    return int(number) if head == "/proc" and number.isdigit() else None


def is_alive(pid: int) -> bool:
    status = read_file(f"/proc/{pid}/stat")
    if not status:
        return False
    # The state follows the command name in parentheses; Z is a zombie (already exited).
    state = status.rsplit(b")", 1)[-1].split()[0:1]
    return state != [b"Z"] and state != [b"X"]


def tracer_of(pid: int) -> int:
    """The pid of the process tracing ``pid`` (0: none, or unknown)."""
    for line in read_file(f"/proc/{pid}/status").splitlines():
        if line.startswith(b"TracerPid:"):
            value = line.split()[1:2]
            return int(value[0]) if value and value[0].isdigit() else 0
    return 0


def traced_by(pid: int, tracer: int) -> bool:
    """Whether ``pid`` is a live process that ``tracer`` traces: a pid the build's process
    had, now given to an unrelated process, is not (only the build's tasks are traced)."""
    return is_alive(pid) and tracer_of(pid) == tracer


def kill_if_traced_by(pid: int, tracer: int, sig: int) -> bool:
    """Signal ``pid`` only if it is still the process ``tracer`` traces. The pidfd is taken
    before the check, so the process checked is the process signalled, even if the pid is
    reused in between."""
    try:
        pidfd = os.pidfd_open(pid)
    except OSError:
        return False
    try:
        if not traced_by(pid, tracer):
            return False
        signal.pidfd_send_signal(pidfd, sig)
        return True
    except OSError:
        return False
    finally:
        os.close(pidfd)


_PKG_INFO_FIELD = re.compile(rb"^(Name|Version):\s*(\S+)", re.MULTILINE)


def python_build_package(directory: str) -> dict[str, str]:
    """Name and version of the project being built in ``directory`` (pip's PEP 517 hooks run
    there): an sdist's PKG-INFO, else a checkout's pyproject.toml (an editable or local
    install, named after its package rather than its folder); {} if neither says."""
    found: dict[str, str] = {}
    for match in _PKG_INFO_FIELD.finditer(read_file(os.path.join(directory, "PKG-INFO"))[:8192]):
        key = match.group(1).decode().lower()
        found.setdefault(key, fsdecode(match.group(2)))
    return found or _pyproject_package(directory)


def _pyproject_package(directory: str) -> dict[str, str]:
    raw = read_file(os.path.join(directory, "pyproject.toml"))
    if not raw or len(raw) > 1 << 20:
        return {}
    import tomllib  # here: most builds run no PEP 517 hook

    try:
        project = tomllib.loads(raw.decode("utf-8")).get("project", {})
    except (UnicodeDecodeError, tomllib.TOMLDecodeError):
        return {}
    if not isinstance(project, dict) or not isinstance(project.get("name"), str):
        return {}
    found = {"name": project["name"]}
    if isinstance(project.get("version"), str):  # else dynamic: known only once built
        found["version"] = project["version"]
    return found


def dpkg_maintscript_package(pid: int, path: str, env: dict[str, str]) -> dict[str, str]:
    """Name and version of the package whose maintainer script ``path`` is (dpkg names the
    package and the script in the environment, not the version; its status database has the
    version being installed by the time a script runs); {} for any other exec, which includes
    everything a script runs, since they inherit the variables."""
    name, script = env.get("DPKG_MAINTSCRIPT_PACKAGE", ""), env.get("DPKG_MAINTSCRIPT_NAME", "")
    if not name or not script or os.path.basename(path) not in (f"{name}.{script}", script):
        return {}
    admindir = env.get("DPKG_ADMINDIR") or os.path.join(env.get("DPKG_ROOT", "/"), "var/lib/dpkg")
    # Through the process's own root: dpkg may run in a chroot or a container.
    database = f"/proc/{pid}/root/{admindir.lstrip('/')}"
    stanza = re.compile(rb"^Package: " + re.escape(os.fsencode(name)) + rb"\n(?:.+\n)*?Version: (\S+)$", re.MULTILINE)
    # dpkg journals each change to updates/NNNN before it folds them into status: the newest
    # journal entry for the package is the version being configured.
    for entry in [*reversed(_journal(database)), f"{database}/status"]:
        found = stanza.search(read_file(entry))
        if found:
            return {"name": name, "version": fsdecode(found.group(1))}
    return {"name": name}


def _journal(database: str) -> list[str]:
    try:
        names = sorted(name for name in os.listdir(f"{database}/updates") if name.isdigit())
    except OSError:
        return []
    return [f"{database}/updates/{name}" for name in names]


def exec_event(pid: int, path: str | None, former_tid: int) -> ProcessExec:
    """What /proc says of a process that has just exec'd; ``path`` is the name it was exec'd
    by (from the execve), ``former_tid`` the thread that made the call."""
    exe = readlink(f"/proc/{pid}/exe")
    argv = cmdline(pid)
    directory = cwd(pid)
    package = {}
    if pip_build_hook(argv) is not None:  # PEP 517 or legacy setup.py: the sdist's PKG-INFO is in the cwd
        package = python_build_package(directory)
    env = attribution_env(pid)
    if "DPKG_MAINTSCRIPT_PACKAGE" in env:
        package = dpkg_maintscript_package(pid, path or exe, env)
    return ProcessExec(
        pid=pid,
        path=path or exe,
        exe=exe,
        argv=argv,
        cwd=directory,
        env=env,
        package=package,
        from_tid=former_tid if former_tid != pid else None,
        stdin=fd_path(pid, 0),
        stdout=fd_path(pid, 1),
    )
