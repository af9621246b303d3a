"""A run: the build started under the tracer, every event into the record, the record ended.

The session wires the stages together; it never prints and never exits (``cli.py`` does).
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from ptrace import PtraceError

from ciwatch import __version__, capabilities
from ciwatch.egress.resolvers import system_resolvers
from ciwatch.errors import EnvironmentNotSupported, UsageError
from ciwatch.exitcodes import INTERNAL_ERROR, POLICY_FAILED, from_wait_status
from ciwatch.gate.allowlist import RuntimeAllowlist
from ciwatch.gate.enforcer import LiveEnforcer
from ciwatch.job import JobContext, Scrubber, detect_job
from ciwatch.policy.model import Mode, Policy, Severity
from ciwatch.record import RECORD_FILE, SCHEMA_VERSION, RecordWriter
from ciwatch.record.events import (
    AllowlistLearned,
    End,
    Event,
    Header,
    HooksAllowed,
    Leftover,
    LeftoverOutcome,
    RegistryAllowed,
)
from ciwatch.record.reader import record_from_events
from ciwatch.registries.project_hooks import project_hook_allowlists
from ciwatch.trace import BuildExit, Tracer
from ciwatch.trace.spawn import SECCOMP_FAILURE, read_exec_error, release, spawn_waiting, wait_ready
from ciwatch.verdict import Verdict, VerdictKind, evaluate, write_verdict

log = logging.getLogger(__name__)


class LeftoverAction(StrEnum):
    """What to do with the build's processes still running when its root process exits."""

    LEAVE = "leave"
    """Report them, and keep them running (untraced in the record) after ciwatch returns."""
    KILL = "kill"
    WAIT = "wait"
    """Keep tracing and recording until they exit too."""


class NetMode(StrEnum):
    REDIRECT = "redirect"
    SANDBOX = "sandbox"
    ENV = "env"
    OFF = "off"


@dataclass(frozen=True)
class RunOptions:
    command: list[str]
    out_dir: Path
    leftovers: LeftoverAction = LeftoverAction.LEAVE
    net: NetMode = NetMode.REDIRECT
    policy: Policy = field(default_factory=Policy)
    extra_cas: list[Path] = field(default_factory=list)
    """CA bundles to trust for upstream servers besides the system's (a corporate proxy's)."""
    verbose: bool = False


@dataclass
class RunResult:
    exit_code: int
    build: BuildExit | None
    record_path: Path
    launch_error: str | None = None
    leftovers: list[int] = field(default_factory=list)
    tracer: Tracer | None = None
    """Still tracing leftovers that were left running (LeftoverAction.LEAVE)."""
    verdict: Verdict | None = None


def prepare_out_dir(out_dir: Path) -> Path:
    """Create ``--out`` and check that the record can be written there, before the build."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        probe = out_dir / f".ciwatch-write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as error:
        raise UsageError(
            f"cannot write the record to {out_dir}: {error.strerror}",
            hint="Pass --out with a directory you can write to (it is created if missing).",
        ) from None
    return out_dir / RECORD_FILE


def check_command(command: Sequence[str]) -> None:
    if not command:
        raise UsageError("no command to run", hint="Put the build command after `--`: ciwatch run -- npm ci")


def run(
    options: RunOptions,
    env: Mapping[str, str],
    on_root_started: Callable[[int], None] = lambda pid: None,
) -> RunResult:
    """Run the build traced; returns once its root process has exited and the record is ended."""
    check_command(options.command)
    record_path = prepare_out_dir(options.out_dir)
    started = time.monotonic()
    cpu_started = time.process_time()
    started_at = datetime.now(UTC).isoformat(timespec="seconds")
    job = detect_job(env, started_at)
    scrubber = Scrubber.from_environment(env)
    writer = RecordWriter(record_path, job.key)
    policy = options.policy
    allowlist = RuntimeAllowlist(policy)
    enforcer = LiveEnforcer(policy, allowlist, lambda event: sink(event))

    def sink(event: Event) -> None:
        # Leftovers left running stay traced (so that their filtered syscalls keep working)
        # after the record has ended; what they do then is not recorded.
        if not writer.closed:
            event = scrubber.event(event)
            allowlist.observe(event)
            writer.append(event)

    sink(_header(options, env, job, started_at))
    tracer = Tracer(sink)
    tracer.on_idle = writer.flush
    clean = True
    error: str | None = None
    build: BuildExit | None = None
    launch_error: str | None = None
    leftovers: list[int] = []
    background = False
    egress: Any = None
    build_env = dict(env)
    discovery: _RegistryDiscovery | None = None
    try:
        # Fork before any thread starts: the child then only execs.
        root = spawn_waiting(
            options.command,
            trace_receives=options.net is NetMode.REDIRECT,
            new_network_namespace=options.net is NetMode.SANDBOX,
        )
        if policy.allow.registries_auto:
            discovery = _RegistryDiscovery(Path.cwd(), env)
        if not wait_ready(root):
            _, message = read_exec_error(root) or (0, "the build's process failed to start")
            os.waitpid(root.pid, 0)
            raise EnvironmentNotSupported(f"cannot start the build: {message.strip()}")
        try:
            tracer.start(root.pid, os.getpid())
        except PtraceError as failure:
            os.kill(root.pid, 9)
            os.waitpid(root.pid, 0)
            raise EnvironmentNotSupported(f"cannot trace the build: ptrace failed ({failure})") from None
        if options.net is not NetMode.OFF:
            from ciwatch.egress.run import EgressRun

            egress = EgressRun(
                str(options.net),
                sink,
                tracer.live_processes,
                options.extra_cas,
                options.verbose,
                allowlist=allowlist,
                enforcer=enforcer,
            )
            build_env.update(egress.start(build_env, root.pid))
            tracer.redirect = egress.redirector
        tracer.home = env.get("HOME", "")
        tracer.follow_hooks = policy.severities.get("credential-read") is not Severity.OFF
        if enforcer.blocking:
            tracer.gate = enforcer
            tracer.gate_direct_tcp = options.net in (NetMode.ENV, NetMode.OFF)
            tracer.dns_via_namespace = options.net is NetMode.SANDBOX
        if discovery is not None and enforcer.blocking:
            # Live decisions need the whole allowlist before the build makes its first request.
            _settle_registries(discovery, allowlist, sink)
            discovery = None
        if policy.hooks_import:
            for packages, where in project_hook_allowlists(Path.cwd()):
                sink(HooksAllowed(packages=packages, source=where))
        release(root, build_env)
        on_root_started(root.pid)
        build = tracer.run_until_root_exits()
        if discovery is not None:
            # Audit and warn: discovery ran alongside the build, at no cost to its time.
            _settle_registries(discovery, allowlist, sink)
        exec_error = read_exec_error(root)
        if exec_error is not None:
            launch_error = _describe_exec_error(options.command[0], *exec_error)
            if SECCOMP_FAILURE in exec_error[1]:
                raise EnvironmentNotSupported(launch_error)
        leftovers = _handle_leftovers(tracer, root.pid, options.leftovers, sink)
        background = bool(leftovers) and options.leftovers is LeftoverAction.LEAVE
        for path in sorted(tracer.written):
            tracer.hash_written(path)
        tracer.flush()
    except KeyboardInterrupt:
        clean, error = False, "interrupted"
        tracer.kill_all()
        raise
    except Exception as failure:
        clean, error = False, f"{type(failure).__name__}: {failure}"
        tracer.kill_all()
        raise
    finally:
        if egress is not None:
            egress.stop()
        exit_code = from_wait_status(build.exit_code, build.signal) if build is not None else INTERNAL_ERROR
        writer.append(
            scrubber.event(  # its error text comes from an exception, which may quote a secret
                End(
                    exit_code=exit_code,
                    build_exit_code=build.exit_code if build else None,
                    build_signal=build.signal if build else None,
                    duration_s=round(time.monotonic() - started, 3),
                    event_counts=dict(writer.counts),
                    clean=clean,
                    error=error,
                    tracer_stops=tracer.stops,
                    tracer_cpu_s=round(time.process_time() - cpu_started, 3),
                )
            )
        )
        writer.close()
    # The events as written (scrubbed): the same record `ciwatch check` reads back from disk.
    verdict = evaluate(record_from_events(writer.kept), policy)
    write_verdict(verdict, options.out_dir)
    if policy.mode is Mode.BLOCK and verdict.verdict is VerdictKind.FAIL and exit_code == 0:
        exit_code = POLICY_FAILED
    return RunResult(
        exit_code=exit_code,
        build=build,
        record_path=record_path,
        launch_error=launch_error,
        leftovers=leftovers,
        tracer=tracer if background else None,
        verdict=verdict,
    )


def _header(options: RunOptions, env: Mapping[str, str], job: JobContext, started_at: str) -> Header:
    return Header(
        schema=SCHEMA_VERSION,
        ciwatch_version=__version__,
        host=socket.gethostname(),
        command=list(options.command),
        cwd=os.getcwd(),
        started_at=started_at,
        job_context={"provider": str(job.provider), **job.identifiers},
        capabilities=capabilities.for_record(),
        net_mode=str(options.net),
        path_dirs=[d for d in env.get("PATH", "").split(":") if d],
        home=env.get("HOME", ""),
        resolvers=system_resolvers(),
    )


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
        # Left running: the proxy goes with the record, so what stays connects directly.
        tracer.redirect = None
    return leftovers


def _settle_registries(
    discovery: _RegistryDiscovery, allowlist: RuntimeAllowlist, sink: Callable[[Event], None]
) -> None:
    for found in discovery.result():
        sink(RegistryAllowed(host=found.host, ecosystem=found.ecosystem, source=found.source))
    for learned_from, host, url in allowlist.settle_registries():
        sink(AllowlistLearned(host=host, learned_from=learned_from, url=url))


class _RegistryDiscovery:
    """Asks the package managers for their registries on a thread, while the proxy starts."""

    def __init__(self, project_dir: Path, env: Mapping[str, str]) -> None:
        self._found: list[Any] = []
        self._thread = threading.Thread(target=self._discover, args=(project_dir, dict(env)), daemon=True)
        self._thread.start()

    def _discover(self, project_dir: Path, env: dict[str, str]) -> None:
        # The package managers asked (npm is a node start-up) compete with the build for the
        # CPU: this thread, and the processes it starts, yield to it.
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
        try:
            from ciwatch.registries import discover_registries

            self._found = discover_registries(project_dir, env)
        except Exception:
            log.warning("could not discover the job's registries", exc_info=True)

    def result(self) -> list[Any]:
        self._thread.join(timeout=30)
        return list(self._found)


def _describe_exec_error(program: str, code: int, message: str) -> str:
    if code == 2:
        return f"{program}: command not found"
    return f"{program}: cannot execute: {message.strip()}"


__all__ = [
    "LeftoverAction",
    "NetMode",
    "RunOptions",
    "RunResult",
    "prepare_out_dir",
    "run",
]
