"""hook-shell: a hook runs a shell (or an interpreter) on a script it downloaded or received
on stdin (``curl ... | sh``), or an interactive or login shell. The package manager's own
``sh -c <script>`` wrapper is not a finding."""

from __future__ import annotations

import os
from collections.abc import Iterator

from ciwatch.analysis.tree import ProcessNode
from ciwatch.facts.programs import (
    INTERPRETERS,
    inline_code,
    is_fetching_one_liner,
    is_interactive_or_login_shell,
    is_network_tool,
    is_shell,
    program_name,
    reads_program_from_stdin,
)
from ciwatch.policy.model import Severity
from ciwatch.rules.base import Finding, RuleContext, RuleInfo

INFO = RuleInfo(
    id="hook-shell",
    summary="An install hook piped a download into a shell, ran a downloaded script, or started a login shell",
    default_severity=Severity.HIGH,
    hint="Running fetched code from an install hook is how most package-borne attacks start: remove the "
    "package, or pin and review what it runs.",
)


class HookShell:
    info = INFO

    def check(self, context: RuleContext) -> Iterator[Finding]:
        writers_of_pipe: dict[str, list[str]] = {}
        for node in context.tree.nodes:
            for _, event in node.execs:
                if event.stdout.startswith("pipe:"):
                    writers_of_pipe.setdefault(event.stdout, []).append(node.name)
        network_writers = {
            pipe
            for node in context.tree.nodes
            for _, event in node.execs
            if event.stdout.startswith("pipe:") and is_network_tool(event.argv, event.path)
            for pipe in [event.stdout]
        }
        # A file counts as downloaded when the process that wrote it reached the network: curl -o,
        # and as much a python -c or node script that fetched it.
        online = {id(contact.node) for contact in context.contacts if contact.node is not None}
        for node in context.tree.nodes:
            if node.hook is None:
                continue
            for seq, event in node.execs:
                if seq == node.hook.seq and inline_code(event.argv, event.path) is not None:
                    # The package manager's wrapper (npm's `sh -c <script>`). Yarn berry has none:
                    # its own shell runs the script, so the boundary is the script's first command.
                    continue
                reason = None
                if reads_program_from_stdin(event.argv, event.path):
                    if event.stdin in network_writers:
                        feeder = ", ".join(writers_of_pipe.get(event.stdin, ["?"]))
                        reason = f"runs what {feeder} downloads, piped into {node.name}"
                    elif event.stdin.startswith("pipe:") or event.stdin.startswith("socket:"):
                        reason = f"runs a program from its stdin ({node.name} reading {event.stdin.split(':')[0]})"
                if reason is None and is_interactive_or_login_shell(event.argv, event.path):
                    reason = f"starts an interactive or login shell ({' '.join(event.argv[:3])})"
                if reason is None and (
                    is_shell(event.argv, event.path) or program_name(event.argv, event.path) in INTERPRETERS
                ):
                    script = next((a for a in event.argv[1:] if not a.startswith("-")), None)
                    written = context.written_by_hooks.get(_absolute(script, event.cwd)) if script else None
                    if written and any(w_seq < seq and _downloaded(w_node, online) for w_seq, w_node in written):
                        reason = f"runs {script}, which a process of the hook downloaded"
                if reason:
                    yield context.finding(INFO, f"{node.hook.label} {reason}", node, [seq])


def _absolute(path: str, cwd: str) -> str:
    return os.path.normpath(os.path.join(cwd, path))


def _downloaded(node: ProcessNode, online: set[int]) -> bool:
    return id(node) in online or any(
        is_network_tool(e.argv, e.path) or is_fetching_one_liner(e.argv, e.path) for _, e in node.execs
    )
