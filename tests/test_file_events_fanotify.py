"""File events from fanotify hold what the seccomp stops hold: the same build, run once with
``--file-events ptrace`` and once with ``--file-events fanotify`` at the same path, gives the
same writes (by process, operation, path and target), the same reads of credentials by hooks
and the same hashes of executables written, while the filter stops far fewer times.

Fields that legitimately differ, left out of the comparison:

- ``flags``: an open's flags are the syscall's, which fanotify doesn't report (None); a
  chmod, a link, a symlink and a truncate still stop, and keep theirs;
- ``as_written``: fanotify reports the file, not the spelling the process used;
- the order of lines within one drain of the queue (each process's writes are still before its
  exit: checked), and an open's line comes at the file's first change, not at the open.

Needs root (fanotify's filesystem marks): skipped elsewhere.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import textwrap
from collections.abc import Callable, Iterable
from pathlib import Path

import pytest

from ciwatch.record import read_record
from ciwatch.record.closing import End
from ciwatch.record.events import Event, FileHash, FileRead, FileWrite, ProcessExec, ProcessExit, ProcessStart
from ciwatch.record.vocabulary import FileOp
from ciwatch.trace.fanotify import unavailable_reason
from tests.support.packages import make_npm_package, make_npm_project, npm_env
from tests.support.runner import CiwatchRun, ciwatch_command, run_ciwatch
from tests.test_recall_strace import _normaliser

pytestmark = pytest.mark.skipif(unavailable_reason() is not None, reason=f"fanotify: {unavailable_reason()}")

#: One of each write, made by a Python process and by the programs it starts: files created,
#: overwritten, opened read-write without a write, renamed, hard-linked, symlinked, chmodded,
#: truncated, removed; a directory filled, renamed, filled again and removed with its
#: contents; a script written, made executable and run; a child that writes and exits at once.
_SCENARIO = textwrap.dedent(
    """\
    import os, subprocess
    with open("new.txt", "w") as f:
        f.write("one")
    with open("new.txt", "w") as f:
        f.write("two")
    os.close(os.open("new.txt", os.O_RDWR))
    os.rename("new.txt", "renamed.txt")
    os.link("renamed.txt", "hardlink.txt")
    os.symlink("renamed.txt", "symlink.txt")
    os.chmod("renamed.txt", 0o600)
    os.truncate("renamed.txt", 1)
    os.unlink("hardlink.txt")
    os.makedirs("tree/inner")
    with open("tree/inner/a.txt", "w") as f:
        f.write("a")
    os.rename("tree", "moved")
    with open("moved/inner/b.txt", "w") as f:
        f.write("b")
    subprocess.run(["rm", "-r", "moved"], check=True)
    with open("tool.sh", "w") as f:
        f.write("#!/bin/sh\\necho made by the build > from-tool.txt\\n")
    os.chmod("tool.sh", 0o755)
    subprocess.run(["./tool.sh"], check=True)
    subprocess.run(["sh", "-c", "echo child > child.txt; mv child.txt child-moved.txt"], check=True)
    os.unlink("symlink.txt")
    """
)

#: The hook of the npm package: writes an executable into the project and runs it, and reads
#: credentials (the home's .npmrc, and its parent's environment in /proc).
_HOOK_SH = textwrap.dedent(
    """\
    set -eu
    mkdir -p "$INIT_CWD/hookbin"
    printf '#!/bin/sh\\necho tool\\n' > "$INIT_CWD/hookbin/tool"
    chmod +x "$INIT_CWD/hookbin/tool"
    "$INIT_CWD/hookbin/tool"
    cat "$HOME/.npmrc" > /dev/null
    cat "/proc/$PPID/environ" > /dev/null
    """
)

Role = tuple[str, ...]
WriteKey = tuple[Role, FileOp, str, str | None]


def _events(run: CiwatchRun) -> list[Event]:
    """The record's events, its end line last."""
    assert run.code == 0, run.stderr
    record = run.record
    assert record.end is not None
    return [*(item.event for item in record.events), record.end]


def _roles(events: Iterable[Event]) -> Callable[[int], Role]:
    """A process's role: the argv it last ran (a fork keeps its parent's). Pids differ between
    runs; what a process is doesn't."""
    argv: dict[int, Role] = {}
    for event in events:
        if isinstance(event, ProcessStart):
            argv[event.pid] = argv.get(event.ppid, ())
        elif isinstance(event, ProcessExec):
            argv[event.pid] = tuple(re.sub(r"^/proc/\d+/", "/proc/PID/", arg) for arg in event.argv)
    return lambda pid: argv.get(pid, ())


def _writes(events: list[Event], within: Path, normalise: Callable[[str], str]) -> set[WriteKey]:
    role = _roles(events)
    keys = set()
    for event in events:
        if isinstance(event, FileWrite) and event.path.startswith(f"{within}/"):
            # creat() is open(O_CREAT|O_WRONLY|O_TRUNC): fanotify sees the open.
            op = FileOp.OPEN if event.op is FileOp.CREAT else event.op
            target = normalise(event.target) if event.target else None
            keys.add((role(event.pid), op, normalise(event.path), target))
    return keys


def _reads(events: list[Event]) -> set[tuple[Role, str]]:
    role = _roles(events)
    return {(role(e.pid), e.path.split("/")[-1]) for e in events if isinstance(e, FileRead)}


def _hashes(events: list[Event]) -> set[tuple[str, str]]:
    return {(e.path, e.sha256) for e in events if isinstance(e, FileHash)}


def _stops(events: list[Event]) -> int:
    return next(e.tracer_stops for e in events if isinstance(e, End))


def _writes_before_exit(events: list[Event]) -> None:
    """Every process's file events are in the record before its exit."""
    exited: set[int] = set()
    for index, event in enumerate(events):
        if isinstance(event, ProcessExit):
            exited.add(event.pid)
        elif isinstance(event, FileWrite | FileRead) and event.pid in exited:
            raise AssertionError(f"line {index}: {event} after the exit of {event.pid}")
        elif isinstance(event, ProcessStart):
            exited.discard(event.pid)


def _both(
    workspace: Path, prepare: Callable[[Path], None], command: list[str], env: dict[str, str] | None = None
) -> dict[str, list[Event]]:
    """The build run under each source of file events, each time on a fresh copy at the same path."""
    runs = {}
    for source in ("ptrace", "fanotify"):
        shutil.rmtree(workspace, ignore_errors=True)
        workspace.mkdir(parents=True)
        prepare(workspace)
        out = workspace.parent / f"out-{source}"
        shutil.rmtree(out, ignore_errors=True)
        run = run_ciwatch(["--net", "off", "--file-events", source, "--", *command], out, cwd=workspace, env=env)
        runs[source] = _events(run)
    return runs


def test_a_script_s_writes_are_the_same_from_fanotify(tmp_path: Path) -> None:
    workspace = tmp_path.resolve() / "w"
    runs = _both(workspace, lambda _: None, ["python3", "-c", _SCENARIO])
    ptrace, fanotify = runs["ptrace"], runs["fanotify"]
    same = lambda path: path  # noqa: E731 - nothing here is named at random
    expected = _writes(ptrace, workspace, same)
    assert len(expected) >= 15, expected  # the scenario's writes were all seen by the stops
    assert _writes(fanotify, workspace, same) == expected
    assert _hashes(fanotify) == _hashes(ptrace) != set()
    _writes_before_exit(fanotify)
    assert _stops(fanotify) < _stops(ptrace)


@pytest.mark.npm
def test_an_npm_install_with_a_hook_is_the_same_from_fanotify(tmp_path: Path) -> None:
    """A real npm install of a local package whose hook writes and runs an executable and reads
    credentials: writes, reads and hashes match, and the writer stopped far less often."""
    template = make_npm_package(tmp_path / "package", "fanhook", "1.0.0", {"postinstall": "sh ./hook.sh"}, {
        "hook.sh": _HOOK_SH
    })  # fmt: skip
    workspace = tmp_path.resolve() / "w"
    home = workspace / "home"

    def prepare(root: Path) -> None:
        tarball = root / template.tarball.name
        shutil.copy(template.tarball, tarball)
        make_npm_project(root / "project", allow_scripts_from=[tarball])
        home.mkdir()
        (home / ".npmrc").write_text("fund=false\n")
        (root / "tmp").mkdir()

    env = {**npm_env(workspace / "cache"), "HOME": str(home), "TMPDIR": str(workspace / "tmp")}
    command = ["sh", "-c", f"cd project && npm install --no-audit --no-fund {workspace / template.tarball.name}"]
    runs = _both(workspace, prepare, command, env)
    ptrace, fanotify = runs["ptrace"], runs["fanotify"]
    normalise = _normaliser(workspace / "tmp")
    expected = _writes(ptrace, workspace, normalise)
    assert any(path.endswith("/hookbin/tool") for _, _, path, _ in expected)
    assert _writes(fanotify, workspace, normalise) == expected
    reads = _reads(ptrace)
    assert {path for _, path in reads} >= {".npmrc", "environ"}
    assert _reads(fanotify) == reads
    assert _hashes(fanotify) == _hashes(ptrace) != set()
    _writes_before_exit(fanotify)
    print(f"tracer stops: {_stops(ptrace)} with ptrace, {_stops(fanotify)} with fanotify")
    assert _stops(fanotify) * 2 < _stops(ptrace), (_stops(fanotify), _stops(ptrace))


def test_run_says_which_source_it_used(tmp_path: Path) -> None:
    for source, expected in (("ptrace", False), ("fanotify", True)):
        run = run_ciwatch(["--net", "off", "--file-events", source, "--", "true"], tmp_path / source)
        assert run.code == 0, run.stderr
        assert run.record.header.capabilities["fanotify_file_events"] is expected
    assert os.geteuid() == 0


def test_doctor_says_which_source_a_run_uses() -> None:
    done = subprocess.run([*ciwatch_command(), "doctor"], capture_output=True, text=True, timeout=120)
    assert "file events: fanotify (writes are reported while the writer runs on)" in done.stdout, done.stdout


def test_auto_keeps_the_stops_when_a_writable_filesystem_can_t_be_watched(tmp_path: Path) -> None:
    """An overlayfs without file handles (a container's root) can't be marked: its writes would
    go unseen, so ``auto`` takes the stops, and ``fanotify`` refuses to run (exit 69)."""
    layers = {name: tmp_path / name for name in ("lower", "upper", "work", "merged")}
    for layer in layers.values():
        layer.mkdir()
    options = f"lowerdir={layers['lower']},upperdir={layers['upper']},workdir={layers['work']}"
    ciwatch = " ".join(ciwatch_command())
    script = (
        f"mount -t overlay overlay -o {options} {layers['merged']} || exit 99\n"
        f"{ciwatch} run --net off --out {tmp_path}/auto -- true || exit 98\n"
        f"{ciwatch} run --net off --file-events fanotify --out {tmp_path}/explicit -- true\n"
        "echo explicit=$?\n"
    )
    # A mount namespace of its own: the overlay exists for this test only.
    done = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "explicit=69" in done.stdout, done.stdout + done.stderr
    assert f"{layers['merged']} (" in done.stderr  # the refusal names the filesystem
    header = read_record(tmp_path / "auto").header
    assert header.capabilities["fanotify_file_events"] is False


def test_an_executable_is_hashed_when_closed_after_writing(tmp_path: Path) -> None:
    """A script and an ELF written, then replaced or removed before the end and never run: the
    stops can only hash what is left at the end; fanotify hashes each as it was closed."""
    workspace = tmp_path.resolve()
    elf = Path("/bin/true").read_bytes()
    script = textwrap.dedent(
        """\
        import os, shutil
        with open("dropped.sh", "w") as f:
            f.write("#!/bin/sh\\necho first\\n")
        shutil.copyfile("/bin/true", "dropped-elf")
        with open("notes.txt", "w") as f:
            f.write("not a program")
        with open("replaced.tmp", "w") as f:
            f.write("plain text")
        os.rename("replaced.tmp", "dropped.sh")
        os.unlink("dropped-elf")
        """
    )
    run = run_ciwatch(
        ["--net", "off", "--file-events", "fanotify", "--", "python3", "-c", script], workspace / "out", cwd=workspace
    )
    hashes = {(e.path, e.sha256, e.file_type) for e in _events(run) if isinstance(e, FileHash)}
    first = hashlib.sha256(b"#!/bin/sh\necho first\n").hexdigest()
    assert (str(workspace / "dropped.sh"), first, "script") in hashes
    assert (str(workspace / "dropped-elf"), hashlib.sha256(elf).hexdigest(), "elf") in hashes
    assert not any(path.endswith(("notes.txt", "replaced.tmp")) for path, _, _ in hashes), hashes


#: Reads credentials three ways: a file in a credential directory that existed before the run,
#: one the build made before the hook started (in a directory made then too), and a hard link
#: to the home's .netrc under another name; then reads ordinary files.
_READER_SH = textwrap.dedent(
    """\
    set -eu
    cat "$HOME/.aws/credentials" "$HOME/.docker/config.json" "$INIT_CWD/../innocent-name" > /dev/null
    cat /etc/hostname package.json > /dev/null
    """
)


@pytest.mark.npm
def test_a_hook_s_credential_reads_are_watched_by_inode(tmp_path: Path) -> None:
    """Opens of the credential files (and of the directories holding them) are the only open
    events: whatever name a file is opened by, it is the credential; one made during the run
    before the hook started is watched too; nothing else a hook opens is an event."""
    template = make_npm_package(tmp_path / "package", "reader", "1.0.0", {"postinstall": "sh ./hook.sh"}, {
        "hook.sh": _READER_SH
    })  # fmt: skip
    workspace = tmp_path.resolve() / "w"
    home = workspace / "home"
    (home / ".aws").mkdir(parents=True)
    (home / ".aws" / "credentials").write_text("[default]\n")
    (home / ".netrc").write_text("machine example.test\n")
    os.link(home / ".netrc", workspace / "innocent-name")
    tarball = workspace / template.tarball.name
    shutil.copy(template.tarball, tarball)
    make_npm_project(workspace / "project", allow_scripts_from=[tarball])
    env = {**npm_env(workspace / "cache"), "HOME": str(home)}
    command = (
        f"mkdir -p {home}/.docker && echo '{{}}' > {home}/.docker/config.json && "
        f"cd project && npm install --no-audit --no-fund {tarball}"
    )
    run = run_ciwatch(
        ["--net", "off", "--file-events", "fanotify", "--", "sh", "-c", command],
        workspace / "out",
        cwd=workspace,
        env=env,
    )
    reads = {(e.path, e.as_written) for e in _events(run) if isinstance(e, FileRead)}
    assert reads == {
        (f"{home}/.aws/credentials", None),
        (f"{home}/.docker/config.json", None),
        (f"{home}/.netrc", str(workspace / "innocent-name")),
    }, reads
