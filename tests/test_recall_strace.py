"""Recall against ground truth: everything strace sees the npm and pip scenarios exec and open for
writing must be in ciwatch's record.

Each scenario runs twice on a fresh copy of its fixture at the same path (same workspace, same
TMPDIR, same loopback servers): once under ``strace -f -ff -qq -v -s 65536 -xx -y -e
trace=execve,execveat,open,openat,openat2,creat`` and once under ``ciwatch run --net off``.

How the two are compared, and why it is robust:

- ``-ff`` writes one file per process, so no line is split into ``<unfinished ...>`` and
  ``resumed``; ``-xx`` prints every string as ``\\xHH`` escapes, so parsing needs no C-string
  unquoting and paths with odd bytes survive; ``-v -s 65536`` keeps argv whole.
- Paths of opens are resolved the way the kernel did: ``-y`` prints the directory behind the
  dirfd, including ``AT_FDCWD</cwd>``, so a relative path is joined to the directory it was
  opened in, then normalised (``os.path.normpath``, symlinks not followed), which is how
  ciwatch resolves its paths. An ``open``/``creat`` with a relative path (no dirfd to print)
  falls back to the path of the descriptor it returned.
- A successful exec is found in the record when a ``process-exec`` has the same executed path
  and the same argv; for a script the kernel rewrites argv to ``interpreter [arg] script
  args...``, and /proc (where ciwatch reads argv) shows that, so there the script's path as
  given must be in the argv, followed by the original arguments. A relative exec path (no cwd in
  strace's line) is compared by file name.
- Only names that differ between two runs of the same workload are normalised, the same way
  on both sides (``_RUN_SPECIFIC``): Python's tempfile names (a prefix and 8 random
  characters), pip's adjacent temp files, importlib's ``.pyc.<id>`` temp files, npm's cache
  temp dirs and its time-stamped debug log.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from ciwatch.record.events import FileWrite, ProcessExec
from ciwatch.record.vocabulary import FileOp
from ciwatch.trace.fanotify import unavailable_reason as fanotify_unavailable
from tests.conftest import require
from tests.support.packages import (
    LoopbackServers,
    NpmPackage,
    PythonSdist,
    loopback_servers,
    make_hook_package,
    make_npm_project,
    make_python_sdist,
    make_venv,
    npm_env,
    pip_env,
    pip_install_command,
)
from tests.support.runner import run_ciwatch

_STRACE_CALLS = "execve,execveat,open,openat,openat2,creat"
_WRITE_FLAGS = {"O_WRONLY", "O_RDWR", "O_CREAT", "O_TRUNC"}

_STRING = re.compile(r'"((?:\\x[0-9a-f]{2})*)"')
_DIRFD = r"(?:(?:AT_FDCWD|-?\d+)(?:<(?P<dir>(?:\\x[0-9a-f]{2})*)>)?, )"
_EXEC_LINE = re.compile(
    rf'^(?P<call>execve|execveat)\({_DIRFD}?"(?P<path>(?:\\x[0-9a-f]{{2}})*)", \[(?P<argv>[^\]]*)\].* = (?P<ret>-?\d+)'
)
_OPEN_LINE = re.compile(
    rf'^(?P<call>open|openat|openat2|creat)\({_DIRFD}?"(?P<path>(?:\\x[0-9a-f]{{2}})*)", (?P<flags>\{{[^}}]*\}}|[^,)]*)'
    r".*\) = (?P<ret>-?\d+)(?:<(?P<fdpath>(?:\\x[0-9a-f]{2})*)>)?"
)


def _decode(hex_escaped: str) -> str:
    return bytes.fromhex(hex_escaped.replace("\\x", "")).decode("utf-8", "surrogateescape")


@dataclass(frozen=True)
class GroundTruth:
    execs: list[tuple[str, list[str]]]
    """(path as passed to exec, argv) of every successful exec."""
    writes: set[str]
    """Absolute, normalised paths of every successful open for writing."""


def parse_strace(prefix: Path) -> GroundTruth:
    execs: list[tuple[str, list[str]]] = []
    writes: set[str] = set()
    files = sorted(prefix.parent.glob(prefix.name + ".*"))
    assert files, f"strace wrote nothing at {prefix}"
    for trace in files:
        for line in trace.read_text(encoding="ascii", errors="replace").splitlines():
            if match := _EXEC_LINE.match(line):
                if int(match["ret"]) == 0:
                    execs.append((_decode(match["path"]), [_decode(arg) for arg in _STRING.findall(match["argv"])]))
            elif (match := _OPEN_LINE.match(line)) and int(match["ret"]) >= 0:
                flags = set(re.findall(r"O_[A-Z_]+", match["flags"]))
                if match["call"] != "creat" and not flags & _WRITE_FLAGS:
                    continue
                path = _decode(match["path"])
                if not path.startswith("/"):
                    if match["dir"] is not None:
                        path = os.path.join(_decode(match["dir"]), path)
                    else:
                        assert match["fdpath"] is not None, line
                        path = _decode(match["fdpath"])
                writes.add(os.path.normpath(path))
    return GroundTruth(execs, writes)


def _run_specific(tmpdir: Path) -> list[tuple[re.Pattern[str], str]]:
    """Names that differ between two runs of the same workload, and what they become."""
    return [
        # Python's tempfile: "tmp", or pip's "pip-<purpose>-", or pip's ".tmp-", then 8 random chars.
        (re.compile(r"(?<=/)(tmp|pip-[a-z]+(?:-[a-z]+)*-|\.tmp-)[a-z0-9_]{8}(?![a-z0-9_])"), r"\1<random>"),
        # ... and with no prefix at all, directly in TMPDIR.
        (re.compile(re.escape(f"{tmpdir}/") + r"[a-z0-9_]{8}(?![a-z0-9_])"), f"{tmpdir}/<random>"),
        # pip's adjacent_tmp_file: <name><8 random chars>.tmp beside the file it replaces.
        (re.compile(r"[a-z0-9_]{8}\.tmp$"), "<random>.tmp"),
        # importlib writes a .pyc to <path>.<id(path)>, then renames it.
        (re.compile(r"\.pyc\.\d+$"), ".pyc.<id>"),
        # npm's cache: temp dirs (a UUID or 6 random chars) and a debug log named by the time.
        (re.compile(r"(?<=/_cacache/tmp/)[^/]+"), "<random>"),
        (re.compile(r"(?<=/_logs/)\d{4}-\d\d-\d\dT[\d_]+Z"), "<time>"),
    ]


def _normaliser(tmpdir: Path) -> Callable[[str], str]:
    rules = _run_specific(tmpdir)

    def normalise(text: str) -> str:
        for pattern, replacement in rules:
            text = pattern.sub(replacement, text)
        return text

    return normalise


@dataclass(frozen=True)
class Workload:
    command: list[str]
    cwd: Path
    env: dict[str, str]
    tmpdir: Path


@dataclass(frozen=True)
class Recall:
    expected: int
    missing: list[str]

    @property
    def ratio(self) -> float:
        return 1 - len(self.missing) / self.expected


def measure_recall(workspace: Path, prepare: Callable[[Path], Workload], file_events: str) -> Recall:
    """Run the workload under strace, then (on a fresh copy) under ciwatch, its file writes
    learned from ``file_events`` (stops or fanotify); what strace saw that the record lacks."""
    shutil.rmtree(workspace, ignore_errors=True)
    workload = prepare(workspace)
    traces = workspace.parent / f"{workspace.name}-strace"
    traces.mkdir()
    strace = ["strace", "-f", "-ff", "-qq", "-v", "-s", "65536", "-xx", "-y", "-e", f"trace={_STRACE_CALLS}"]
    subprocess.run(
        [*strace, "-o", str(traces / "trace"), "--", *workload.command],
        cwd=workload.cwd,
        env={**os.environ, **workload.env},
        check=True,
        capture_output=True,
    )
    truth = parse_strace(traces / "trace")

    shutil.rmtree(workspace)
    workload = prepare(workspace)
    run = run_ciwatch(
        ["--net", "off", "--file-events", file_events, "--", *workload.command],
        workspace.parent / f"{workspace.name}-out",
        cwd=workload.cwd,
        env=workload.env,
    )
    assert run.code == 0, run.stderr
    record = run.record

    normalise = _normaliser(workload.tmpdir)
    recorded_execs = [
        (normalise(event.path), [normalise(arg) for arg in event.argv])
        for event in (item.event for item in record.events)
        if isinstance(event, ProcessExec)
    ]
    recorded_writes = {
        normalise(event.path)
        for event in (item.event for item in record.events)
        if isinstance(event, FileWrite) and event.op in (FileOp.OPEN, FileOp.CREAT)
    }

    def exec_recorded(path: str, argv: list[str]) -> bool:
        for recorded_path, recorded_argv in recorded_execs:
            if path.startswith("/"):
                if recorded_path != os.path.normpath(path):
                    continue
            elif os.path.basename(recorded_path) != os.path.basename(path):
                continue
            if recorded_argv == argv:
                return True
            script_args = argv[1:]
            if path in recorded_argv and recorded_argv[len(recorded_argv) - len(script_args) :] == script_args:
                return True
        return False

    missing = []
    for path, argv in truth.execs:
        path, argv = normalise(path), [normalise(arg) for arg in argv]
        if not exec_recorded(path, argv):
            missing.append(f"exec {path} {argv}")
    for path in sorted({normalise(path) for path in truth.writes}):
        if path not in recorded_writes:
            missing.append(f"write {path}")
    return Recall(len(truth.execs) + len(truth.writes), missing)


def _assert_complete(recall: Recall, what: str) -> None:
    print(f"recall {what}: {recall.ratio:.1%} of {recall.expected} execs and writes")
    assert not recall.missing, f"{what}: ciwatch missed {len(recall.missing)} of {recall.expected}:\n" + "\n".join(
        recall.missing
    )


# -- the scenarios -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LoopbackServers]:
    with loopback_servers(tmp_path_factory.mktemp("recall-servers")) as running:
        yield running


@pytest.fixture(scope="module")
def strace() -> str:
    return require("strace")


@pytest.fixture(params=["ptrace", "fanotify"])
def file_events(request: pytest.FixtureRequest) -> str:
    """Both sources of file events: seccomp stops, and fanotify (root only)."""
    if request.param == "fanotify" and fanotify_unavailable() is not None:
        pytest.skip(f"fanotify: {fanotify_unavailable()}")
    return str(request.param)


@pytest.mark.npm
def test_npm_hook_install_recall_is_complete(
    tmp_path_factory: pytest.TempPathFactory, servers: LoopbackServers, strace: str, file_events: str
) -> None:
    template = make_hook_package(tmp_path_factory.mktemp("recall-npm-package"))

    def prepare(workspace: Path) -> Workload:
        tmpdir = workspace / "tmp"
        tmpdir.mkdir(parents=True)
        tarball = workspace / template.tarball.name
        shutil.copy(template.tarball, tarball)
        package = NpmPackage(template.name, template.version, template.directory, tarball)
        project = make_npm_project(workspace / "project", allow_scripts_from=[package.tarball])
        command = ["npm", "install", "--no-audit", "--no-fund", str(package.tarball)]
        env = {**npm_env(workspace / "npm-cache"), **servers.hook_env("/recall"), "TMPDIR": str(tmpdir)}
        return Workload(command, project, env, tmpdir)

    recall = measure_recall(tmp_path_factory.mktemp("recall-npm").resolve() / "w", prepare, file_events)
    _assert_complete(recall, "npm install with preinstall and postinstall hooks")
    assert recall.expected > 20


@pytest.mark.pip
@pytest.mark.parametrize("pep517", [False, True], ids=["setup.py", "pep517"])
def test_pip_sdist_build_recall_is_complete(
    tmp_path_factory: pytest.TempPathFactory, pep517: bool, strace: str, file_events: str
) -> None:
    template = make_python_sdist(tmp_path_factory.mktemp("recall-sdist"), "recallpkg", "4.5.6", pep517=pep517)

    def prepare(workspace: Path) -> Workload:
        tmpdir, marks = workspace / "tmp", workspace / "marks"
        tmpdir.mkdir(parents=True)
        marks.mkdir()
        sdist: PythonSdist = replace(template, path=workspace / template.path.name)
        shutil.copy(template.path, sdist.path)
        python = make_venv(workspace / "venv")
        env = {**pip_env(marks, workspace / "pip-cache"), "TMPDIR": str(tmpdir)}
        return Workload(pip_install_command(python, sdist), workspace, env, tmpdir)

    recall = measure_recall(tmp_path_factory.mktemp("recall-pip").resolve() / "w", prepare, file_events)
    _assert_complete(recall, f"pip install of a {'PEP 517' if pep517 else 'setup.py'} sdist")
    assert recall.expected > 20
