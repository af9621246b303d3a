"""Phase 2: the build's root forked, waiting to exec, and seized by the tracer."""

from __future__ import annotations

import os
import signal
from collections.abc import Mapping
from pathlib import Path

from ptrace import PtraceError

from ciwatch.dataclass import dataclass
from ciwatch.errors import EnvironmentNotSupported
from ciwatch.policy.model import Mode
from ciwatch.session.prepare import RunPlan
from ciwatch.session.registries import RegistryDiscovery
from ciwatch.trace import Tracer, procfs
from ciwatch.trace.spawn import Credentials, SpawnedRoot, read_exec_error, spawn_waiting, wait_ready


@dataclass(frozen=True)
class Spawned:
    root: SpawnedRoot
    discovery: RegistryDiscovery | None
    """For ``registries: auto``: its inputs taken before the build is released; asking, in
    block mode only (elsewhere it starts at the build's first package manager)."""


def spawn(plan: RunPlan, env: Mapping[str, str], tracer: Tracer) -> Spawned:
    traits = plan.net.traits
    # Fork before any thread starts: the child then only execs.
    root = spawn_waiting(
        plan.command,
        trace_receives=traits.tracer_redirects,
        new_network_namespace=traits.network_namespace,
        fanotify=plan.fanotify,
        run_as=Credentials(user.uid, user.gid, user.groups) if (user := plan.build_user) else None,
    )
    discovery = (
        RegistryDiscovery(Path.cwd(), env, plan.command, use_cache=plan.discovery_cache)
        if plan.policy.allow.registries_auto
        else None
    )
    if discovery is not None and plan.policy.mode is Mode.BLOCK:
        # Block mode waits for the answer before the release (session/egress.py): asked now,
        # alongside the proxy's set-up. Elsewhere the build's first package manager asks.
        discovery.start()
    if not wait_ready(root):
        _, message = read_exec_error(root) or (0, "the build's process failed to start")
        os.waitpid(root.pid, 0)
        raise EnvironmentNotSupported(f"cannot start the build: {message.strip()}")
    try:
        tracer.start(root.pid, os.getpid())
    except PtraceError as failure:
        other = procfs.tracer_of(root.pid)
        os.kill(root.pid, signal.SIGKILL)
        os.waitpid(root.pid, 0)
        if other:
            raise EnvironmentNotSupported(
                f"cannot trace the build: it is already traced by {procfs.comm(other)} (pid {other}), "
                "and a process has only one tracer",
                hint="Run ciwatch outside strace, gdb or other tracers (they may trace ciwatch, not the build).",
            ) from None
        raise EnvironmentNotSupported(f"cannot trace the build: ptrace failed ({failure})") from None
    return Spawned(root, discovery)
