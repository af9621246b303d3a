"""hook-network-tool: a hook's process tree runs a downloader or network tool, or an
interpreter one-liner that fetches a URL."""

from __future__ import annotations

from collections.abc import Iterator

from ciwatch.facts.programs import is_fetching_one_liner, is_network_tool
from ciwatch.policy.model import Severity
from ciwatch.rules.base import Finding, RuleContext, RuleInfo

INFO = RuleInfo(
    id="hook-network-tool",
    summary="An install hook ran a network tool (curl, wget, nc, ...) or a fetching one-liner",
    default_severity=Severity.MEDIUM,
    hint="Install hooks rarely need to download anything; if this package must, except it by package with a reason.",
)


class HookNetworkTool:
    info = INFO

    def check(self, context: RuleContext) -> Iterator[Finding]:
        for node in context.tree.nodes:
            if node.hook is None:
                continue
            for seq, event in node.execs:
                if is_network_tool(event.argv, event.path):
                    what = f"network tool {event.argv[0] if event.argv else event.path}"
                elif is_fetching_one_liner(event.argv, event.path):
                    what = "an interpreter one-liner that reaches the network"
                else:
                    continue
                yield context.finding(INFO, f"{node.hook.label} ran {what}", node, [seq])
