"""``ciwatch baseline``: a proposed policy from clean runs, every entry commented with where
it came from. The documented way to a quiet first policy: run in audit mode, baseline,
review, commit as .ciwatch/policy.yml, then switch to block.

The proposal makes the runs it was made from pass: the hosts they reached are allowed, the
packages that ran hooks are approved, and every finding still counted after that gets the
narrowest exception there is (its rule and the package at its exact version, or the host),
with a reason for a person to write and an expiry, so that each is reviewed rather than
forgotten. A finding with neither a package nor a host can't be excepted narrowly: it is
listed, not excepted, and the run doesn't pass until it is understood.
"""

from __future__ import annotations

import datetime
import json
import os
from pathlib import Path

from ciwatch.analysis.network import contacts
from ciwatch.analysis.tree import ProcessTree
from ciwatch.dataclass import dataclass
from ciwatch.facts.ecosystems import Ecosystem
from ciwatch.gate.allowlist import RuntimeAllowlist
from ciwatch.policy.loader import parse_policy
from ciwatch.policy.model import PackageSpec, Policy
from ciwatch.policy.values import host_problem, parse_package
from ciwatch.record.events import RegistryAllowed
from ciwatch.record.reader import Record
from ciwatch.rules.base import Finding
from ciwatch.verdict import RULE_CATALOGUE, evaluate

#: How long a proposed exception lasts before it must be looked at again.
EXCEPTION_LIFETIME = datetime.timedelta(days=90)
REASON_PLACEHOLDER = "TODO: why this is expected (proposed by ciwatch baseline)"


@dataclass(frozen=True)
class _Exception:
    rule: str
    package: str | None
    host: str | None
    origin: str

    @property
    def key(self) -> tuple[str, str | None, str | None]:
        return self.rule, self.package, self.host


def _quote(text: str) -> str:
    return json.dumps(text)  # a JSON string is a valid YAML scalar, whatever it holds


def _writable(text: str) -> bool:
    """Whether a name can go into the policy as it is: a name holding bytes that aren't
    UTF-8 or control characters (a build can make both) can't be written, or matched, as YAML."""
    return text.isprintable()  # lone surrogates (bytes that weren't UTF-8) are not printable


def _writable_host(host: str) -> bool:
    """A host the policy would take: the build chose the name, and may have chosen one no
    allowlist entry can spell (empty, a wildcard of its own, a URL)."""
    return _writable(host) and host_problem(host) is None


def _writable_package(spec: str) -> bool:
    return _writable(spec) and parse_package(spec)[1] is None


def _comment(text: str) -> str:
    """``text`` on one comment line: what isn't printable shown as an escape."""
    return "".join(char if char.isprintable() else f"\\x{ord(char) & 0xFF:02x}" for char in " ".join(text.split()))


def propose_policy(records: list[tuple[Path, Record]], today: datetime.date | None = None) -> str:
    today = today or datetime.date.today()
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
            if allowlist.allows(contact.host) or contact.host in hosts or not _writable_host(contact.host):
                continue
            who = tree.lineage(contact.node) if contact.node is not None else "?"
            hosts[contact.host] = f"{contact.kind} by {who} ({path}, event {contact.seq})"
        project = os.path.normpath(record.header.cwd)
        for hook in tree.hooks:
            node = next((n for n in tree.nodes if n.pid == hook.pid and n.starts_hook), None)
            if node is not None and node.execs and os.path.normpath(node.execs[0][1].cwd) == project:
                continue  # the project's own scripts need no allowance
            spec = f"{hook.package}@{hook.version}" if hook.version else hook.package
            if _writable_package(spec):
                hooks.setdefault(spec, f"{hook.hook} ran in {path} (event {hook.seq})")

    head = _render(records, registries, hosts, hooks, [], [], today)
    exceptions, unexcepted = _exceptions_for(records, head)
    text = _render(records, registries, hosts, hooks, exceptions, unexcepted, today)
    # A versioned spec the version syntax can't read (a Debian version, say) never matches:
    # such an exception falls back to the package's name.
    still = _counted(records, text)
    if any(e.package is not None and (e.rule, e.package) in still for e in exceptions):
        exceptions = [_unversioned(e) if (e.rule, e.package) in still else e for e in exceptions]
        text = _render(records, registries, hosts, hooks, exceptions, unexcepted, today)
    return text


def _exceptions_for(records: list[tuple[Path, Record]], policy_text: str) -> tuple[list[_Exception], list[str]]:
    """The narrowest exception for each finding the runs still count under ``policy_text``,
    and a description of each finding that can't be excepted narrowly."""
    policy = parse_policy(policy_text, "<baseline>", known_rules=RULE_CATALOGUE)
    proposed: dict[tuple[str, str | None, str | None], _Exception] = {}
    unexcepted: list[str] = []
    for path, record in records:
        for finding in evaluate(record, policy).counted:
            origin = f"{finding.message} ({path}, event {finding.evidence[0] if finding.evidence else '?'})"
            exception = _narrowest(finding, origin)
            if exception is None or not _expressible(exception):
                unexcepted.append(f"{finding.rule}: {finding.message} ({path}): {finding.lineage}")
            else:
                proposed.setdefault(exception.key, exception)
    return list(proposed.values()), sorted(set(unexcepted))


def _expressible(exception: _Exception) -> bool:
    if exception.package is not None:
        return _writable_package(exception.package)
    return _writable_host(exception.host or "")


def _narrowest(finding: Finding, origin: str) -> _Exception | None:
    if finding.package_name:
        return _Exception(finding.rule, _exact_spec(finding), None, origin)
    if finding.host:
        return _Exception(finding.rule, None, finding.host, origin)
    return None


def _exact_spec(finding: Finding) -> str:
    """``ecosystem:name@version``, the version as an exact range in its ecosystem's syntax."""
    ecosystem = Ecosystem.named(finding.ecosystem)
    prefix = f"{finding.ecosystem}:" if ecosystem is not None else ""
    name, version = finding.package_name or "", finding.package_version
    if not version:
        return f"{prefix}{name}"
    return f"{prefix}{name}@{_exact_range(ecosystem.packages if ecosystem else None, version)}"


def _exact_range(packages: Ecosystem | None, version: str) -> str:
    if packages is Ecosystem.PIP:
        return f"=={version}"
    if packages is Ecosystem.GEM:
        return f"= {version}"
    if packages in (Ecosystem.MAVEN, Ecosystem.GRADLE):
        return f"[{version}]"
    return version  # npm's syntax: a bare version is exactly that version


def _unversioned(exception: _Exception) -> _Exception:
    assert exception.package is not None
    spec = PackageSpec.parse(exception.package)
    return _Exception(exception.rule, str(PackageSpec(spec.name, None, spec.ecosystem)), None, exception.origin)


def _counted(records: list[tuple[Path, Record]], policy_text: str) -> set[tuple[str, str | None]]:
    """(rule, proposed spec) of what ``policy_text`` still leaves counted."""
    policy = parse_policy(policy_text, "<baseline>", known_rules=RULE_CATALOGUE)
    return {
        (f.rule, _exact_spec(f) if f.package_name else None)
        for _, record in records
        for f in evaluate(record, policy).counted
    }


def _render(
    records: list[tuple[Path, Record]],
    registries: dict[str, str],
    hosts: dict[str, str],
    hooks: dict[str, str],
    exceptions: list[_Exception],
    unexcepted: list[str],
    today: datetime.date,
) -> str:
    lines = [
        f"# Proposed by `ciwatch baseline` on {today.isoformat()} from {len(records)} run(s):",
        *[f"#   {_comment(str(path))}" for path, _ in records],
        "# Review every entry (each says where it came from), keep what you expect, then:",
        "#   ciwatch policy check .ciwatch/policy.yml",
        "version: 1",
        "mode: warn  # switch to block once runs are quiet",
        "fail-on: high",
        "allow:",
        "  registries: auto",
    ]
    for host, origin in sorted(registries.items()):
        lines.append(f"  # learned at run time: {_comment(f'{host} ({origin})')}")
    if hosts:
        lines.append("  hosts:")
        for host, origin in sorted(hosts.items()):
            lines.append(f"    - {_quote(host)}  # {_comment(origin)}")
    lines.append("hooks:")
    if hooks:
        lines.append("  allowed:")
        for spec, origin in sorted(hooks.items()):
            lines.append(f"    - {_quote(spec)}  # {_comment(origin)}")
    else:
        lines.append("  allowed: []  # no package ran an install hook")
    lines.append("  import: auto")
    if exceptions:
        expires = (today + EXCEPTION_LIFETIME).isoformat()
        lines.append("# What the runs did that a rule counts: each excepted for its package or host only.")
        lines.append("# Write the reason (it is shown next to every finding it covers), or remove the entry.")
        lines.append("exceptions:")
        for exception in sorted(exceptions, key=lambda e: (e.rule, e.package or "", e.host or "")):
            lines.append(f"  # {_comment(exception.origin)}")
            lines.append(f"  - rule: {exception.rule}")
            if exception.package is not None:
                lines.append(f"    package: {_quote(exception.package)}")
            else:
                lines.append(f"    host: {_quote(exception.host or '')}")
            lines.append(f"    reason: {_quote(REASON_PLACEHOLDER)}")
            lines.append(f"    expires: {expires}")
    if unexcepted:
        lines.append("# Not excepted: these findings name no package and no host, so no exception can be narrow.")
        lines.append("# Find out why the build does this before you accept it:")
        lines.extend(f"#   {_comment(line)}" for line in unexcepted)
    return "\n".join(lines) + "\n"
