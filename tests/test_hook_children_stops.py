"""A hook's children stop only where the hook filter says, however the kernel orders their
first stop and their creator's fork event.

A hook process gets the hook filter (stacked seccomp, which its children inherit); only a hook
the filter could not be added to is followed syscall by syscall ("deep"). A child whose own
first stop reaches the tracer before its creator's fork event is met with no creator's thread
in hand: it must take its creator's way of being followed, not be followed deep because its
parent is in a hook. Otherwise every short-lived child of a hook (each ``true`` a shell loop
starts) costs its whole life in syscall stops: on a loop of 150 children, several thousand.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from ciwatch.record.closing import End
from ciwatch.record.events import ProcessExec
from tests.support.packages import make_npm_package, make_npm_project, npm_env
from tests.support.runner import run_ciwatch

CHILDREN = 150

#: Each child: fork, exec, a dozen syscalls of a dynamic loader and libc, exit.
_HOOK_SH = f"i=0; while [ $i -lt {CHILDREN} ]; do /bin/true; i=$((i+1)); done\n"


@pytest.mark.npm
def test_children_of_a_hook_are_not_followed_syscall_by_syscall(tmp_path: Path) -> None:
    template = make_npm_package(tmp_path / "package", "manykids", "1.0.0", {"postinstall": "sh ./hook.sh"}, {
        "hook.sh": _HOOK_SH
    })  # fmt: skip
    workspace = tmp_path.resolve() / "w"
    workspace.mkdir()
    tarball = workspace / template.tarball.name
    shutil.copy(template.tarball, tarball)
    project = make_npm_project(workspace / "project", allow_scripts_from=[tarball])
    env = {**npm_env(workspace / "cache"), "HOME": str(workspace)}
    run = run_ciwatch(
        ["--net", "off", "--file-events", "ptrace", "--", "npm", "install", "--no-audit", "--no-fund", str(tarball)],
        workspace / "out",
        cwd=project,
        env=env,
    )
    assert run.code == 0, run.stderr
    end = run.record.end
    assert isinstance(end, End)
    children = [item.event for item in run.record.events if isinstance(item.event, ProcessExec)]
    assert sum(1 for event in children if event.argv == ["/bin/true"]) == CHILDREN
    # Per child: its fork event and first stop, the exec, the hook filter's stops at the
    # loader's read-only opens (ld.so.cache, libc), the exit: about ten. Followed deep, a child
    # costs its ~35 syscalls twice (entry and exit) on top.
    print(f"tracer stops: {end.tracer_stops} for {CHILDREN} children")
    assert end.tracer_stops < CHILDREN * 25, end.tracer_stops
