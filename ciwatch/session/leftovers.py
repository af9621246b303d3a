"""Phase 6, only with ``--leftovers leave`` and processes left running: follow them to their end.

The front has returned the build's exit code and the first verdict by then, but nothing goes
dark: the leftovers stay traced, and what they do (execs, writes, connections, DNS) is
appended to the record after its ``end`` line, as a second segment that opens with an
``after-build`` line and closes with ``after-build-end``. When the last of them has exited,
the verdict is recomputed over the whole record and ``verdict.json`` replaced (atomically);
the closing line says what it now holds. In block mode they get no outbound network at all
(the proxy is gone, so nothing could be judged on its way out): every connect or datagram
that isn't to loopback fails with EPERM and is a refusal in the record.

A daemon that waits for the build to end and then exfiltrates therefore fails block mode
twice: at the build's exit already (a hook left it running: ``leftover-process``, high), and
in the final verdict, with what it tried.
"""

from __future__ import annotations

import contextlib
import signal
import time
from dataclasses import replace
from types import FrameType
from typing import TYPE_CHECKING

from ciwatch.gate.allowlist import RuntimeAllowlist
from ciwatch.net.address import is_loopback
from ciwatch.record.closing import AfterBuild, AfterBuildEnd
from ciwatch.record.events import Refusal
from ciwatch.record.vocabulary import RefusedWhat, Transport
from ciwatch.session.prepare import RunPlan
from ciwatch.session.recording import Recording
from ciwatch.trace import Tracer

if TYPE_CHECKING:
    from ciwatch.verdict import Verdict  # imported when judging: after the build (session/finish.py)

#: How ciwatch is told to stop while it follows leftovers (the front has gone: these come
#: from a CI runner ending the job, or a user); the leftovers are then killed.
_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


class AfterBuildGate:
    """Block mode's say once the proxy is gone: nothing but loopback leaves. Each refusal is
    recorded with the rule it enforces: ``unfamiliar-egress`` for a TCP connection outside the
    allowlist, ``proxy-bypass`` for the rest (the allowlist may allow the host, but with no
    proxy nothing would judge what is sent)."""

    def __init__(self, allowlist: RuntimeAllowlist, record: Recording) -> None:
        self._allowlist = allowlist
        self._record = record

    def direct_traffic_refusal(self, address: str, port: int, protocol: Transport, pid: int) -> str | None:
        if is_loopback(address):
            return None
        what = RefusedWhat.DATAGRAM if protocol in (Transport.UDP, Transport.RAW) else RefusedWhat.CONNECT
        if protocol == Transport.TCP and not self._allowlist.allows(address):
            rule, why = "unfamiliar-egress", "not in the allowlist"
        else:
            rule, why = "proxy-bypass", "no proxy is left to pass"
        reason = f"{rule}: {protocol} to {address}:{port} after the build ended: {why}"
        self._record.sink(Refusal(pid=pid, what=what, target=f"{address}:{port}", reason=reason, rule=rule))
        return reason

    def io_uring_allowed(self, pid: int) -> bool:
        return self._record.enforcer.io_uring_allowed(pid)


class _Stopped(Exception):
    pass


def _raise_stopped(signum: int, _frame: FrameType | None) -> None:
    raise _Stopped(f"stopped by signal {signal.Signals(signum).name}")


def follow_leftovers(plan: RunPlan, recording: Recording, tracer: Tracer, pids: list[int], first: Verdict) -> None:
    """Trace the processes left running until the last exits; then close the second segment
    and replace ``verdict.json`` (``first``'s, which already gave the run's exit code).
    Runs in the tracer process after the front has returned."""
    from ciwatch.verdict import evaluate, write_verdict

    started = time.monotonic()
    recording.writer.reopen()
    recording.sink(AfterBuild(pids=list(pids)))
    written_before = dict(tracer.files.written)
    error: str | None = None
    previous = {sig: signal.signal(sig, _raise_stopped) for sig in _STOP_SIGNALS}
    try:
        try:
            tracer.run_until_all_exit()
        except Exception as failure:  # noqa: BLE001 - whatever cut it short, the record says so
            error = str(failure) if isinstance(failure, _Stopped) else f"{type(failure).__name__}: {failure}"
            tracer.kill_all()  # never leave them running untraced: their filtered syscalls would fail
            with contextlib.suppress(Exception):
                tracer.run_until_all_exit()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    for path, pid in sorted(tracer.files.written.items()):
        if written_before.get(path) != pid:
            tracer.files.hash_written(path)
    tracer.flush()
    closing = AfterBuildEnd(
        duration_s=round(time.monotonic() - started, 3),
        event_counts=dict(recording.writer.counts),
        clean=error is None,
        verdict=None,
        error=error,
        tracer_stops=tracer.stops,
        tracer_reads_judged_in_loop=tracer.reads_judged_in_loop,
        record_complete=recording.writer.complete,  # so that block mode fails closed on a full disk
        lines_lost=recording.writer.lines_lost,
    )
    # Judged with the closing line in place: the verdict of the record as it will be on disk.
    record = replace(recording.writer.record(), after_build_end=closing)
    verdict = replace(evaluate(record, plan.policy), exit_code=first.exit_code, exit_reason=first.exit_reason)
    written = None
    with contextlib.suppress(OSError):
        write_verdict(verdict, plan.out_dir)
        written = str(verdict.verdict)
    recording.end(replace(closing, verdict=written))
