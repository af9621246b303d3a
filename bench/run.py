#!/usr/bin/env python3
"""What tracing a real install with ciwatch costs, next to the same install bare and under strace.

Each workload is an install a CI job really runs; each configuration is a way of running it
(bare, under ciwatch, under strace). The configurations of a workload run interleaved, round
robin, so that a slow minute of the machine spreads over all of them, and the report gives
the median of each and its ratio to bare, plus what ciwatch's tracer did (stops, CPU per stop)
as its record's ``end`` line tells.

    python3 bench/run.py                         # every workload, 7 iterations each
    python3 bench/run.py --workload npm --iterations 3
    python3 bench/run.py --markdown              # the tables as bench/README.md shows them

To add a configuration, add one entry to CONFIGURATIONS; to add a workload, one to WORKLOADS.
Everything the runs leave (work copies, venvs, records, logs, raw results) goes to bench/work/.
"""

from __future__ import annotations

import argparse
import ctypes
import dataclasses
import gzip
import io
import json
import os
import platform
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tarfile
import time
import urllib.parse
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

BENCH = Path(__file__).resolve().parent
WORKLOADS_DIR = BENCH / "workloads"
WORK = BENCH / "work"

#: The syscalls ciwatch's seccomp filter hands to its tracer (ciwatch/trace/table.py), as
#: strace spells them. ciwatch's filter is narrower for open/openat (write flags only) and
#: sendto (with a destination only); strace's ``-e trace=`` can't test arguments in BPF.
CIWATCH_SYSCALLS = (
    "execve,execveat,connect,sendto,sendmsg,sendmmsg,open,openat,openat2,creat,rename,renameat,renameat2,"
    "link,linkat,symlink,symlinkat,chmod,fchmod,fchmodat,unlink,unlinkat,memfd_create,io_uring_setup,ptrace"
)


def installed_ciwatch() -> list[str]:
    """ciwatch's console script from this interpreter's bin directory (a version manager's shim
    on PATH would add its own start-up to every run), else ``python -m ciwatch``."""
    script = Path(sys.executable).parent / "ciwatch"
    return [str(script)] if script.is_file() else [sys.executable, "-m", "ciwatch"]


def ciwatch_at(revision: str) -> tuple[str, list[str]]:
    """(commit, how to start it): ciwatch as committed at ``revision``, exported under
    bench/work/, to compare versions or to measure while the working tree is being edited."""
    repo = BENCH.parent
    found = subprocess.run(
        ["git", "-C", str(repo), "rev-parse", "--verify", f"{revision}^{{commit}}"],
        capture_output=True,
        text=True,
        check=False,
    )
    if found.returncode != 0:
        raise SystemExit(f"bench: --revision: no commit {revision!r} in {repo}")
    commit = found.stdout.strip()
    # No "ciwatch" in these paths: a command line that names it in its first words can be
    # taken for a stray ciwatch by a cleanup that kills those (one of the tests does).
    source = WORK / "revisions" / commit[:12]
    if not (source / "ciwatch" / "__init__.py").exists():
        archive = subprocess.run(
            ["git", "-C", str(repo), "archive", commit, "ciwatch", "setup.py", "pyproject.toml"],
            capture_output=True,
            check=False,
        )
        if archive.returncode != 0:  # a revision from before the compiled loop: no setup.py
            archive = subprocess.run(
                ["git", "-C", str(repo), "archive", commit, "ciwatch"], capture_output=True, check=True
            )
        source.mkdir(parents=True, exist_ok=True)
        with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
            tar.extractall(source, filter="data")
        _build_stop_loop(source)
    start = source / "start.py"
    start.write_text("from ciwatch.cli import main\n\nmain()\n")  # its directory is sys.path[0]
    return commit, [sys.executable, str(start)]


def _build_stop_loop(source: Path) -> None:
    """Build a revision's compiled stop loop in place, as pip does on install: without it the
    revision would be measured on the Python loop."""
    if not (source / "setup.py").exists():
        return
    built = subprocess.run(
        [sys.executable, "setup.py", "build_ext", "--inplace", "-q"], cwd=source, capture_output=True, check=False
    )
    if built.returncode != 0:
        print(f"bench: {source.name}: the compiled stop loop did not build: the Python loop", file=sys.stderr)


# -- configurations ------------------------------------------------------------------------


@dataclass(frozen=True)
class Invocation:
    """What a configuration builds its command from."""

    command: list[str]
    """The workload's build command."""
    record_dir: Path
    """Where a ciwatch run writes its record."""
    ciwatch: list[str]
    """How to start ciwatch: the installed one, or a --revision."""
    needs_capabilities: bool = False
    """The workload can't run without root's capabilities (apt, dpkg): an unprivileged
    configuration then runs as root with the filter's stops (``--file-events ptrace``)."""


@dataclass(frozen=True)
class Configuration:
    """A way to run a workload's command: ``wrap(invocation)`` is the command that gets timed."""

    name: str
    wrap: Callable[[Invocation], list[str]]
    runs_ciwatch: bool = False
    """It runs ciwatch, so it leaves a record whose end line says what the tracer did; with
    --revision it is measured once per revision."""
    workloads: frozenset[str] | None = None
    """Only for these workloads (None: every workload)."""
    ciwatch: tuple[str, ...] = ()
    """Set for a --revision: how to start that ciwatch (else the installed one)."""
    default: bool = True
    """Run without --only; the others (single mechanisms, plain strace) only when named."""


def _strace(*options: str) -> Callable[[Invocation], list[str]]:
    return lambda run: ["strace", "-f", "-qq", *options, "-o", os.devnull, *run.command]


def _ciwatch(*options: str) -> Callable[[Invocation], list[str]]:
    return lambda run: [*run.ciwatch, "run", *options, "--out", str(run.record_dir), "--", *run.command]


#: Every capability dropped, uid 0 kept: ciwatch then decides as it does for a user without
#: root (fanotify refused, so file events from the filter's stops; the redirect proxy, which
#: needs no privilege), and can't do otherwise. A real second user can't run this machine's
#: interpreter (pyenv under /root, mode 700), hence uid 0 without capabilities.
WITHOUT_CAPABILITIES = ("setpriv", "--bounding-set=-all", "--inh-caps=-all", "--ambient-caps=-all")


def _unprivileged(*options: str) -> Callable[[Invocation], list[str]]:
    """ciwatch as a run without root does it; a workload that needs root's capabilities (apt)
    runs as root with what an unprivileged run would use for file events: the filter's stops."""

    def wrap(run: Invocation) -> list[str]:
        if run.needs_capabilities:
            return _ciwatch(*options, "--file-events", "ptrace")(run)
        return [*WITHOUT_CAPABILITIES, *_ciwatch(*options)(run)]

    return wrap


CONFIGURATIONS: list[Configuration] = [
    Configuration("bare", lambda run: run.command),
    # What a CI job gets: started without root, and started as root (`sudo`, a VM runner's
    # root) where file writes come from fanotify; each tracing only and in the default
    # configuration (redirect proxy + policy).
    Configuration("unprivileged --net off", _unprivileged("--net", "off"), runs_ciwatch=True),
    Configuration("unprivileged", _unprivileged(), runs_ciwatch=True),
    Configuration("privileged --net off", _ciwatch("--net", "off", "--file-events", "auto"), runs_ciwatch=True),
    Configuration("privileged", _ciwatch("--file-events", "auto"), runs_ciwatch=True),
    Configuration("strace -f --seccomp-bpf", _strace("--seccomp-bpf", "-e", f"trace={CIWATCH_SYSCALLS}")),
    # Single mechanisms, run only when named with --only.
    Configuration("ciwatch", _ciwatch("--net", "off"), runs_ciwatch=True, default=False),
    Configuration(
        "ciwatch ptrace", _ciwatch("--net", "off", "--file-events", "ptrace"), runs_ciwatch=True, default=False
    ),
    Configuration(
        "ciwatch fanotify", _ciwatch("--net", "off", "--file-events", "fanotify"), runs_ciwatch=True, default=False
    ),
    Configuration("ciwatch redirect", _ciwatch("--net", "redirect"), runs_ciwatch=True, default=False),
    Configuration("strace -f", _strace(), workloads=frozenset({"npm", "pip"}), default=False),
]


def per_revision(configurations: list[Configuration], revisions: list[str]) -> tuple[list[Configuration], list[str]]:
    """Each configuration that runs ciwatch, once per revision; and the commits."""
    if not revisions:
        return configurations, []
    versions = [ciwatch_at(revision) for revision in revisions]
    expanded: list[Configuration] = []
    for configuration in configurations:
        if not configuration.runs_ciwatch:
            expanded.append(configuration)
            continue
        for commit, start in versions:
            name = f"{configuration.name} @{commit[:7]}"
            expanded.append(dataclasses.replace(configuration, name=name, ciwatch=tuple(start)))
    return expanded, [commit for commit, _ in versions]


# -- workloads -----------------------------------------------------------------------------


@dataclass
class Workload:
    """An install to time. ``prepare`` runs once (untimed), ``reset`` before every run (untimed)."""

    name: str
    command: list[str]
    cwd: Path
    env: dict[str, str]
    prepare: Callable[[], str]
    """Makes the workload ready to run offline; returns a one-line description of it."""
    reset: Callable[[], None]
    in_all: bool = True
    """Part of ``--workload all``."""
    shown: str = ""
    """The command as the report shows it (default: the command)."""
    needs: tuple[str, ...] = ()
    """Programs it needs on PATH."""
    needs_capabilities: bool = False
    """It can't run without root's capabilities (see ``Invocation.needs_capabilities``)."""


def _run_quiet(command: Sequence[str], cwd: Path, env: dict[str, str] | None = None) -> None:
    """Run a set-up command; on failure show its output and stop."""
    done = subprocess.run(command, cwd=cwd, env=env, stdin=subprocess.DEVNULL, capture_output=True, check=False)
    if done.returncode != 0:
        sys.stderr.buffer.write(done.stdout[-4000:] + done.stderr[-4000:])
        raise SystemExit(f"bench: set-up command failed ({done.returncode}): {' '.join(command)}")


def _rmtree(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.exists():
        shutil.rmtree(path)


# npm: a tooling project (bundler with an install hook, test framework, linter, formatter,
# compiler), `npm ci` from a warm cache, the way a CI job with a cached ~/.npm installs.

NPM_SOURCE = WORKLOADS_DIR / "npm"
NPM_WORK = WORK / "npm"


def _strip_resolved(lock: Path) -> int:
    """Remove every ``resolved`` field (a registry URL) from a lockfile; returns how many."""
    data = json.loads(lock.read_text())
    removed = 0
    for section in ("packages", "dependencies"):
        for entry in data.get(section, {}).values():
            if isinstance(entry, dict) and "resolved" in entry:
                del entry["resolved"]
                removed += 1
    if removed:
        lock.write_text(json.dumps(data, indent=2) + "\n")
    return removed


def _npm_registry_host() -> str:
    """The host of the registry npm is configured for, learnt at run time (never written down)."""
    done = subprocess.run(["npm", "config", "get", "registry"], capture_output=True, text=True, check=False)
    return urllib.parse.urlsplit(done.stdout.strip()).hostname or ""


def _prepare_npm() -> str:
    NPM_WORK.mkdir(parents=True, exist_ok=True)
    shutil.copy2(NPM_SOURCE / "package.json", NPM_WORK / "package.json")
    source_lock = NPM_SOURCE / "package-lock.json"
    work_lock = NPM_WORK / "package-lock.json"
    if not source_lock.exists():
        # First run: resolve the project once (this fills npm's cache too), keep the lockfile.
        print("bench: npm: no package-lock.json yet, running `npm install` once", file=sys.stderr)
        _rmtree(work_lock)
        _rmtree(NPM_WORK / "node_modules")
        _run_quiet(["npm", "install", "--no-audit", "--no-fund"], NPM_WORK)
        removed = _strip_resolved(work_lock)
        if removed:
            print(f"bench: npm: removed {removed} `resolved` URLs from the lockfile", file=sys.stderr)
        shutil.copy2(work_lock, source_lock)
    else:
        shutil.copy2(source_lock, work_lock)
    registry = _npm_registry_host()
    if registry and registry.lower() in source_lock.read_text().lower():
        raise SystemExit(f"bench: {source_lock} names npm's registry host: delete it and rerun to regenerate it")
    lock = json.loads(source_lock.read_text())
    packages = [key for key in lock.get("packages", {}) if key]
    hooks = sorted(
        key.rsplit("node_modules/", 1)[-1] for key, e in lock["packages"].items() if e.get("hasInstallScript")
    )
    return (
        f"`npm ci`, {len(packages)} packages in the lockfile, install hooks: {', '.join(hooks) or 'none'}; warm cache"
    )


def _reset_npm() -> None:
    _rmtree(NPM_WORK / "node_modules")


# npm-online: the same project with an empty npm cache for every run, so that `npm ci`
# downloads every packument and tarball from the registry npm is configured for.

NPM_ONLINE_CACHE = WORK / "npm-online-cache"


def _prepare_npm_online() -> str:
    description = _prepare_npm()
    return description.replace("warm cache", "empty cache: every tarball downloaded")


def _reset_npm_online() -> None:
    _reset_npm()
    _rmtree(NPM_ONLINE_CACHE)


# pip: sdists that must be built (setup.py, pyproject, a C extension compiled by gcc), made here
# and installed with pip's build hooks into a fresh copy of a venv, from a local directory only.

PIP_WORK = WORK / "pip"
PIP_DIST = PIP_WORK / "dist"
PIP_VENV = PIP_WORK / "venv"
PIP_PRISTINE = PIP_WORK / "venv-pristine"
PIP_APP = "cwb-app"

_PURE_MODULE = '''"""Module {index} of cwb_util."""


def scale_{index}(values: list[float], factor: float = {index}.5) -> list[float]:
    return [value * factor for value in values]
'''

_C_SOURCE = r"""
#define PY_SSIZE_T_CLEAN
#include <Python.h>

static PyObject *checksum(PyObject *self, PyObject *args) {
    const unsigned char *data;
    Py_ssize_t size;
    if (!PyArg_ParseTuple(args, "y#", &data, &size)) return NULL;
    unsigned long sum = 0;
    for (Py_ssize_t i = 0; i < size; i++) sum = (sum * 31 + data[i]) % 4294967291UL;
    return PyLong_FromUnsignedLong(sum);
}

static PyMethodDef methods[] = {{"checksum", checksum, METH_VARARGS, "A rolling checksum."}, {NULL, NULL, 0, NULL}};
static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_fast", NULL, -1, methods};
PyMODINIT_FUNC PyInit__fast(void) { return PyModule_Create(&module); }
"""


def _sdists() -> dict[str, dict[str, str]]:
    """name -> {path in the sdist: text}: three sdists, each built a different way."""
    util = {
        "setup.py": (
            "from setuptools import find_packages, setup\n\n"
            'setup(name="cwb-util", version="1.0", packages=find_packages(),\n'
            '      entry_points={"console_scripts": ["cwb-util = cwb_util:main"]})\n'
        ),
        "cwb_util/__init__.py": "def main() -> None:\n    print('cwb-util')\n",
    }
    for index in range(60):
        util[f"cwb_util/part{index:02d}.py"] = _PURE_MODULE.format(index=index)
    fast = {
        "pyproject.toml": '[build-system]\nrequires = ["setuptools"]\nbuild-backend = "setuptools.build_meta"\n',
        "setup.py": (
            "from setuptools import Extension, setup\n\n"
            'setup(name="cwb-fast", version="1.0", packages=["cwb_fast"],\n'
            '      ext_modules=[Extension("cwb_fast._fast", ["src/fast.c"])])\n'
        ),
        "cwb_fast/__init__.py": "from cwb_fast._fast import checksum\n\n__all__ = ['checksum']\n",
        "src/fast.c": _C_SOURCE,
    }
    app = {
        "pyproject.toml": (
            '[build-system]\nrequires = ["setuptools>=61"]\nbuild-backend = "setuptools.build_meta"\n\n'
            '[project]\nname = "cwb-app"\nversion = "1.0"\ndependencies = ["cwb-util", "cwb-fast"]\n\n'
            '[project.scripts]\ncwb-app = "cwb_app:main"\n\n[tool.setuptools]\npackages = ["cwb_app"]\n'
        ),
        "cwb_app/__init__.py": (
            "from cwb_fast import checksum\nfrom cwb_util.part01 import scale_1\n\n\n"
            "def main() -> None:\n    print(checksum(b'ciwatch'), scale_1([1.0]))\n"
        ),
    }
    return {"cwb-util": util, "cwb-fast": fast, "cwb-app": app}


def _write_sdist(directory: Path, name: str, files: dict[str, str]) -> None:
    """A reproducible ``name-1.0.tar.gz`` (PKG-INFO first, as setuptools writes it)."""
    base = f"{name.replace('-', '_')}-1.0"
    members = {"PKG-INFO": f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n", **files}
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path, text in members.items():
            data = text.encode()
            info = tarfile.TarInfo(f"{base}/{path}")
            info.size, info.mtime, info.mode = len(data), 1_700_000_000, 0o644
            tar.addfile(info, io.BytesIO(data))
    with gzip.GzipFile(directory / f"{base}.tar.gz", "wb", mtime=0) as out:
        out.write(buffer.getvalue())


def _pip_env() -> dict[str, str]:
    """The machine's pip settings left out: the workload sees only its own --find-links."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("PIP_")}
    env.update(PIP_CONFIG_FILE=os.devnull, PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INPUT="1")
    return env


def _venv_builds_wheels(python: Path) -> bool:
    """setuptools 70.1 and later build wheels without the separate `wheel` package."""
    probe = "import setuptools.command.bdist_wheel"
    return subprocess.run([str(python), "-c", probe], capture_output=True, check=False).returncode == 0


def _prepare_pip() -> str:
    _rmtree(PIP_DIST)
    PIP_DIST.mkdir(parents=True)
    sdists = _sdists()
    for name, files in sdists.items():
        _write_sdist(PIP_DIST, name, files)
    ready = PIP_PRISTINE / ".bench-ready"
    if not ready.exists():
        # Made at the path the runs use (scripts in a venv name it), then kept aside.
        _rmtree(PIP_PRISTINE)
        _rmtree(PIP_VENV)
        _run_quiet([sys.executable, "-m", "venv", str(PIP_VENV)], WORK)
        python = PIP_VENV / "bin" / "python"
        if not _venv_builds_wheels(python):
            # setuptools older than 70.1 builds wheels only with the `wheel` package: a newer
            # setuptools, fetched once by pip from its configured index, builds them itself.
            print("bench: pip: installing setuptools>=70.1 into the bench venv (once)", file=sys.stderr)
            _run_quiet([str(python), "-m", "pip", "install", "-q", "setuptools>=70.1"], WORK)
        shutil.copytree(PIP_VENV, PIP_PRISTINE, symlinks=True)
        ready.write_text(platform.python_version() + "\n")
    c_files = sum(path.endswith(".c") for files in sdists.values() for path in files)
    return f"`pip install` building {len(sdists)} local sdists ({c_files} C extension), fresh venv, no index"


def _reset_pip() -> None:
    _rmtree(PIP_VENV)
    shutil.copytree(PIP_PRISTINE, PIP_VENV, symlinks=True)


# apt: a small Debian package whose maintainer scripts run update-alternatives and whose files
# fire man-db's trigger, installed and purged from the archive apt already downloaded: dpkg's
# maintainer scripts are install hooks, and what a hook reads is followed.

APT_WORK = WORK / "apt"
APT_PACKAGE = "nano"
#: Set when the package was not installed before the bench first ran: the bench may purge it.
APT_OURS = APT_WORK / "package-is-the-benchs"
#: Another apt on a shared machine holds dpkg's lock for a moment: wait for it, don't fail.
APT_OPTIONS = ("-y", "-o", "DPkg::Lock::Timeout=300")
APT_COMMAND = (
    f"apt-get install {' '.join(APT_OPTIONS)} --no-download {APT_PACKAGE}"
    f" && apt-get purge {' '.join(APT_OPTIONS)} {APT_PACKAGE}"
)


def _apt_env() -> dict[str, str]:
    return {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}


def _apt_installed() -> bool:
    done = subprocess.run(
        ["dpkg-query", "-W", "-f=${db:Status-Status}", APT_PACKAGE], capture_output=True, text=True, check=False
    )
    return done.stdout.strip() == "installed"


def _prepare_apt() -> str:
    APT_WORK.mkdir(parents=True, exist_ok=True)
    if _apt_installed() and not APT_OURS.exists():
        raise SystemExit(f"bench: apt: {APT_PACKAGE} is installed on this machine: the workload would purge it")
    APT_OURS.write_text(f"{APT_PACKAGE} was not installed when the bench first ran\n")
    # The archive once, from the machine's configured sources (untimed); runs don't download.
    _run_quiet(["apt-get", "install", *APT_OPTIONS, "--download-only", APT_PACKAGE], APT_WORK, _apt_env())
    _reset_apt()
    return (
        f"`apt-get install` then `apt-get purge` of {APT_PACKAGE} (maintainer scripts, man-db trigger), archive local"
    )


def _reset_apt() -> None:
    if _apt_installed():
        _run_quiet(["apt-get", "purge", *APT_OPTIONS, APT_PACKAGE], APT_WORK, _apt_env())


WORKLOADS: list[Workload] = [
    Workload(
        name="npm",
        command=["npm", "ci", "--prefer-offline", "--no-audit", "--no-fund"],
        cwd=NPM_WORK,
        env={**os.environ, "npm_config_progress": "false", "npm_config_update_notifier": "false"},
        prepare=_prepare_npm,
        reset=_reset_npm,
        needs=("npm", "node"),
    ),
    Workload(
        name="npm-online",
        command=["npm", "ci", "--prefer-online", "--no-audit", "--no-fund"],
        cwd=NPM_WORK,
        env={
            **os.environ,
            "npm_config_progress": "false",
            "npm_config_update_notifier": "false",
            "npm_config_cache": str(NPM_ONLINE_CACHE),
        },
        prepare=_prepare_npm_online,
        reset=_reset_npm_online,
        needs=("npm", "node"),
    ),
    Workload(
        name="pip",
        command=[
            str(PIP_VENV / "bin" / "python"),
            "-m",
            "pip",
            "install",
            "--no-index",
            "--no-build-isolation",
            "--no-cache-dir",
            "--find-links",
            str(PIP_DIST),
            PIP_APP,
        ],
        cwd=PIP_WORK,
        env=_pip_env(),
        prepare=_prepare_pip,
        reset=_reset_pip,
        needs=("gcc",),
        shown="venv/bin/python -m pip install --no-index --no-build-isolation --no-cache-dir --find-links dist "
        + PIP_APP,
    ),
    Workload(
        name="apt",
        command=["sh", "-c", APT_COMMAND],
        cwd=APT_WORK,
        env=_apt_env(),
        prepare=_prepare_apt,
        reset=_reset_apt,
        needs=("apt-get", "dpkg-query"),
        needs_capabilities=True,
        shown=APT_COMMAND,
    ),
]


# -- measuring -----------------------------------------------------------------------------


#: A machine whose CPUs are busier than this with nothing of ours running is doing other work.
IDLE_THRESHOLD = 0.15


def _cpu_jiffies() -> tuple[int, int]:
    """(busy, total) CPU time of the whole machine so far, from /proc/stat."""
    fields = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return sum(fields) - idle, sum(fields)


def machine_busy(interval: float = 1.0) -> float:
    """How busy the machine's CPUs were (0..1) over the next ``interval`` seconds."""
    busy_before, total_before = _cpu_jiffies()
    time.sleep(interval)
    busy_after, total_after = _cpu_jiffies()
    return (busy_after - busy_before) / max(1, total_after - total_before)


def wait_until_idle(limit_s: float, threshold: float = IDLE_THRESHOLD) -> float:
    """Wait (at most ``limit_s``) until something else stops using the CPUs; returns how busy
    they were when the wait ended, so a round that had to start on a busy machine is known."""
    deadline = time.monotonic() + limit_s
    busy = machine_busy()
    while busy > threshold and time.monotonic() < deadline:
        print(f"  machine {busy:.0%} busy: waiting for it to quieten", file=sys.stderr)
        time.sleep(4)
        busy = machine_busy()
    return busy


@dataclass
class TracerStats:
    stops: int
    cpu_s: float
    event_counts: dict[str, int]
    file_ops: dict[str, int]
    max_rss_mb: float | None = None
    """The tracing process's peak RSS at its end line (None: a ciwatch that doesn't say)."""
    front_rss_mb: float | None = None
    """The front process's peak RSS (the process the bench started), from wait4."""


@dataclass
class Series:
    configuration: Configuration
    seconds: list[float] = field(default_factory=list)
    """Wall-clock time of each run, as the CI job waits for it."""
    cpu_seconds: list[float] = field(default_factory=list)
    """User + system CPU time of each run's whole process tree (tracer included)."""
    tracer: list[TracerStats] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    @property
    def cpu_median(self) -> float:
        return statistics.median(self.cpu_seconds)


@dataclass
class WorkloadResult:
    workload: Workload
    description: str
    iterations: int
    series: list[Series]
    busy_at_round_start: list[float] = field(default_factory=list)
    """How busy the machine was (something else running) as each round started."""

    def bare(self) -> Series:
        return next(s for s in self.series if s.configuration.name == "bare")


def _read_record(record: Path) -> TracerStats:
    """The tracer's figures from a record's end line, and its file writes by operation."""
    file_ops: Counter[str] = Counter()
    end: dict[str, object] = {}
    with record.open() as lines:
        for line in lines:
            event = json.loads(line)
            if event["kind"] == "file-write":
                file_ops[event["op"]] += 1
            elif event["kind"] == "end":
                end = event
    if not end:
        raise SystemExit(f"bench: {record} has no end line: ciwatch did not finish the run")
    counts = end.get("event_counts")
    stops, cpu = end.get("tracer_stops"), end.get("tracer_cpu_s")
    if not isinstance(stops, int) or not isinstance(cpu, int | float) or not isinstance(counts, dict):
        raise SystemExit(f"bench: {record}: the end line lacks tracer_stops, tracer_cpu_s or event_counts")
    rss = end.get("tracer_max_rss_mb")
    return TracerStats(stops, float(cpu), dict(counts), dict(file_ops), float(rss) if rss is not None else None)


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _reap_orphans(timeout_s: float = 10.0) -> None:
    """Wait for what a run left behind (ciwatch's tracer process outlives its front for a
    moment), so that its CPU time is counted; we are their subreaper."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            time.sleep(0.005)
    print("bench: a process of the last run is still running after it ended", file=sys.stderr)


def become_subreaper() -> None:
    """Orphans of a run (ciwatch's tracer) become our children, so RUSAGE_CHILDREN counts them."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        print("bench: cannot become a subreaper: the CPU column may miss ciwatch's tracer", file=sys.stderr)


_PR_SET_CHILD_SUBREAPER = 36
#: A run killed by a SIGKILL from outside the bench is run again, this many times in all.
_ATTEMPTS = 3


def run_at_niceness(nice: int) -> None:
    """Go on in a session of our own at this niceness; the calling process only waits.

    With autogroup scheduling (most desktop and VM kernels), niceness weighs only against the
    processes of the same session: a session of its own, with its autogroup niced too, is what
    makes the bench win the CPUs from other work on a shared machine."""
    child = os.fork()
    if child:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, lambda number, frame: os.killpg(child, number))
        _, status = os.waitpid(child, 0)
        sys.exit(os.waitstatus_to_exitcode(status))
    os.setsid()
    autogroup = Path("/proc/self/autogroup")
    if autogroup.exists():
        try:
            autogroup.write_text(f"{nice}\n")
        except OSError as error:
            print(f"bench: cannot set the autogroup's niceness: {error.strerror}", file=sys.stderr)
    try:
        os.nice(nice)
    except OSError as error:
        print(f"bench: cannot change niceness by {nice}: {error.strerror}", file=sys.stderr)


def _timed(command: list[str], workload: Workload, log: Path) -> tuple[int, float, float]:
    """(exit code, wall seconds, peak RSS in MB of the process started: ciwatch's front, which
    waits for no child of its own, so its peak is its own) of one run of ``command``."""
    with log.open("wb") as output:
        started = time.perf_counter()
        process = subprocess.Popen(
            command, cwd=workload.cwd, env=workload.env, stdin=subprocess.DEVNULL, stdout=output, stderr=output
        )
        _, status, usage = os.wait4(process.pid, 0)
        elapsed = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)  # reaped here: Popen must not wait
    return process.returncode, elapsed, usage.ru_maxrss * 1024 / 1e6


def _run_once(workload: Workload, configuration: Configuration, label: str) -> tuple[float, float, TracerStats | None]:
    """(wall seconds, CPU seconds of the whole tree, the tracer's figures) of one run."""
    slug = configuration.name.replace(" ", "").replace("-", "")
    record_dir = WORK / "records" / f"{workload.name}-{slug}"
    log = WORK / "logs" / f"{workload.name}-{slug}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    _rmtree(record_dir)
    workload.reset()
    ciwatch = list(configuration.ciwatch) or installed_ciwatch()
    invocation = Invocation(list(workload.command), record_dir, ciwatch, workload.needs_capabilities)
    command = configuration.wrap(invocation)
    for attempt in range(1, _ATTEMPTS + 1):
        _reap_orphans()
        cpu_before = _children_cpu()
        returncode, elapsed, front_rss_mb = _timed(command, workload, log)
        _reap_orphans()
        cpu = _children_cpu() - cpu_before
        if returncode != -signal.SIGKILL or attempt == _ATTEMPTS:
            break
        # Nothing in the bench sends SIGKILL: something else on the machine did. Not a measurement.
        print(f"bench: {label} was killed from outside (SIGKILL); running it again", file=sys.stderr)
        _rmtree(record_dir)
        workload.reset()
    if returncode != 0:
        tail = log.read_text(errors="replace")[-3000:]
        raise SystemExit(f"bench: {label} exited {returncode}; the end of {log}:\n{tail}")
    if not configuration.runs_ciwatch:
        return elapsed, cpu, None
    stats = _read_record(record_dir / "record.jsonl")
    stats.front_rss_mb = front_rss_mb
    return elapsed, cpu, stats


def measure(
    workload: Workload, configurations: list[Configuration], iterations: int, warmup: int, idle_wait_s: float
) -> WorkloadResult:
    description = workload.prepare()
    configurations = [c for c in configurations if c.workloads is None or workload.name in c.workloads]
    print(f"bench: {workload.name}: {description}", file=sys.stderr)
    for index in range(warmup):
        elapsed, _, _ = _run_once(workload, configurations[0], f"{workload.name} warm-up")
        print(f"  warm-up {index + 1}/{warmup}: {configurations[0].name} {elapsed:.2f}s", file=sys.stderr)
    series = [Series(c) for c in configurations]
    result = WorkloadResult(workload, description, iterations, series)
    for iteration in range(iterations):
        result.busy_at_round_start.append(wait_until_idle(idle_wait_s))
        # Round robin, starting one further each round: no configuration always follows another.
        shift = iteration % len(series)
        for entry in series[shift:] + series[:shift]:
            label = f"{workload.name} {entry.configuration.name} #{iteration + 1}"
            elapsed, cpu, stats = _run_once(workload, entry.configuration, label)
            entry.seconds.append(elapsed)
            entry.cpu_seconds.append(cpu)
            if stats is not None:
                entry.tracer.append(stats)
            extra = f"  ({stats.stops} stops, tracer {stats.cpu_s:.2f}s CPU)" if stats else ""
            print(
                f"  [{iteration + 1}/{iterations}] {entry.configuration.name:<24} {elapsed:7.2f}s, CPU {cpu:6.2f}s"
                + extra,
                file=sys.stderr,
            )
    return result


# -- reporting -----------------------------------------------------------------------------


def _version(command: Sequence[str]) -> str:
    try:
        done = subprocess.run(command, capture_output=True, text=True, check=False, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return "absent"
    lines = (done.stdout or done.stderr).strip().splitlines()
    return lines[0].strip() if lines else "unknown"


def machine() -> dict[str, str]:
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": str(os.cpu_count()),
        "kernel": platform.release(),
        "os": _version(["sh", "-c", ". /etc/os-release && echo $PRETTY_NAME"]),
        "python": platform.python_version(),
        "node": _version(["node", "--version"]),
        "npm": _version(["npm", "--version"]),
        "strace": _version(["strace", "-V"]).removeprefix("strace -- version "),
        "gcc": _version(["gcc", "-dumpfullversion"]),
        "ciwatch": _version([*installed_ciwatch(), "--version"]).removeprefix("ciwatch, version ") + " (installed)",
    }


def _tracer_summary(series: Series) -> list[str] | None:
    """stops, tracer CPU, µs per stop, peak RSS, file writes by op (medians over the iterations)."""
    if not series.tracer:
        return None
    stops = statistics.median(t.stops for t in series.tracer)
    cpu = statistics.median(t.cpu_s for t in series.tracer)
    per_stop = statistics.median(t.cpu_s / t.stops * 1e6 for t in series.tracer if t.stops)
    last = series.tracer[-1]
    ops = ", ".join(f"{op} {n}" for op, n in sorted(last.file_ops.items(), key=lambda item: -item[1]))
    events = ", ".join(f"{kind} {n}" for kind, n in sorted(last.event_counts.items()) if kind != "file-write")
    return [
        f"{stops:.0f}",
        f"{cpu:.2f} s",
        f"{per_stop:.0f}",
        f"{cpu / series.median:.0%}",
        _peak_mb([t.max_rss_mb for t in series.tracer]),
        _peak_mb([t.front_rss_mb for t in series.tracer]),
        ops or "-",
        events,
    ]


def _peak_mb(values: list[float | None]) -> str:
    """The highest peak over the iterations (the target is a ceiling, not a median)."""
    known = [value for value in values if value is not None]
    return f"{max(known):.0f} MB" if known else "-"


def _table(header: list[str], rows: list[list[str]], markdown: bool) -> str:
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
        lines += ["| " + " | ".join(row) + " |" for row in rows]
        return "\n".join(lines)
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows, strict=True)]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)) for row in [header, *rows]
    )


def _paired_ratio(series: Series, bare: Series) -> float:
    """The median over rounds of this run's time over the same round's bare run: steadier than
    the ratio of medians when the machine's speed drifts between rounds."""
    return statistics.median(t / b for t, b in zip(series.seconds, bare.seconds, strict=True))


def report(results: list[WorkloadResult], facts: dict[str, str], markdown: bool) -> str:
    out: list[str] = []
    facts_line = ", ".join(f"{key} {value}" for key, value in facts.items())
    out.append(f"Measured {facts_line}.\n" if markdown else f"{facts_line}\n")
    for result in results:
        bare = result.bare().median
        command = result.workload.shown or " ".join(result.workload.command)
        title = f"{result.workload.name}: {result.description}; median of {result.iterations}"
        out.append(f"### {title}\n\nCommand: `{command}`\n" if markdown else f"== {title}\n   {command}")
        rows = []
        for series in result.series:
            name = f"`{series.configuration.name}`" if markdown and series.configuration.name != "bare" else None
            rows.append(
                [
                    name or series.configuration.name,
                    f"{series.median:.2f} s",
                    f"{min(series.seconds):.2f} - {max(series.seconds):.2f} s",
                    f"{series.median / bare:.2f}x",
                    f"{_paired_ratio(series, result.bare()):.2f}x",
                    f"{series.cpu_median:.2f} s",
                    f"{series.cpu_median / result.bare().cpu_median:.2f}x",
                ]
            )
        header = ["configuration", "median", "min - max", "vs bare", "paired", "CPU", "CPU vs bare"]
        out.append(_table(header, rows, markdown))
        busy = [b for b in result.busy_at_round_start if b > IDLE_THRESHOLD]
        if busy:
            note = (
                f"{len(busy)} of {result.iterations} rounds started while other work kept the CPUs {max(busy):.0%} busy"
            )
            out.append(f"\n{'*' if markdown else '   '}{note}{'*' if markdown else ''}")
        out.append("")
    tracer_rows = []
    for result in results:
        for series in result.series:
            summary = _tracer_summary(series)
            if summary is not None:
                tracer_rows.append([result.workload.name, series.configuration.name, *summary])
    if tracer_rows:
        out.append("### ciwatch's tracer (from the record's end line; medians)\n" if markdown else "== tracer")
        header = ["workload", "configuration", "stops", "tracer CPU", "µs/stop", "CPU/wall", "tracer RSS", "front RSS"]
        header.append("file writes by op")
        header.append("other events")
        out.append(_table(header, tracer_rows, markdown) + "\n")
    return "\n".join(out)


def _save(results: list[WorkloadResult], facts: dict[str, str]) -> Path:
    """Every measured second, for comparing runs later."""
    path = WORK / "results" / f"{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {
        "machine": facts,
        "workloads": {
            r.workload.name: {
                "description": r.description,
                "busy_at_round_start": r.busy_at_round_start,
                "command": r.workload.command,
                "configurations": {
                    s.configuration.name: {
                        "seconds": s.seconds,
                        "cpu_seconds": s.cpu_seconds,
                        "tracer": [t.__dict__ for t in s.tracer],
                    }
                    for s in r.series
                },
            }
            for r in results
        },
    }
    path.write_text(json.dumps(data, indent=2) + "\n")
    return path


def main(argv: Sequence[str] | None = None) -> int:
    names = [w.name for w in WORKLOADS]
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--workload", choices=[*names, "all"], default="all", help="which workload (default: all)")
    parser.add_argument("--iterations", type=int, default=7, help="measured runs per configuration (default: 7)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed bare runs first, per workload (default: 1)")
    parser.add_argument("--markdown", action="store_true", help="print the tables in Markdown")
    parser.add_argument(
        "--only", metavar="NAMES", help="only these configurations (comma-separated; bare is always run)"
    )
    parser.add_argument(
        "--idle-wait",
        type=float,
        default=0,
        metavar="S",
        help="before each round, wait up to S seconds for other work on the machine to stop (default: 0, only "
        "note how busy it was)",
    )
    parser.add_argument(
        "--nice",
        type=int,
        default=0,
        metavar="N",
        help="run the bench and everything it starts at this niceness increment (e.g. -10 on a machine shared "
        "with other work: needs root)",
    )
    parser.add_argument(
        "--revision",
        metavar="REV",
        action="append",
        default=[],
        help="measure ciwatch as committed at this git revision instead of the installed (working tree) one; "
        "repeat it to compare revisions in one interleaved run",
    )
    args = parser.parse_args(argv)
    if args.iterations < 1:
        parser.error("--iterations must be at least 1")
    chosen = [w for w in WORKLOADS if (w.in_all if args.workload == "all" else w.name == args.workload)]
    for tool in sorted({"strace", *(tool for w in chosen for tool in w.needs)}):
        if shutil.which(tool) is None:
            parser.error(f"{tool} is not installed")
    WORK.mkdir(parents=True, exist_ok=True)
    if args.nice:
        run_at_niceness(args.nice)
    become_subreaper()
    wanted = {"bare", *args.only.split(",")} if args.only else None
    configurations = [c for c in CONFIGURATIONS if (c.default if wanted is None else c.name in wanted)]
    if wanted is not None and len(configurations) != len(wanted):
        parser.error(f"--only: known configurations are {', '.join(c.name for c in CONFIGURATIONS)}")
    configurations, commits = per_revision(configurations, args.revision)
    facts = machine()
    if commits:
        facts["ciwatch"] = "commits " + ", ".join(commit[:12] for commit in commits)
    if args.nice:
        facts["niceness"] = str(os.nice(0)) + (" (autogroup too)" if Path("/proc/self/autogroup").exists() else "")
    results = [measure(w, configurations, args.iterations, args.warmup, args.idle_wait) for w in chosen]
    saved = _save(results, facts)
    print(report(results, facts, args.markdown))
    print(f"bench: raw results in {saved}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
