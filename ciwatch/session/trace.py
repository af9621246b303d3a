"""Phase 4: the build released and traced until its root exits; then its leftovers dealt
with and the files it wrote hashed."""

from __future__ import annotations

import errno
import gc
import os
import shutil
from collections.abc import Callable

from ciwatch.dataclass import dataclass, field
from ciwatch.errors import EnvironmentNotSupported
from ciwatch.modes import LeftoverAction
from ciwatch.record.events import Event, Leftover
from ciwatch.record.vocabulary import LeftoverOutcome
from ciwatch.session.egress import Armed
from ciwatch.session.leftovers import AfterBuildGate
from ciwatch.session.prepare import RunPlan
from ciwatch.session.recording import Recording
from ciwatch.session.registries import settle_registries
from ciwatch.trace import BuildExit, Tracer
from ciwatch.trace.sealed import seal_network
from ciwatch.trace.spawn import CAPABILITY_FAILURE, SECCOMP_FAILURE, read_exec_error, release


@dataclass
class Outcome:
    """What tracing found, filled in as it goes: the record's end needs whatever is known
    when a later step fails."""

    build: BuildExit | None = None
    launch_error: str | None = None
    leftovers: list[int] = field(default_factory=list)
    background: bool = False
    """Leftovers were left running: the tracer stays to keep them working and to record what
    they do (:func:`ciwatch.session.leftovers.follow_leftovers`)."""


def trace(
    plan: RunPlan,
    recording: Recording,
    tracer: Tracer,
    armed: Armed,
    outcome: Outcome,
    on_root_started: Callable[[int], None],
) -> None:
    # What ciwatch built before the build runs (modules, tables, the policy) lives as long as
    # the run: kept out of the cyclic collector's scans, which the tracer's allocations at
    # every stop would otherwise set off over all of it.
    gc.freeze()
    release(armed.root, armed.env)
    on_root_started(armed.root.pid)
    outcome.build = tracer.run_until_root_exits()
    if armed.discovery is not None:
        # Audit and warn: discovery ran alongside the build from its first run of a package
        # manager, at no cost to its time. A build that ran none (and left nothing running
        # that still could) is allowed no registry: discovery never started.
        needed = recording.registries.used_any or any(pid != armed.root.pid for pid in tracer.live_processes())
        discovery = armed.discovery if needed else None
        settle_registries(discovery, recording.registries, recording.allowlist, recording.sink)
    exec_error = read_exec_error(armed.root)
    if exec_error is not None:
        outcome.launch_error = _describe_exec_error(plan.command[0], *exec_error)
        if SECCOMP_FAILURE in exec_error[1] or CAPABILITY_FAILURE in exec_error[1]:
            raise EnvironmentNotSupported(outcome.launch_error)
    outcome.leftovers = _handle_leftovers(tracer, armed.root.pid, plan.leftovers, recording.sink)
    outcome.background = bool(outcome.leftovers) and plan.leftovers is LeftoverAction.LEAVE
    if outcome.background and recording.enforcer.blocking:
        # The proxy goes with the build: what stays gets no outbound network at all.
        seal_network(tracer, AfterBuildGate(recording.allowlist, recording))
    tracer.drain_file_events()  # the files written are known before they are hashed
    for path in sorted(tracer.files.written):
        tracer.files.hash_written(path)
    tracer.flush()


def _handle_leftovers(
    tracer: Tracer, root_pid: int, choice: LeftoverAction, sink: Callable[[Event], None]
) -> list[int]:
    """Record the processes still running when the build's root exited, and deal with them
    as asked; returns their pids."""
    leftovers = [pid for pid in tracer.live_processes() if pid != root_pid]
    action = {
        LeftoverAction.LEAVE: LeftoverOutcome.LEFT_RUNNING,
        LeftoverAction.KILL: LeftoverOutcome.KILLED,
        LeftoverAction.WAIT: LeftoverOutcome.WAITED,
    }[choice]
    for pid in leftovers:
        sink(Leftover(pid=pid, argv=tracer.argv_of(pid), action=action))
    if leftovers and choice is LeftoverAction.KILL:
        tracer.kill_all()
        tracer.run_until_all_exit()
    elif leftovers and choice is LeftoverAction.WAIT:
        tracer.run_until_all_exit()
    elif leftovers:
        # Left running: the proxy goes with the build, so what stays connects directly (and is
        # recorded after the end line: ``follow_leftovers``), or, in block mode, not at all.
        tracer.redirect_through(None)
    return leftovers


def _describe_exec_error(program: str, code: int, message: str) -> str:
    if code == errno.ENOENT:
        interpreter = _missing_interpreter(program)
        if interpreter is not None:
            return f"{program}: bad interpreter: {interpreter}: No such file or directory"
        return f"{program}: command not found"
    return f"{program}: cannot execute: {message.strip()}"


def _missing_interpreter(program: str) -> str | None:
    """The interpreter a script's ``#!`` line names, when the script exists and its
    interpreter doesn't (exec then fails with ENOENT too, as for a missing program)."""
    path = program if "/" in program else shutil.which(program)
    if path is None:
        return None
    try:
        with open(path, "rb") as script:
            first = script.readline(4096)
    except OSError:
        return None
    if not first.startswith(b"#!"):
        return None
    words = first[2:].split()
    if not words:
        return None
    interpreter = os.fsdecode(words[0])
    return None if os.path.exists(interpreter) else interpreter
