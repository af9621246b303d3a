"""The one-screen terminal summary of a record (``ciwatch report``)."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import click

from ciwatch.analysis.network import hosts_by_hook
from ciwatch.analysis.tree import ProcessNode, ProcessTree
from ciwatch.net.address import is_loopback
from ciwatch.record.events import Anomaly, FileHash, Leftover, NetConnect, ProxyReady
from ciwatch.record.reader import Record

#: Lines per section before "... and N more": the summary must fit on one screen.
_MAX_LINES = 12
_MAX_TITLE = 160


@dataclass
class _Section:
    title: str
    lines: list[str] = field(default_factory=list)


def _style(text: str, color: bool, **style: object) -> str:
    return click.style(text, **style) if color else text  # type: ignore[arg-type]


def _capped(lines: list[str]) -> list[str]:
    if len(lines) <= _MAX_LINES:
        return lines
    return [*lines[: _MAX_LINES - 1], f"... and {len(lines) - _MAX_LINES + 1} more"]


def _spawned_by_hook(tree: ProcessTree) -> dict[int, list[str]]:
    """For each hook (by boundary pid), the distinct commands its tree ran, in order."""
    spawned: dict[int, list[str]] = defaultdict(list)
    for node in tree.nodes:
        if node.hook is None or node.starts_hook or not node.execs:
            continue
        name = node.name
        seen = spawned[node.hook.pid]
        if name not in seen:
            seen.append(name)
    return spawned


def render(record: Record, color: bool = False) -> str:
    tree = ProcessTree(record)
    header = record.header
    out: list[str] = []
    # One line, whatever the command: a multi-line `sh -c` script would push the summary off the screen.
    title = " ".join(" ".join(header.command).split())
    if len(title) > _MAX_TITLE:
        title = title[: _MAX_TITLE - 3] + "..."
    out.append(_style(f"ciwatch record: {title}", color, bold=True))
    job = header.job_context
    ids = [
        f"{k}={v}"
        for k, v in job.items()
        if k in ("GITHUB_REPOSITORY", "GITHUB_RUN_ID", "GITHUB_JOB", "CI_PROJECT_PATH", "CI_JOB_ID", "user", "host")
    ]
    out.append(f"  job: {job.get('provider', '?')} {' '.join(ids)}".rstrip())
    if record.end is None:
        out.append(_style("  the record has no end: ciwatch was killed before the run finished", color, fg="yellow"))
    else:
        end = record.end
        how = f"signal {end.build_signal}" if end.build_signal else f"exit {end.build_exit_code}"
        state = "" if end.clean else _style(f" (not clean: {end.error})", color, fg="yellow")
        out.append(f"  finished: {how} -> exit code {end.exit_code} in {end.duration_s:.1f}s{state}")

    sections = [
        _hooks_section(tree),
        _executables_section(record, tree),
        _network_section(record, tree),
        _anomalies_section(record, tree),
    ]
    for section in sections:
        out.append("")
        out.append(_style(section.title, color, bold=True))
        out.extend("  " + line for line in (_capped(section.lines) or ["none"]))
    return "\n".join(out)


def _hooks_section(tree: ProcessTree) -> _Section:
    section = _Section("Hooks")
    spawned = _spawned_by_hook(tree)
    managers = [node for node in tree.nodes if node.execs and _is_package_manager(node)]
    if managers:
        names = sorted({node.name for node in managers})
        section.lines.append("package managers: " + ", ".join(names))
    for hook in tree.hooks:
        ran = spawned.get(hook.pid, [])
        line = f"{hook.ecosystem}: {hook.label}"
        if ran:
            line += " -> " + ", ".join(ran[:8]) + (f" (+{len(ran) - 8})" if len(ran) > 8 else "")
        section.lines.append(line)
    if not tree.hooks:
        section.lines.append("no lifecycle hooks ran")
    return section


def _is_package_manager(node: ProcessNode) -> bool:
    from ciwatch.facts.programs import package_manager_of

    return package_manager_of(node.argv) is not None


def _executables_section(record: Record, tree: ProcessTree) -> _Section:
    section = _Section("Executables and scripts written")
    writers = _writers(record)
    listed: set[tuple[str, str]] = set()
    for item in record.events:
        event = item.event
        # A file run during the build is hashed then and again at the end: one line per content.
        if isinstance(event, FileHash) and (event.path, event.sha256) not in listed:
            listed.add((event.path, event.sha256))
            by = writers.get(event.path)
            who = tree.lineage_at(by) if by else f"pid {event.written_by}"
            section.lines.append(f"{event.path} ({event.file_type}, sha256 {event.sha256[:12]}) by {who}")
    return section


def _writers(record: Record) -> dict[str, int]:
    from ciwatch.record.events import FileWrite

    last: dict[str, int] = {}
    for item in record.events:
        event = item.event
        if isinstance(event, FileWrite):
            last[event.target or event.path] = item.seq
    return last


def _network_section(record: Record, tree: ProcessTree) -> _Section:
    """Hosts per hook: what each hook (and the build outside hooks) reached."""
    section = _Section("Network (hosts by hook)")
    grouped = hosts_by_hook(tree)
    local = _local_services(record, tree)
    for label in sorted(grouped.keys() | local.keys(), key=lambda label: (label is None, label or "")):
        section.lines.append(f"{label or 'outside hooks'}:")
        for host in grouped.get(label, []):
            kinds = "+".join(sorted(host.kinds))
            by = ", ".join(sorted(host.processes)[:3])
            section.lines.append(f"  {host.host} ({kinds} x{host.count}) by {by or '?'}")
        for endpoint, names in local.get(label, {}).items():
            section.lines.append(f"  {endpoint} (local x{len(names)}) by {', '.join(sorted(set(names))[:3])}")
    return section


def _local_services(record: Record, tree: ProcessTree) -> dict[str | None, dict[str, list[str]]]:
    """Hook label -> loopback ``address:port`` -> the processes that connected to it.

    Loopback is not egress (``contacts`` leaves it out), but a local registry mirror, cache or
    forward proxy is how many builds fetch everything: with ``--net off`` the hosts list would be
    empty. DNS to a local resolver is left out (its names are listed), and so is ciwatch's own
    proxy in ``env`` mode (its requests are listed by host)."""
    proxy = {
        listener for item in record.events if isinstance(item.event, ProxyReady) for listener in item.event.listeners
    }
    found: dict[str | None, dict[str, list[str]]] = {}
    for item in record.events:
        event = item.event
        if not isinstance(event, NetConnect) or event.port == 53 or f"{event.address}:{event.port}" in proxy:
            continue
        try:
            if not is_loopback(event.address):
                continue
        except ValueError:
            continue
        node = tree.node_at(item.seq)
        label = node.hook.label if node is not None and node.hook is not None else None
        endpoint = f"[{event.address}]:{event.port}" if ":" in event.address else f"{event.address}:{event.port}"
        found.setdefault(label, {}).setdefault(endpoint, []).append(node.name if node is not None else "?")
    return found


def _anomalies_section(record: Record, tree: ProcessTree) -> _Section:
    section = _Section("Anomalies and leftovers")
    for item in record.events:
        event = item.event
        if isinstance(event, Anomaly):
            section.lines.append(f"{event.anomaly}: {event.detail} in {tree.lineage_at(item.seq)}")
        elif isinstance(event, Leftover):
            section.lines.append(
                f"still running after the build ({event.action}): pid {event.pid} {' '.join(event.argv)[:80]}"
            )
    return section
