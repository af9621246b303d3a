"""Phase 5: the record ended (whatever happened before), then judged."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from ciwatch.exitcodes import INTERNAL_ERROR, POLICY_FAILED, from_wait_status
from ciwatch.policy.model import Mode
from ciwatch.record.events import End
from ciwatch.record.reader import record_from_events
from ciwatch.session.leftovers import follow_leftovers
from ciwatch.session.prepare import RunPlan
from ciwatch.session.recording import Recording
from ciwatch.session.trace import Outcome
from ciwatch.trace import Tracer
from ciwatch.verdict import Verdict, VerdictKind, evaluate, write_verdict


@dataclass(frozen=True)
class RunResult:
    exit_code: int
    launch_error: str | None
    leftovers: list[int]
    follow: Callable[[], None] | None
    """Set when leftovers were left running (LeftoverAction.LEAVE): to call once the front has
    been released; it traces them to their end, then replaces the record's verdict."""
    verdict: Verdict


def end_record(recording: Recording, tracer: Tracer, outcome: Outcome, error: str | None) -> int:
    """Write the record's last line, clean when ``error`` is None; returns the build's exit
    code as a shell would report it."""
    build = outcome.build
    exit_code = from_wait_status(build.exit_code, build.signal) if build is not None else INTERNAL_ERROR
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
            tracer_cpu_s=round(time.process_time() - recording.cpu_started, 3),
        )
    )
    return exit_code


def finish(plan: RunPlan, recording: Recording, tracer: Tracer, outcome: Outcome, exit_code: int) -> RunResult:
    # The events as written (scrubbed): the same record `ciwatch check` reads back from disk.
    verdict = evaluate(record_from_events(recording.writer.kept), plan.policy)
    write_verdict(verdict, plan.out_dir)
    if plan.policy.mode is Mode.BLOCK and verdict.verdict is VerdictKind.FAIL and exit_code == 0:
        exit_code = POLICY_FAILED
    return RunResult(
        exit_code=exit_code,
        launch_error=outcome.launch_error,
        leftovers=outcome.leftovers,
        follow=partial(follow_leftovers, plan, recording, tracer, outcome.leftovers) if outcome.background else None,
        verdict=verdict,
    )
