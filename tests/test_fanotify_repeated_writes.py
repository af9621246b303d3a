"""A file written in many chunks is one ``open`` in the record, whichever way file events are
taken, and the changes fanotify reports after the first (dropped before their path is looked
for) never hide a write: an existing file written and kept open until after the build ended,
or whose descriptor went to a process outside the build, is still the build process's write.

Needs root (fanotify's filesystem marks): skipped elsewhere.
"""

from __future__ import annotations

import array
import json
import os
import socket
import textwrap
import threading
from pathlib import Path

import pytest

from ciwatch.record.events import Event, FileWrite
from ciwatch.record.vocabulary import FileOp
from ciwatch.trace.fanotify import unavailable_reason
from tests.support.runner import run_ciwatch
from tests.test_file_events_fanotify import _both, _writes, _writes_before_exit

pytestmark = pytest.mark.skipif(unavailable_reason() is not None, reason=f"fanotify: {unavailable_reason()}")

#: A new file and an existing one, each written in 1,000 chunks by one open, with pauses that
#: let the tracer drain its queue between chunks (the kernel merges only the changes still
#: queued); then the existing one opened and written again: a second open.
_CHUNKS = textwrap.dedent(
    """\
    import os, time
    for name, flags in (("new.bin", os.O_CREAT | os.O_TRUNC), ("existing.bin", 0)):
        fd = os.open(name, os.O_WRONLY | flags, 0o644)
        for chunk in range(1000):
            os.write(fd, b"x" * 100)
            if chunk % 250 == 0:
                time.sleep(0.3)
        os.close(fd)
    fd = os.open("existing.bin", os.O_WRONLY | os.O_APPEND)
    os.write(fd, b"again")
    time.sleep(0.3)
    os.write(fd, b"and again")
    os.close(fd)
    """
)


def _opens(events: list[Event], path: Path) -> int:
    return sum(1 for e in events if isinstance(e, FileWrite) and e.op is FileOp.OPEN and e.path == str(path))


def test_a_file_written_in_a_thousand_chunks_is_one_open_in_both_modes(tmp_path: Path) -> None:
    workspace = tmp_path.resolve() / "w"
    runs = _both(workspace, lambda root: (root / "existing.bin").write_text("before"), ["python3", "-c", _CHUNKS])
    for source, events in runs.items():
        assert _opens(events, workspace / "new.bin") == 1, source
        assert _opens(events, workspace / "existing.bin") == 2, source  # two opens, two records
    same = lambda path: path  # noqa: E731 - nothing here is named at random
    assert _writes(runs["fanotify"], workspace, same) == _writes(runs["ptrace"], workspace, same)
    _writes_before_exit(runs["fanotify"])


#: Writes an existing file and leaves a process holding it open for writing: the build's root
#: ends while its child still writes (a leftover, left running), which closes it long after.
_KEPT_OPEN = textwrap.dedent(
    """\
    import os, sys, time
    if os.fork() == 0:
        fd = os.open("kept.txt", os.O_WRONLY)
        os.write(fd, b"first")
        time.sleep(0.3)
        os.write(fd, b"second")
        open("child-ready", "w").close()
        time.sleep(3)
        os._exit(0)
    while not os.path.exists("child-ready"):
        time.sleep(0.05)
    """
)


def _lines(out: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in (out / "record.jsonl").read_text().splitlines()]


def _before_end(out: Path) -> list[dict[str, object]]:
    """The build's part of the record: its lines up to its end line (what leftovers left
    running do afterwards goes to a second segment, written after ciwatch returned)."""
    lines = _lines(out)
    return lines[: next(i for i, line in enumerate(lines) if line["kind"] == "end")]


def test_a_file_kept_open_for_writing_past_the_build_s_end_is_recorded(tmp_path: Path) -> None:
    """Its close comes after the build's end: its changes are what records the write in the
    build's part of the record, though only the first is handled."""
    workspace = tmp_path.resolve()
    (workspace / "kept.txt").write_text("before")
    run = run_ciwatch(
        ["--net", "off", "--file-events", "fanotify", "--leftovers", "leave", "--", "python3", "-c", _KEPT_OPEN],
        workspace / "out",
        cwd=workspace,
    )
    assert run.code == 0, run.stderr
    writes = [line for line in _before_end(workspace / "out") if line.get("path") == str(workspace / "kept.txt")]
    assert [line["op"] for line in writes] == ["open"], writes


#: Opens an existing file for writing, writes to it, hands the descriptor to a process outside
#: the build over a unix socket and closes its own: the last close is the outsider's.
_PASSED_OUT = textwrap.dedent(
    """\
    import array, os, socket, sys
    fd = os.open("passed.txt", os.O_WRONLY)
    os.write(fd, b"written by the build")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as peer:
        peer.connect(sys.argv[1])
        peer.sendmsg([b"fd"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [fd]))])
        peer.recv(1)
    os.close(fd)
    """
)


def test_a_descriptor_passed_out_of_the_build_after_writing_is_still_the_build_s_write(tmp_path: Path) -> None:
    workspace = tmp_path.resolve() / "w"
    address = str(tmp_path / "outside.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(address)
    listener.listen(2)
    held: list[int] = []

    def receive() -> None:
        peer, _ = listener.accept()
        with peer:
            fds = array.array("i")
            _, ancillary, _, _ = peer.recvmsg(16, socket.CMSG_SPACE(fds.itemsize))
            fds.frombytes(ancillary[0][2][: fds.itemsize])
            held.append(fds[0])
            peer.send(b"k")

    receivers = []
    try:
        for _ in range(2):  # one per mode; each run's build connects once
            receiver = threading.Thread(target=receive, daemon=True)
            receiver.start()
            receivers.append(receiver)
        runs = _both(
            workspace, lambda root: (root / "passed.txt").write_text(""), ["python3", "-c", _PASSED_OUT, address]
        )
    finally:
        for receiver in receivers:
            receiver.join(timeout=30)
        for fd in held:  # the outsider's close comes after both runs ended
            os.close(fd)
        listener.close()
    assert len(held) == 2
    for source, events in runs.items():
        assert _opens(events, workspace / "passed.txt") == 1, source


#: Files closed after writing as no executables, then changed without a close before the
#: build's end: one made executable, one made a script by a process that keeps it open past
#: the end (its mtime set back, its size the same), and one left alone.
_CHANGED_AFTER_CLOSE = textwrap.dedent(
    """\
    import os, time
    for name in ("chmodded", "rewritten", "plain"):
        with open(name, "w") as f:
            f.write("echo not yet a script")
    os.chmod("chmodded", 0o755)
    if os.fork() == 0:
        before = os.stat("rewritten")
        fd = os.open("rewritten", os.O_WRONLY)
        os.write(fd, b"#!/bin/sh\\necho")
        os.utime("rewritten", ns=(before.st_atime_ns, before.st_mtime_ns))
        open("child-ready", "w").close()
        time.sleep(3)
        os._exit(0)
    while not os.path.exists("child-ready"):
        time.sleep(0.05)
    """
)


def test_a_file_closed_as_no_executable_is_hashed_at_the_end_once_it_became_one(tmp_path: Path) -> None:
    """fanotify looks at every file closed after writing; the end of the run skips those
    unchanged since (same inode, size, times and mode: the ctime, which no process can set
    back, included), and looks again at the rest."""
    workspace = tmp_path.resolve()
    run = run_ciwatch(
        ["--net", "off", "--file-events", "fanotify", "--", "python3", "-c", _CHANGED_AFTER_CLOSE],
        workspace / "out",
        cwd=workspace,
    )
    assert run.code == 0, run.stderr
    hashed = {Path(str(line["path"])).name for line in _before_end(workspace / "out") if line["kind"] == "file-hash"}
    assert hashed == {"chmodded", "rewritten"}, hashed
