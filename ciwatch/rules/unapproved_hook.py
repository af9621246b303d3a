"""unapproved-hook: a lifecycle hook ran for a package that neither the policy nor the
project (npm allowScripts, pnpm onlyBuiltDependencies/allowBuilds, LavaMoat allowScripts)
allows to run hooks. The project's own scripts are always allowed."""

from __future__ import annotations

import os
from collections.abc import Iterator

from ciwatch.policy.model import PackageSpec, Severity
from ciwatch.record.events import HooksAllowed
from ciwatch.rules.base import Finding, RuleContext, RuleInfo
from ciwatch.rules.project_choice import in_project_tree

INFO = RuleInfo(
    id="unapproved-hook",
    summary="A package ran an install hook without being allowed to",
    default_severity=Severity.MEDIUM,
    hint="Review what the hook does; allow the package under hooks.allowed in the policy (or in the "
    "project's allowScripts / onlyBuiltDependencies) if it needs its hook.",
)


class UnapprovedHook:
    info = INFO

    def check(self, context: RuleContext) -> Iterator[Finding]:
        policy = context.policy
        if policy.hooks_allowed is None:
            return
        allowed = list(policy.hooks_allowed)
        if policy.hooks_import:
            for _, approval in context.record.events.of(HooksAllowed):
                allowed += [PackageSpec.parse(text) for text in approval.packages]
        project = os.path.normpath(context.record.header.cwd)
        reported: set[tuple[str, str]] = set()
        for hook in context.tree.hooks:
            node = next((n for n in context.tree.nodes if n.pid == hook.pid and n.starts_hook), None)
            if node is not None and node.execs and in_project_tree(node.execs[0][1].cwd, project):
                continue  # the project's own script (npm run build, its own postinstall, a workspace's)
            if any(spec.matches(hook.ecosystem, hook.package, hook.version) for spec in allowed):
                continue
            key = (hook.package_ref, hook.hook)
            if key in reported:
                continue
            reported.add(key)
            message = f"{hook.package_ref} ran its {hook.hook} hook but is not allowed to run hooks"
            yield context.finding(INFO, message, node, [hook.seq])
