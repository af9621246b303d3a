"""The record being written, and the live state each event passes through on its way to it
(scrubbing, the runtime allowlist). Begun first in the tracer process, ended last."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Mapping
from datetime import UTC, datetime

from ciwatch import __version__, capabilities
from ciwatch.egress.resolvers import system_resolvers
from ciwatch.facts.paths import ci_env_files
from ciwatch.gate.allowlist import RuntimeAllowlist
from ciwatch.gate.enforcer import LiveEnforcer
from ciwatch.job import JobContext, Scrubber, detect_job
from ciwatch.record import SCHEMA_VERSION, RecordWriter
from ciwatch.record.closing import AfterBuildEnd, End
from ciwatch.record.events import Event, Header, ProcessExec
from ciwatch.session.prepare import RunPlan
from ciwatch.session.registries import JobRegistries


class Recording:
    def __init__(self, plan: RunPlan, env: Mapping[str, str]) -> None:
        self.started = time.monotonic()
        self.cpu_started = time.process_time()
        started_at = datetime.now(UTC).isoformat(timespec="seconds")
        job = detect_job(env, started_at)
        self.scrubber = Scrubber.from_environment(env)
        self.allowlist = RuntimeAllowlist(plan.policy)
        self.enforcer = LiveEnforcer(plan.policy, self.allowlist, self.sink)
        self.registries = JobRegistries(self.sink)
        header = _header(plan, env, job, started_at)
        self.writer = RecordWriter(plan.record_path, job.key)
        self.sink(header)
        # On disk before anything starts: a ciwatch killed while the proxy is still starting
        # (the tracer's first flush is when it first waits) leaves a record that says what ran.
        self.writer.flush()

    def sink(self, event: Event) -> None:
        """One event on its way to the record (the proxy's, the session's): as a batch of one."""
        self.sink_all([event])

    def sink_all(self, events: list[Event]) -> None:
        """Events in order, scrubbed, taken in by the runtime allowlist, written (the tracer's
        batches: mostly file writes)."""
        # Between the end line and the second segment (processes left running, followed once
        # the front is released: session/leftovers.py) the writer is closed; nothing happens
        # then, since no tracee runs while the tracer isn't looping.
        if self.writer.closed:
            return
        events = self.scrubber.events(events)
        self.allowlist.observe_all(events)
        written = 0
        for index, event in enumerate(events):
            if isinstance(event, ProcessExec):
                # Its registries (if it is a package manager's first run) follow it in the record.
                self.writer.append_all(events[written : index + 1])
                written = index + 1
                self.registries.saw_exec(event)
        if written < len(events):
            self.writer.append_all(events[written:] if written else events)

    def end(self, end: End | AfterBuildEnd) -> None:
        """Write a segment's closing line (the build's ``end``, or the leftovers') and close."""
        # Its error text comes from an exception, which may quote a secret: scrubbed too.
        self.writer.append(self.scrubber.event(end))
        self.writer.close()


def _header(plan: RunPlan, env: Mapping[str, str], job: JobContext, started_at: str) -> Header:
    return Header(
        schema=SCHEMA_VERSION,
        ciwatch_version=__version__,
        host=socket.gethostname(),
        command=list(plan.command),
        cwd=os.getcwd(),
        started_at=started_at,
        job_context={"provider": str(job.provider), **job.identifiers},
        capabilities={**capabilities.for_record(), "fanotify_file_events": plan.fanotify},
        net_mode=plan.net,
        path_dirs=[d for d in env.get("PATH", "").split(":") if d],
        home=env.get("HOME", ""),
        resolvers=system_resolvers(),
        ci_env_files=ci_env_files(env),  # persistence-write judges writes to these (facts.paths)
        out_dir=os.path.realpath(plan.out_dir),  # record-tamper judges what the build does there
    )
