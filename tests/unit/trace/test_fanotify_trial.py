"""``ciwatch run`` decides before its build starts whether fanotify can watch every writable
filesystem, by marking them all in a trial group. Closing a group with marks waits for the
kernel's grace period, so the trial runs in a process of its own, orphaned at once: its answer
is the one the group gives here, and nothing of it stays in the process that asked."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ciwatch.trace import fanotify
from ciwatch.trace.fanotify import WRITE_MASK, FanotifyGroup, unavailable_reason

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


def _children() -> set[int]:
    found: set[int] = set()
    for task in Path("/proc/self/task").iterdir():
        found |= {int(pid) for pid in (task / "children").read_text().split()}
    return found


def test_the_trial_answers_as_a_group_made_here_would() -> None:
    group = FanotifyGroup(WRITE_MASK)
    group.close()
    assert unavailable_reason() == fanotify._unmarked_reason(group)


def test_nothing_of_the_trial_stays_in_this_process() -> None:
    children_before = _children()
    unavailable_reason()
    assert _fanotify_fds() == []
    # The process that forked the trial is reaped; the trial itself was never this one's child.
    assert _children() <= children_before


def test_the_marked_trial_group_is_not_closed_by_the_process_that_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    """Its close is what waits for the kernel: the trial's exit does it instead."""
    group = FanotifyGroup(WRITE_MASK)
    group.close()
    expected = fanotify._unmarked_reason(group)
    closed_here: list[int] = []
    monkeypatch.setattr(FanotifyGroup, "close", lambda group: closed_here.append(os.getpid()))
    assert unavailable_reason() == expected
    assert closed_here == []
