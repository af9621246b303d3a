"""daemon-outside-trace: the build handed work to a local build server that ciwatch doesn't
trace (a Gradle daemon, a compiler cache's server started before ``ciwatch run``): what that
server runs, writes and fetches for the build is missing from the record."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

from ciwatch.facts.buildservers import known_server
from ciwatch.policy.model import Severity
from ciwatch.record.events import BuildServer
from ciwatch.rules.base import Finding, RuleContext, RuleInfo

INFO = RuleInfo(
    id="daemon-outside-trace",
    summary="The build handed work to a local build server that ciwatch does not trace",
    default_severity=Severity.MEDIUM,
    hint="A server started before `ciwatch run` compiles, runs and downloads for the build where ciwatch "
    "can't see it: stop it before the step, or run the tool without its server, so that what it does "
    "is traced.",
)


class DaemonOutsideTrace:
    info = INFO

    def check(self, context: RuleContext) -> Iterator[Finding]:
        for seq, event in context.record.events.of(BuildServer):
            node = context.tree.node_at(seq)
            message = (
                f"{event.server} (pid {event.server_pid}, not traced: started before ciwatch) did work for the "
                f"build through {event.endpoint}; what it ran, wrote and fetched is not in the record"
            )
            finding = context.finding(INFO, message, node, [seq])
            yield dataclasses.replace(finding, hint=_hint(event))


def _hint(event: BuildServer) -> str:
    known = known_server(event.argv)
    if known is None:
        return INFO.hint
    started = f"The {known.name} was started before `ciwatch run`, so what it does for the build is not traced"
    return f"{started}: {known.avoid}."
