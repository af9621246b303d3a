"""``ciwatch run`` decides before its build starts whether fanotify can watch every writable
filesystem by opening the run's write group, and keeps it: the tracer process, forked
afterwards, reads it, and the front drops its copy. A trial group closed again would make the
front wait for the kernel's grace period on the way to the build's exec."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from ciwatch.trace import fanotify
from ciwatch.trace.fanotify import FAN_CLOSE_WRITE, FanotifyGroup, open_write_group, unavailable_reason

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or fanotify.user_namespace(), reason="fanotify's filesystem marks need root outside a container"
)


def _fanotify_fds() -> list[str]:
    found = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            if "fanotify" in os.readlink(f"/proc/self/fd/{fd}"):
                found.append(fd)
        except OSError:
            continue  # the directory's own descriptor, gone once listed
    return found


def test_the_group_that_decides_is_the_run_s_and_the_doctor_s_answer_is_the_same() -> None:
    found = open_write_group()
    assert isinstance(found, FanotifyGroup), found
    try:
        assert found.mounts and not found.unmarked
    finally:
        found.close()
    assert unavailable_reason() is None
    assert _fanotify_fds() == []  # the doctor's trial is closed again


def test_a_group_handed_to_a_forked_process_reports_to_it_after_the_opener_dropped_its_copy(tmp_path: Path) -> None:
    found = open_write_group()
    assert isinstance(found, FanotifyGroup), found
    group: FanotifyGroup = found
    written = tmp_path / "after-the-hand-over"
    ready_read, ready_write = os.pipe()
    child = os.fork()
    if child == 0:  # the tracer's side: reads what the group reports, then says whether it saw the write
        code = 1
        try:
            os.close(ready_write)
            os.read(ready_read, 1)  # the opener has dropped its copy and written the file
            deadline = time.monotonic() + 10
            while code and time.monotonic() < deadline:
                for event in group.read():
                    if event.pid == os.getppid() and event.mask & FAN_CLOSE_WRITE and event.name == written.name:
                        code = 0
                time.sleep(0.01)
        finally:
            os._exit(code)
    os.close(ready_read)
    group.drop_copy()  # the front's side
    assert _fanotify_fds() == []
    written.write_text("written once the opener holds no descriptor of the group\n")
    os.write(ready_write, b"x")
    os.close(ready_write)
    _, status = os.waitpid(child, 0)
    assert os.waitstatus_to_exitcode(status) == 0, "the forked process did not see the write"
