"""File writes: every syscall that can write, create, rename, link or chmod a file is recorded
with an absolute path; reads are not; written executables and scripts are hashed."""

from __future__ import annotations

import functools
import hashlib
import os
import stat
import sys
from pathlib import Path

import pytest

from ciwatch.record.events import FileHash, FileWrite, Header, ProcessExec, ProcessStart
from ciwatch.record.vocabulary import FileOp
from tests.support.cprograms import program

O_WRONLY, O_RDWR, O_CREAT, O_TRUNC = os.O_WRONLY, os.O_RDWR, os.O_CREAT, os.O_TRUNC


@pytest.fixture
def traced(ciwatch):  # type: ignore[no-untyped-def]
    """``ciwatch run --net off``: the tracer without the egress proxy, which these tests
    don't need (it costs about a second a run). File events from the stops: these tests check
    what the syscall says (its flags, the path as spelled); fanotify's are compared with the
    stops' in tests/test_file_events_fanotify.py."""
    return functools.partial(ciwatch, "--net", "off", "--file-events", "ptrace")


#: Each write syscall made directly (ctypes ``syscall``), so that the classic non-*at
#: variants are covered whatever libc or Python prefer; the cwd is the test's work dir.
_RAW_SYSCALLS = r"""
import ctypes, os, struct
libc = ctypes.CDLL(None, use_errno=True)
AT_FDCWD = -100

def sc(number, *args):
    converted = [a if isinstance(a, bytes) else ctypes.c_long(a) for a in args]
    result = libc.syscall(ctypes.c_long(number), *converted)
    if result < 0:
        raise OSError(ctypes.get_errno(), f"syscall {number}")
    return result

os.close(sc(2, b"raw-open.txt", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644))   # open
os.close(sc(85, b"raw-creat.txt", 0o640))                                        # creat
sc(82, b"raw-creat.txt", b"raw-renamed.txt")                                     # rename
sc(86, b"raw-renamed.txt", b"raw-link.txt")                                      # link
sc(88, b"raw-renamed.txt", b"raw-symlink")                                       # symlink
sc(90, b"raw-renamed.txt", 0o600)                                                # chmod
sc(87, b"raw-link.txt")                                                          # unlink
how = ctypes.create_string_buffer(struct.pack("<QQQ", os.O_WRONLY | os.O_CREAT, 0o644, 0), 24)
os.close(sc(437, AT_FDCWD, b"raw-openat2.txt", ctypes.addressof(how), 24))       # openat2
sc(452, AT_FDCWD, b"raw-renamed.txt", 0o644, 0)                                  # fchmodat2
dirfd = os.open("sub", os.O_RDONLY | os.O_DIRECTORY)
sc(264, AT_FDCWD, b"raw-open.txt", dirfd, b"moved.txt")                          # renameat
os.close(os.open("sub/../dotdot.txt", os.O_RDWR | os.O_CREAT, 0o644))            # openat, normalised
os.close(os.open("raw-renamed.txt", os.O_RDWR))                                  # O_RDWR, no O_CREAT
# Reads: none of these is recorded.
os.close(sc(2, b"readme.txt", os.O_RDONLY))
os.close(os.open("readme.txt", os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW))
os.close(os.open("readme.txt", os.O_PATH))
ro_how = ctypes.create_string_buffer(struct.pack("<QQQ", os.O_RDONLY, 0, 0), 24)
os.close(sc(437, AT_FDCWD, b"readme.txt", ctypes.addressof(ro_how), 24))
with open("readme.txt") as stream:
    stream.read()
print("done")
"""


def writes(run) -> list[FileWrite]:  # type: ignore[no-untyped-def]
    return run.events(FileWrite)


def op_tuples(run, directory: Path) -> set[tuple[str, str, str | None, int | None]]:  # type: ignore[no-untyped-def]
    """(op, path, target, flags) of the writes under ``directory``, flags reduced to the
    write bits for opens (the C library adds O_CLOEXEC, O_LARGEFILE...)."""
    found = set()
    for write in writes(run):
        if not write.path.startswith(str(directory) + "/"):
            continue
        flags = write.flags
        if write.op is FileOp.OPEN and flags is not None:
            flags &= O_WRONLY | O_RDWR | O_CREAT | O_TRUNC
        found.add((str(write.op), write.path, write.target, flags))
    return found


def _work_dir(tmp_path: Path) -> Path:
    work = tmp_path / "work"
    (work / "sub").mkdir(parents=True)
    (work / "cwd").mkdir()
    (work / "readme.txt").write_text("read me\n")
    return work


def test_each_write_syscall_is_recorded_with_an_absolute_path(traced, tmp_path):
    work = _work_dir(tmp_path)
    run = traced("--", sys.executable, "-c", _RAW_SYSCALLS, cwd=work)
    assert run.code == 0, run.stderr
    assert run.stdout == "done\n"
    w = str(work)
    expected = {
        ("open", f"{w}/raw-open.txt", None, O_WRONLY | O_CREAT | O_TRUNC),
        ("creat", f"{w}/raw-creat.txt", None, 0o640),
        ("rename", f"{w}/raw-creat.txt", f"{w}/raw-renamed.txt", None),
        ("link", f"{w}/raw-renamed.txt", f"{w}/raw-link.txt", None),
        ("symlink", f"{w}/raw-symlink", "raw-renamed.txt", None),
        ("chmod", f"{w}/raw-renamed.txt", None, 0o600),
        ("unlink", f"{w}/raw-link.txt", None, None),
        ("open", f"{w}/raw-openat2.txt", None, O_WRONLY | O_CREAT),
        ("chmod", f"{w}/raw-renamed.txt", None, 0o644),
        ("rename", f"{w}/raw-open.txt", f"{w}/sub/moved.txt", None),
        ("open", f"{w}/dotdot.txt", None, O_RDWR | O_CREAT),
        ("open", f"{w}/raw-renamed.txt", None, O_RDWR),
    }
    recorded = op_tuples(run, work)
    assert expected <= recorded, f"missing: {expected - recorded}"
    assert not [x for x in writes(run) if "readme" in x.path], "reads must not be recorded"
    python = next(e.pid for e in run.events(ProcessExec) if e.argv[:2] == [sys.executable, "-c"])
    assert {x.pid for x in writes(run) if x.path.startswith(w)} == {python}


def test_dirfd_and_cwd_relative_at_syscalls(traced, tmp_path):
    work = _work_dir(tmp_path)
    (work / "sub" / "read-only.txt").write_text("")
    run = traced("--", str(program("dirfd_ops")), str(work / "sub"), cwd=work / "cwd")
    assert run.code == 0, run.stderr
    sub, cwd = f"{work}/sub", f"{work}/cwd"
    expected = {
        ("open", f"{sub}/at-dirfd.txt", None, O_WRONLY | O_CREAT | O_TRUNC),
        ("open", f"{cwd}/at-cwd.txt", None, O_RDWR | O_CREAT),
        ("chmod", f"{cwd}/at-cwd.txt", None, 0o755),  # fchmod on the fd
        ("rename", f"{sub}/at-dirfd.txt", f"{sub}/renamed.txt", None),
        ("link", f"{sub}/renamed.txt", f"{cwd}/hardlink.txt", None),
        ("symlink", f"{sub}/symlink.txt", "renamed.txt", None),
        ("chmod", f"{sub}/renamed.txt", None, 0o600),
    }
    recorded = op_tuples(run, work)
    assert expected <= recorded, f"missing: {expected - recorded}"
    assert [x.path for x in writes(run) if x.op is FileOp.UNLINK] == [f"{sub}/symlink.txt"]
    assert not [x for x in writes(run) if x.path.endswith("read-only.txt")]


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


_WRITES_EXECUTABLES = r"""
set -e
cp /bin/true elf-copy
printf '#!/bin/sh\necho hi\n' > script-no-x
printf 'plain data\n' > data.txt
printf 'just text\n' > exec-text
chmod +x exec-text
printf '#!/bin/sh\necho ran-then-deleted\n' > run-me
chmod +x run-me
./run-me
rm run-me
printf '#!/bin/sh\nexit 0\n' > staged.tmp
mv staged.tmp final-script
"""


def test_written_executables_and_scripts_are_hashed(traced, tmp_path):
    work = _work_dir(tmp_path)
    run = traced("--", "sh", "-c", _WRITES_EXECUTABLES, cwd=work)
    assert run.code == 0, run.stderr
    assert run.stdout == "ran-then-deleted\n"
    hashes: dict[str, list[FileHash]] = {}
    for found in run.events(FileHash):
        hashes.setdefault(found.path, []).append(found)
    shell = next(e.pid for e in run.events(ProcessStart))
    assert any(x.pid == shell and x.op is FileOp.OPEN for x in writes(run) if x.path == str(work / "run-me"))
    expected_types = {"elf-copy": "elf", "script-no-x": "script", "exec-text": "executable", "final-script": "script"}
    for name, file_type in expected_types.items():
        path = work / name
        assert str(path) in hashes, f"{name} has no file-hash event"
        found = hashes[str(path)][-1]
        info = path.stat()
        assert (found.file_type, found.sha256, found.size, found.mode) == (
            file_type,
            _sha256(path.read_bytes()),
            info.st_size,
            stat.S_IMODE(info.st_mode),
        ), name
    # The script run and then deleted was hashed when it was executed.
    deleted = hashes.get(str(work / "run-me"))
    assert deleted, "a script written, run and deleted in the run must still be hashed"
    assert deleted[0].sha256 == _sha256(b"#!/bin/sh\necho ran-then-deleted\n")
    assert deleted[0].file_type == "script"
    # chmod counts as a write: the last writer is the shell or the chmod it ran.
    assert deleted[0].written_by in {x.pid for x in writes(run) if x.path == str(work / "run-me")}
    assert deleted[0].written_by != shell or len(deleted) == 1
    run_me = next(e for e in run.events(ProcessExec) if e.path == str(work / "run-me"))
    assert run_me.argv[-1] == "./run-me" and run_me.exe == "/usr/bin/dash"
    # Data files and names renamed away are not.
    assert str(work / "data.txt") not in hashes
    assert str(work / "staged.tmp") not in hashes


def test_non_utf8_paths_and_argv_are_recorded_losslessly(traced, tmp_path):
    work = _work_dir(tmp_path)
    raw = b"\xff\xfe-not-utf8"
    code = "import os, sys; os.close(os.open(os.fsencode(sys.argv[1]) + b'.txt', os.O_WRONLY | os.O_CREAT, 0o644))"
    argument = os.fsdecode(raw)  # subprocess encodes it back to the same bytes
    run = traced("--", sys.executable, "-c", code, argument, cwd=work)
    assert run.code == 0, run.stderr
    assert (work / os.fsdecode(raw + b".txt")).exists()
    run.out_dir.joinpath("record.jsonl").read_bytes().decode("ascii")  # escaped, never raw bytes

    def as_bytes(text: str) -> bytes:
        return text.encode("utf-8", "surrogateescape")

    record = run.record
    assert as_bytes(record.header.command[-1]) == raw
    python = next(e for e in run.events(ProcessExec) if e.argv[:2] == [sys.executable, "-c"])
    assert as_bytes(python.argv[3]) == raw
    [write] = [x for x in writes(run) if x.path.startswith(str(work))]
    assert as_bytes(write.path) == os.fsencode(work) + b"/" + raw + b".txt"


def test_very_large_argv_and_environment(traced, tmp_path):
    big_argument = "A" * 100_000
    # 16 variables of 64 KiB: 1 MiB of environment (one string may not exceed 128 KiB).
    big_env = {f"CIWATCH_TEST_BIG_{i}": chr(ord("a") + i) * 65536 for i in range(16)}
    big_env["npm_package_name"] = "big-env-pkg"  # an attribution variable, read from the end of environ
    code = (
        "import os, sys; "
        "print(len(sys.argv[1]), sum(len(v) for k, v in os.environ.items() if k.startswith('CIWATCH_TEST_BIG_')))"
    )
    run = traced("--", sys.executable, "-c", code, big_argument, env=big_env)
    assert run.code == 0, run.stderr
    assert run.stdout == f"100000 {16 * 65536}\n"
    record = run.record
    assert isinstance(record.header, Header) and record.header.command[-1] == big_argument
    python = next(e for e in run.events(ProcessExec) if e.argv[:2] == [sys.executable, "-c"])
    assert python.argv[3] == big_argument
    assert python.env == {"npm_package_name": "big-env-pkg"}
    raw = run.out_dir.joinpath("record.jsonl").read_text()
    assert "a" * 65536 not in raw, "environment values other than attribution variables stay out"
