"""Phase 3: the proxy (in a mode that has one), the tracer set up to match, and what the
allowlist must hold before the build's first request."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from ciwatch.dataclass import dataclass
from ciwatch.record.events import HooksAllowed
from ciwatch.session.prepare import RunPlan
from ciwatch.session.recording import Recording
from ciwatch.session.registries import RegistryDiscovery, settle_registries
from ciwatch.session.spawn import Spawned
from ciwatch.trace import Tracer
from ciwatch.trace.spawn import SpawnedRoot

if TYPE_CHECKING:
    from ciwatch.egress.run import EgressRun


@dataclass(frozen=True)
class Armed:
    """The build ready to be released."""

    root: SpawnedRoot
    env: dict[str, str]
    """The build's environment: the job's, plus what the proxy needs its clients to see."""
    discovery: RegistryDiscovery | None
    """Still to settle once the build has run (None: settled already, or not asked for);
    started at the build's first run of a package manager, or when it is settled."""


def new_egress(plan: RunPlan, recording: Recording, tracer: Tracer) -> EgressRun | None:
    """The proxy's plumbing, not started yet (so that ``run`` can stop it whatever happens
    next); None when the mode has no proxy."""
    if not plan.net.traits.uses_proxy:
        return None
    # Imported here: mitmproxy is a long import that --net off never needs.
    from ciwatch.egress.run import EgressRun

    return EgressRun(
        plan.net,
        recording.sink,
        tracer.build_pids,
        list(plan.extra_cas),
        plan.verbose,
        allowlist=recording.allowlist,
        enforcer=recording.enforcer,
    )


def open_egress(
    plan: RunPlan,
    recording: Recording,
    tracer: Tracer,
    spawned: Spawned,
    egress: EgressRun | None,
    env: Mapping[str, str],
) -> Armed:
    build_env = dict(env)
    if egress is not None:
        build_env.update(egress.start(build_env, spawned.root.pid))
        tracer.redirect_through(egress.redirector)  # set in redirect mode only
    discovery = spawned.discovery
    if discovery is not None and recording.enforcer.blocking:
        # Live decisions need the whole allowlist before the build makes its first request.
        settle_registries(discovery, recording.registries, recording.allowlist, recording.sink)
        discovery = None
    elif discovery is not None:
        recording.registries.discover_when_used(discovery)
    if plan.policy.hooks_import:
        # Read before the build is released (the build could rewrite the project's files).
        from ciwatch.facts.project_hooks import project_hook_allowlists

        for packages, where in project_hook_allowlists(Path.cwd()):
            recording.sink(HooksAllowed(packages=packages, source=where))
    return Armed(spawned.root, build_env, discovery)
