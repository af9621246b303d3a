"""A hook's read-only opens judged by path class in the compiled stop loop (issue 14, apt).

In ptrace mode a hook's processes stop at every read-only open so that ``credential-read`` can
be judged; man-db's trigger under apt makes tens of thousands. The compiled loop resumes, in C,
each one whose canonical path starts with none of the credential patterns' literal heads
(``credential_prefixes``), without handing it to Python. The record must not change: the
credentials a hook reads, by any spelling, are recorded as the Python loop records them, and
the system files are not recorded at all.
"""

from __future__ import annotations

import fnmatch
import itertools
import os
import shutil
from pathlib import Path

import pytest

from ciwatch.facts.paths import CREDENTIAL_PATTERNS, credential_prefixes, is_credential_path
from ciwatch.record.closing import End
from ciwatch.record.events import FileRead, FileWrite
from ciwatch.record.vocabulary import FileOp
from ciwatch.trace import batch
from ciwatch.trace.decode import canonicalise
from ciwatch.trace.decode.files import decode_open, decode_openat
from ciwatch.trace.memory import _readlink
from ciwatch.trace.table import BY_NUMBER, WRITE_OPEN_FLAGS
from tests.support.cprograms import program
from tests.support.packages import make_npm_package, make_npm_project, npm_env
from tests.support.runner import CiwatchRun, run_ciwatch

SYSTEM_READS = 4000
PYTHON_LOOP = {"CIWATCH_STOP_LOOP": "python"}
COMPILED_LOOP = {"CIWATCH_STOP_LOOP": "compiled"}

# -- the class of paths: derived from the one table ---------------------------------------


def _samples(pattern: str) -> list[str]:
    """Paths that ``pattern`` matches, its globs filled several ways (``*`` across ``/`` too)."""
    fills = ["", "x", "a/b", "id_ed25519", "../../etc"]
    found = []
    for fill in fills:
        path = pattern.replace("*", fill).replace("?", "q")
        if fnmatch.fnmatchcase(path, pattern):
            found.append(path)
    return found


@pytest.mark.parametrize("home", ["/home/u", "/home/u/", "/root", "/h[o]me/x*y", ""])
def test_every_credential_path_starts_with_a_prefix(home: str) -> None:
    prefixes = credential_prefixes(home)
    checked = 0
    for pattern in CREDENTIAL_PATTERNS:
        expanded = (home.rstrip("/") + pattern[1:]) if pattern.startswith("~") else pattern
        if pattern.startswith("~") and not home:
            continue
        for path in _samples(expanded):
            if is_credential_path(path, home):
                checked += 1
                assert any(path.startswith(prefix) for prefix in prefixes), (path, prefixes)
    assert checked >= len(CREDENTIAL_PATTERNS) // 2


def test_prefixes_are_narrow_enough_to_matter() -> None:
    prefixes = credential_prefixes("/home/u")
    # What a trigger reads is in none of them; what sits beside a credential is (Python decides).
    for path in ("/usr/share/man/man1/ls.1.gz", "/usr/lib/x86_64-linux-gnu/libc.so.6", "/etc/passwd", "/home/u/src"):
        assert not any(path.startswith(prefix) for prefix in prefixes), path
    assert any("/home/u/.npmrc.old".startswith(prefix) for prefix in prefixes)
    assert not is_credential_path("/home/u/.npmrc.old", "/home/u")
    # /proc is always Python's: its own-process exemption is judged there.
    assert "/proc/" in prefixes


def test_random_paths_never_credentials_outside_the_prefixes() -> None:
    home = "/home/u"
    prefixes = credential_prefixes(home)
    parts = ["home", "u", ".ssh", ".npmrc", "proc", "1", "environ", "etc", "shadow", ".aws", "x", ".config", "gh"]
    for length in range(1, 5):
        for combination in itertools.product(parts, repeat=length):
            path = "/" + "/".join(combination)
            if is_credential_path(path, home):
                assert any(path.startswith(prefix) for prefix in prefixes), path


@pytest.mark.parametrize("decoder", [decode_open, decode_openat])
def test_read_opens_name_the_flags_the_decoder_reads(decoder: object) -> None:
    # The loop drops an open as a read by the argument read_open_flag_args names: it must be
    # the one whose flags the decoder puts in the event (which FileWatch.on_file judges).
    read_opens = batch.read_open_flag_args()
    assert {BY_NUMBER[number].name for number in read_opens} == {"open", "openat"}
    for number, arg in read_opens.items():
        row = BY_NUMBER[number]
        for flags in (0, 0o1, 0o2, 0o100, 0o1000, 0o2000000, WRITE_OPEN_FLAGS):
            args = tuple(flags if index == arg else -100 if index == 0 else 0x1000 for index in range(6))
            event = row.decode(1, args, _Abs())
            assert isinstance(event, FileWrite) and event.op is FileOp.OPEN
            assert event.flags == flags


class _Abs:
    def read_cstring(self, address: int) -> bytes:
        return b"/usr/share/x"

    def read_bytes(self, address: int, size: int) -> bytes:
        return b""

    def read_u64(self, address: int) -> int | None:
        return None

    def write_bytes(self, address: int, data: bytes) -> bool:
        return False

    def cwd(self) -> str:
        return "/"

    def fd_path(self, fd: int) -> str:
        return "/"

    def canonical(self, path: str, follow: bool) -> str:
        return path


# -- the path the loop judges is the one Python's walk gives ------------------------------


def _tree(root: Path) -> None:
    """Files, directories, symlinks (to files, to directories, relative, chained, dangling,
    to a missing directory, to /proc/self), a file where a directory is expected."""
    (root / "d" / "e").mkdir(parents=True)
    (root / "d" / "f").write_text("x")
    (root / "d" / "e" / "g").write_text("x")
    (root / "home" / "u").mkdir(parents=True)
    (root / "home" / "u" / ".npmrc").write_text("x")
    links = {
        "to-file": root / "d" / "f",
        "to-dir": root / "d",
        "rel": Path("d/e/g"),
        "chain": Path("rel"),
        "dangling": root / "nowhere" / "x",
        "to-missing-dir": root / "missing",
        "to-self": Path("/proc/self/environ"),
        "to-npmrc": root / "home" / "u" / ".npmrc",
        "to-ssh": root / "home" / "u" / ".ssh" / "id_rsa",
    }
    for name, target in links.items():
        (root / name).symlink_to(target)


def _spellings(root: Path) -> list[str]:
    r = str(root)
    tails = [
        "d/f", "d/e/g", "d/missing", "missing/x", "missing/deeper/x", "d/f/under-a-file", "to-file",
        "to-dir/f", "to-dir/e/g", "rel", "chain", "dangling", "to-missing-dir/x", "to-missing-dir",
        "to-self", "to-npmrc", "to-ssh", "home/u/.ssh/id_rsa", "home/u/.npmrc", "d/./f", "./missing/./x",
        "d/e/../f", "missing/../d/f", "to-dir/../d/f", "d//e//g", "d/e/", "missing/", "to-dir/missing/x",
        "to-file/x", "dangling/x",
    ]  # fmt: skip
    return [f"{r}/{tail}" for tail in tails] + ["/", "/proc/self/environ", "/proc/1/environ", "/nonexistent/x"]


@pytest.mark.parametrize("follow", [True, False])
def test_the_loop_judges_a_read_by_the_path_python_would_record(tmp_path: Path, follow: bool) -> None:
    assert batch._stoploop is not None, batch.compiled_loop_state()
    root = tmp_path.resolve()
    _tree(root)
    judged = 0
    for joined in _spellings(root):
        found = batch._stoploop.judged_path(os.fsencode(joined), follow)
        walked = canonicalise(joined, _readlink, os.getpid(), os.getpid(), follow)
        if found is not None:
            judged += 1
            assert found == walked, joined
        else:  # left to Python: /proc, a symlink the walk follows past a missing part, ".."
            assert walked.startswith("/proc/") or ".." in joined or "dangling" in joined or "to-" in joined, joined
    assert judged >= 15


# -- a real hook, both loops ------------------------------------------------------------


def _hook_run(tmp_path: Path, env: dict[str, str], name: str) -> tuple[CiwatchRun, Path, Path]:
    """An npm postinstall that runs read_many, in the same directories each time."""
    workspace = tmp_path.resolve() / "w"
    home = workspace / "home"
    scratch = workspace / "scratch"
    shutil.rmtree(workspace, ignore_errors=True)
    (home / "sub").mkdir(parents=True)
    scratch.mkdir()
    (home / ".npmrc").write_text("# a test credential\n")
    reader = program("read_many")
    hook = f"{reader} {SYSTEM_READS} {scratch}"
    template = make_npm_package(workspace / "package", "readsmany", "1.0.0", {"postinstall": hook})
    tarball = workspace / template.tarball.name
    shutil.copy(template.tarball, tarball)
    project = make_npm_project(workspace / "project", allow_scripts_from=[tarball])
    run = run_ciwatch(
        ["--net", "off", "--file-events", "ptrace", "--", "npm", "install", "--no-audit", "--no-fund", str(tarball)],
        tmp_path / name,
        cwd=project,
        env={**npm_env(workspace / "cache"), "HOME": str(home), **env},
    )
    assert run.code == 0, run.stderr
    return run, home, scratch


def _reads(run: CiwatchRun) -> list[tuple[str, str | None]]:
    return sorted(((read.path, read.as_written) for read in run.events(FileRead)), key=repr)


@pytest.mark.npm
@pytest.mark.slow
def test_a_hooks_system_reads_stay_in_the_loop_and_its_credential_reads_are_recorded(tmp_path: Path) -> None:
    compiled, home, scratch = _hook_run(tmp_path, COMPILED_LOOP, "compiled")
    compiled_reads = _reads(compiled)
    python, _, _ = _hook_run(tmp_path, PYTHON_LOOP, "python")
    python_reads = _reads(python)

    npmrc = f"{home}/.npmrc"
    expected_npmrc = [
        (npmrc, None),
        (npmrc, ".npmrc"),  # relative to the cwd, and relative to a dirfd
        (npmrc, ".npmrc"),
        (npmrc, f"{scratch}/h/.npmrc"),
        (npmrc, f"{scratch}/npmrc-link"),
        (npmrc, "sub/../.npmrc"),
    ]
    assert sorted((read for read in compiled_reads if read[0] == npmrc), key=repr) == sorted(expected_npmrc, key=repr)
    # Reads of credentials that aren't there are recorded as well (the open fails): by the
    # path that a missing directory or a dangling symlink would have led to.
    assert (f"{home}/.ssh/id_ed25519", ".ssh/id_ed25519") in compiled_reads
    assert (f"{home}/.aws/credentials", f"{scratch}/dangling") in compiled_reads
    environs = [read for read in compiled_reads if read[0].startswith("/proc/")]
    assert len(environs) == 1 and environs[0][0].endswith("/environ"), environs
    assert not any(read[0].startswith("/usr/") for read in compiled_reads), compiled_reads
    assert len(compiled_reads) == len(expected_npmrc) + 3
    # The Python loop judges every read: the same reads (but the other process's pid).
    strip_pid = [(path if not path.startswith("/proc/") else "/proc/N/environ", w) for path, w in compiled_reads]
    python_strip = [(path if not path.startswith("/proc/") else "/proc/N/environ", w) for path, w in python_reads]
    assert strip_pid == python_strip

    compiled_end, python_end = compiled.record.end, python.record.end
    assert isinstance(compiled_end, End) and isinstance(python_end, End)
    print(
        f"compiled: {compiled_end.tracer_stops} stops, {compiled_end.tracer_reads_judged_in_loop} judged in the"
        f" loop, {compiled_end.tracer_cpu_s} s CPU; python: {python_end.tracer_stops} stops,"
        f" {python_end.tracer_cpu_s} s CPU"
    )
    assert compiled_end.tracer_reads_judged_in_loop >= SYSTEM_READS
    assert python_end.tracer_reads_judged_in_loop == 0
    assert compiled_end.tracer_stops >= SYSTEM_READS and python_end.tracer_stops >= SYSTEM_READS


def test_the_loop_gets_the_prefixes_of_the_runs_home() -> None:
    loop = batch.CompiledLoop({}, {}, "/home/someone")
    assert os.fsencode("/home/someone/.ssh/") in loop._credential_prefixes
    assert loop.reads_judged_in_loop == 0
