"""credential-read: a hook reads secrets it has no business with: package-manager and cloud
credential files, SSH keys, another process's memory or environment; or runs a tool that
prints tokens (``gh auth token``) or hunts for them (trufflehog, gitleaks)."""

from __future__ import annotations

import os
from collections.abc import Iterator

from ciwatch.policy.model import Severity
from ciwatch.record.events import Anomaly, AnomalyKind, FileRead
from ciwatch.rules.base import Finding, RuleContext, RuleInfo
from ciwatch.rules.programs import program_name
from ciwatch.trace.sensitive import is_credential_path

INFO = RuleInfo(
    id="credential-read",
    summary="An install hook read credentials, another process's memory, or ran a token-dumping tool",
    default_severity=Severity.HIGH,
    hint="Rotate the credentials the job had, then remove the package: no install hook needs them.",
)

_TOKEN_TOOLS = frozenset({"trufflehog", "gitleaks", "detect-secrets", "noseyparker"})


def _token_command(argv: list[str]) -> str | None:
    name = program_name(argv)
    if name in _TOKEN_TOOLS:
        return name
    words = [arg for arg in argv[1:] if not arg.startswith("-")]
    if name == "gh" and words[:2] == ["auth", "token"]:
        return "gh auth token"
    if name == "gh" and words[:2] == ["auth", "status"] and ("-t" in argv or "--show-token" in argv):
        return "gh auth status --show-token"
    if name == "git" and words[:2] == ["credential", "fill"]:
        return "git credential fill"
    if name == "aws" and words[:2] == ["configure", "export-credentials"]:
        return "aws configure export-credentials"
    return None


class CredentialRead:
    info = INFO

    def check(self, context: RuleContext) -> Iterator[Finding]:
        home = context.record.header.home
        seen: set[tuple[str, int]] = set()
        for item in context.record.events:
            event = item.event
            node = context.tree.node_at(item.seq)
            if node is None or node.hook is None:
                continue
            message = None
            target = ""
            if isinstance(event, FileRead):
                if event.how == "open" and not is_credential_path(event.path, home, event.pid):
                    continue
                target = event.path
                message = f"{node.hook.label} read {event.path}" + (f" ({event.how})" if event.how != "open" else "")
            elif isinstance(event, Anomaly) and event.anomaly is AnomalyKind.PTRACE:
                target = event.detail
                message = f"{node.hook.label} used ptrace on another process: {event.detail}"
            if message is None or (target, node.hook.pid) in seen:
                continue
            seen.add((target, node.hook.pid))
            yield context.finding(INFO, message, node, [item.seq])
        for node in context.tree.nodes:
            if node.hook is None:
                continue
            for seq, event in node.execs:
                tool = _token_command(event.argv)
                mentioned = [a for a in event.argv[1:] if is_credential_path(os.path.normpath(a), home)]
                if tool is not None:
                    yield context.finding(INFO, f"{node.hook.label} ran {tool}", node, [seq])
                elif mentioned and (mentioned[0], node.hook.pid) not in seen:
                    seen.add((mentioned[0], node.hook.pid))
                    yield context.finding(INFO, f"{node.hook.label} ran {node.name} on {mentioned[0]}", node, [seq])
