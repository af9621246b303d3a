"""The Tracer's construction for a run, in one small function, so that how a tracer is
configured can change without touching the phases around it. Everything here is known
before the build's root is forked; only the redirector (which exists once the proxy has
started) is handed to the tracer later, by the egress phase."""

from __future__ import annotations

from collections.abc import Mapping

from ciwatch.modes import DnsRoute
from ciwatch.policy.model import Severity
from ciwatch.session.prepare import RunPlan
from ciwatch.session.recording import Recording
from ciwatch.trace import Tracer
from ciwatch.trace.options import TracerOptions


def new_tracer(plan: RunPlan, env: Mapping[str, str], recording: Recording) -> Tracer:
    blocking = recording.enforcer.blocking
    options = TracerOptions(
        on_idle=recording.writer.flush,
        home=env.get("HOME", ""),
        follow_hooks=plan.policy.severities.get("credential-read") is not Severity.OFF,
        gate=recording.enforcer if blocking else None,
        gate_direct_tcp=blocking and plan.net.traits.tracer_gates_direct_tcp,
        fanotify=plan.fanotify,
        fanotify_group=plan.fanotify_group,
        own_network_namespace=plan.net.traits.network_namespace,
        dns_via_namespace=blocking and plan.net.traits.dns is DnsRoute.NAMESPACE,
    )
    return Tracer(recording.sink_all, options)
