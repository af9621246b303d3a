"""leftover-process: a process of the build still running when the build ended: low for the
build's own (``npm start &``, a Gradle daemon the user's command started), high when it
descends from an install hook."""

from __future__ import annotations

from collections.abc import Iterator

from ciwatch.policy.model import Severity
from ciwatch.record.events import Leftover
from ciwatch.rules.base import Finding, RuleContext, RuleInfo

INFO = RuleInfo(
    id="leftover-process",
    summary="A process started by the build was still running when the build ended",
    default_severity=Severity.LOW,
    hint="Daemons started by install hooks (miners, beacons) outlive the step; if it is a known build server "
    "(a compiler cache, a Gradle daemon), stop it at the end of the step or pass --leftovers kill (a hook's "
    "daemon can also be excepted by package).",
)


class LeftoverProcess:
    info = INFO

    def check(self, context: RuleContext) -> Iterator[Finding]:
        for seq, event in context.record.events.of(Leftover):
            node = context.tree.node_at(seq)
            command = " ".join(event.argv)[:120] or f"pid {event.pid}"
            severity = context.severity(INFO)
            if node is not None and node.hook is not None and severity > Severity.OFF:
                # A hook has no reason to leave a process behind: a daemon that waits for
                # the build to end before it acts (and a miner) look exactly like this. So
                # it fails block mode at the build's exit, before it does anything.
                severity = max(severity, Severity.HIGH)
                command = f"{node.hook.label} left {command}"
            message = f"{command} was still running when the build ended ({event.action})"
            yield context.finding(INFO, message, node, [seq], severity=Severity(severity))
