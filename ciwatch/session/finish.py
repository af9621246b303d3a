"""Phase 5: the record ended (whatever happened before), then judged."""

from __future__ import annotations

import dataclasses
import resource
import time
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING

from ciwatch.dataclass import dataclass, field
from ciwatch.exitcodes import INTERNAL_ERROR, from_wait_status
from ciwatch.policy.model import Mode
from ciwatch.record.closing import End
from ciwatch.session.leftovers import follow_leftovers
from ciwatch.session.prepare import RunPlan
from ciwatch.session.recording import Recording
from ciwatch.session.trace import Outcome
from ciwatch.trace import Tracer

if TYPE_CHECKING:
    # Imported in ``finish``: the rules and the analysis are needed once the build has run,
    # and importing them on the way to its exec would delay every build (cli.py).
    from ciwatch.verdict import Verdict


@dataclass(frozen=True)
class RunResult:
    exit_code: int
    launch_error: str | None
    leftovers: list[int]
    follow: Callable[[], None] | None
    """Set when leftovers were left running (LeftoverAction.LEAVE): to call once the front has
    been released; it traces them to their end, then replaces the record's verdict."""
    verdict: Verdict
    record_problem: str | None = None
    """Set when the record could not be written whole (a full disk): what was lost and why."""
    verdict_error: str | None = None
    """Set when ``verdict.json`` could not be written: why."""
    nested_tracers: list[tuple[int, str]] = field(default_factory=list)
    """Build processes that tried to trace (pid, program): strace, gdb, a leak checker."""


def end_record(
    recording: Recording,
    tracer: Tracer,
    outcome: Outcome,
    error: str | None,
    foreign_peers: dict[str, int] | None = None,
    failure_code: int | None = None,
) -> int:
    """Write the record's last line, clean when ``error`` is None; returns the build's exit
    code as a shell would report it, or ``failure_code``, ciwatch's own when it failed (the
    line says the code ciwatch really ends with). ``foreign_peers``: what the proxy's
    listeners refused because no process of the build made it, by listener."""
    build = outcome.build
    if failure_code is not None:
        exit_code = failure_code
    elif build is not None:
        exit_code = from_wait_status(build.exit_code, build.signal)
    else:
        exit_code = INTERNAL_ERROR
    recording.end(
        End(
            exit_code=exit_code,
            build_exit_code=build.exit_code if build else None,
            build_signal=build.signal if build else None,
            duration_s=round(time.monotonic() - recording.started, 3),
            event_counts=dict(recording.writer.counts),
            clean=error is None,
            error=error,
            tracer_stops=tracer.stops,
            tracer_reads_judged_in_loop=tracer.reads_judged_in_loop,
            tracer_cpu_s=round(time.process_time() - recording.cpu_started, 3),
            tracer_max_rss_mb=_peak_rss_mb(),
            foreign_peers=dict(foreign_peers or {}),
        )
    )
    return exit_code


def _peak_rss_mb() -> float:
    """This process's peak resident set so far: the tracer's and the proxy thread's memory
    (the build's processes are its children, counted apart by RUSAGE_CHILDREN, not here)."""
    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return round(kib * 1024 / 1e6, 1)


def finish(plan: RunPlan, recording: Recording, tracer: Tracer, outcome: Outcome, exit_code: int) -> RunResult:
    from ciwatch.verdict import VerdictKind, evaluate, write_verdict

    # The events as written (scrubbed): the same record `ciwatch check` reads back from disk.
    verdict = evaluate(recording.writer.record(), plan.policy)
    if exit_code != 0:
        reason = "the build's own exit code" if outcome.build is not None else "ciwatch could not run the build"
    elif plan.policy.mode is Mode.BLOCK and verdict.verdict is VerdictKind.FAIL:
        exit_code, reason = plan.fail_exit_code, "the build succeeded, but the verdict is fail in block mode"
    else:
        reason = f"the build succeeded, and a {verdict.verdict} verdict doesn't fail the job in {verdict.mode} mode"
    verdict = dataclasses.replace(verdict, exit_code=exit_code, exit_reason=reason)
    verdict_error: str | None = None
    try:
        write_verdict(verdict, plan.out_dir)
    except OSError as error:  # a full disk must not cost the build its exit code
        verdict_error = error.strerror or str(error)
    return RunResult(
        exit_code=exit_code,
        launch_error=outcome.launch_error,
        leftovers=outcome.leftovers,
        follow=partial(follow_leftovers, plan, recording, tracer, outcome.leftovers, verdict)
        if outcome.background
        else None,
        verdict=verdict,
        record_problem=_record_problem(recording),
        verdict_error=verdict_error,
        nested_tracers=list(tracer.guard.nested_tracers),
    )


def _record_problem(recording: Recording) -> str | None:
    writer = recording.writer
    if writer.restore_error is not None:
        return f"the record was moved away from {writer.path} and could not be put back ({writer.restore_error})"
    if writer.complete:
        return None
    return f"{writer.lines_lost} line(s) could not be written to {writer.path} ({writer.write_error})"
