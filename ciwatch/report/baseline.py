"""``ciwatch baseline``: a proposed policy from clean runs, every entry commented with where
it came from. The documented way to a quiet first policy: run in audit mode, baseline,
review, commit as .ciwatch/policy.yml, then switch to block."""

from __future__ import annotations

import datetime
import json
import os
from pathlib import Path

from ciwatch.analysis.network import contacts
from ciwatch.analysis.tree import ProcessTree
from ciwatch.gate.allowlist import RuntimeAllowlist
from ciwatch.policy.model import Policy
from ciwatch.record.events import RegistryAllowed
from ciwatch.record.reader import Record


def _quote(text: str) -> str:
    return json.dumps(text)  # a JSON string is a valid YAML scalar, whatever it holds


def propose_policy(records: list[tuple[Path, Record]]) -> str:
    hosts: dict[str, str] = {}
    hooks: dict[str, str] = {}
    registries: dict[str, str] = {}
    for path, record in records:
        tree = ProcessTree(record)
        allowlist = RuntimeAllowlist(Policy())
        allowlist.observe_all(item.event for item in record.events)
        for item in record.events:
            if isinstance(item.event, RegistryAllowed):
                registries.setdefault(item.event.host, f"{item.event.ecosystem}, {item.event.source}")
        for contact in contacts(tree):
            if allowlist.allows(contact.host) or contact.host in hosts:
                continue
            who = tree.lineage(contact.node) if contact.node is not None else "?"
            hosts[contact.host] = f"{contact.kind} by {who} ({path}, event {contact.seq})"
        project = os.path.normpath(record.header.cwd)
        for hook in tree.hooks:
            node = next((n for n in tree.nodes if n.pid == hook.pid and n.starts_hook), None)
            if node is not None and node.execs and os.path.normpath(node.execs[0][1].cwd) == project:
                continue  # the project's own scripts need no allowance
            spec = f"{hook.package}@{hook.version}" if hook.version else hook.package
            hooks.setdefault(spec, f"{hook.hook} ran in {path} (event {hook.seq})")

    today = datetime.date.today().isoformat()
    lines = [
        f"# Proposed by `ciwatch baseline` on {today} from {len(records)} run(s):",
        *[f"#   {path}" for path, _ in records],
        "# Review every entry (each says where it came from), keep what you expect, then:",
        "#   ciwatch policy check .ciwatch/policy.yml",
        "version: 1",
        "mode: warn  # switch to block once runs are quiet",
        "fail-on: high",
        "allow:",
        "  registries: auto",
    ]
    for host, origin in sorted(registries.items()):
        lines.append(f"  # learned at run time: {host} ({origin})")
    if hosts:
        lines.append("  hosts:")
        for host, origin in sorted(hosts.items()):
            lines.append(f"    - {_quote(host)}  # {origin}")
    lines.append("hooks:")
    if hooks:
        lines.append("  allowed:")
        for spec, origin in sorted(hooks.items()):
            lines.append(f"    - {_quote(spec)}  # {origin}")
    else:
        lines.append("  allowed: []  # no package ran an install hook")
    lines.append("  import: auto")
    return "\n".join(lines) + "\n"
