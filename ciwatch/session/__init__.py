"""A run: the build started under the tracer, every event into the record, the record ended.

A run goes in phases, each a function handed what the one before made: ``prepare`` checks
the input once, before anything starts (``cli.py`` calls it before it forks the tracer
process), and makes the ``RunPlan`` that ``run`` then takes through ``spawn`` (the build's
root forked and seized), ``open_egress`` (the proxy up, the tracer set up to match),
``trace`` (the build run to its end) and ``finish`` (the record ended and judged).

The session never prints and never exits (``cli.py`` does).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from ciwatch.errors import exit_code_of
from ciwatch.exitcodes import INTERNAL_ERROR
from ciwatch.session.builduser import environment_for
from ciwatch.session.egress import new_egress, open_egress
from ciwatch.session.finish import RunResult, end_record, finish
from ciwatch.session.prepare import RunOptions, RunPlan, prepare
from ciwatch.session.recording import Recording
from ciwatch.session.spawn import Spawned, spawn
from ciwatch.session.trace import Outcome, trace
from ciwatch.session.tracer import new_tracer
from ciwatch.trace import BuildExit

#: waitpid's __WALL: the root is a traced child.
_WALL = 0x40000000

if TYPE_CHECKING:
    from ciwatch.egress.run import EgressRun


def run(plan: RunPlan, env: Mapping[str, str], on_root_started: Callable[[int], None] = lambda pid: None) -> RunResult:
    """Run the build traced; returns once its root process has exited and the record is ended."""
    env = environment_for(plan.build_user, env)  # sudo's changes undone for the build's user
    recording = Recording(plan, env)
    tracer = new_tracer(plan, env, recording)
    egress: EgressRun | None = None
    outcome = Outcome()
    error: str | None = None
    failure_code: int | None = None
    spawned: Spawned | None = None
    try:
        spawned = spawn(plan, env, tracer)
        egress = new_egress(plan, recording, tracer)
        armed = open_egress(plan, recording, tracer, spawned, egress, env)

        def released(root_pid: int) -> None:
            on_root_started(root_pid)
            if egress is not None:
                egress.begin_start()

        trace(plan, recording, tracer, armed, outcome, released)
        if egress is not None:
            egress.check_started()  # the build ran without a proxy: its connections were refused
    except KeyboardInterrupt:
        error, failure_code = "interrupted", INTERNAL_ERROR
        tracer.kill_all()
        raise
    except Exception as failure:
        ended = _ended_before_it_ran(spawned)
        if ended is None:
            error, failure_code = f"{type(failure).__name__}: {failure}", exit_code_of(failure)
            tracer.kill_all()
            raise
        # The set-up failed because the build's root was killed before it ran (its network
        # namespace or its pipe went with it): the build ended, and that is what is reported.
        outcome.build = ended
    finally:
        if egress is not None:
            try:
                egress.stop()
            except Exception as failure:  # noqa: BLE001 - the record's end comes first
                error = error or f"stopping the proxy: {type(failure).__name__}: {failure}"
        foreign = egress.foreign_peers() if egress else None
        exit_code = end_record(recording, tracer, outcome, error, foreign, failure_code)
    return finish(plan, recording, tracer, outcome, exit_code)


def _ended_before_it_ran(spawned: Spawned | None) -> BuildExit | None:
    """How the build's root ended, if it already has (reaped here); None while it lives."""
    if spawned is None:
        return None
    try:
        pid, status = os.waitpid(spawned.root.pid, os.WNOHANG | _WALL)
    except ChildProcessError:
        return None
    if pid == 0:
        return None
    if os.WIFSIGNALED(status):
        return BuildExit(None, os.WTERMSIG(status))
    return BuildExit(os.WEXITSTATUS(status) if os.WIFEXITED(status) else None, None)


__all__ = ["RunOptions", "RunPlan", "RunResult", "prepare", "run"]
