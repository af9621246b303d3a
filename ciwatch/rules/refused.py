"""A refusal is a finding: whatever block mode refused live (a request, a connection, a DNS
lookup, a datagram, a syscall) is a finding of the rule the refusal enforced, at least as
severe as the policy's ``fail-on``, so that the verdict is ``fail`` even when the refusal
stopped the attack and nothing else was found.

Not a rule of its own: it names the rule each refusal enforced (``unfamiliar-egress``,
``proxy-bypass``, ...). Where that rule already found the same thing (the same host, by the
same hook), the refusals join its evidence and raise its severity; otherwise they make one
finding per (rule, target, hook), with every refusal's sequence number as evidence.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

from ciwatch.analysis.tree import ProcessNode
from ciwatch.policy.model import Severity
from ciwatch.record.events import DnsQuery, Refusal
from ciwatch.record.vocabulary import RefusedWhat
from ciwatch.rules import RULES_BY_ID
from ciwatch.rules.base import Finding, RuleContext, RuleInfo

#: The rule a refusal stands for when the record doesn't name a known one (an older record,
#: or a reason from a newer ciwatch): what it refused says which rule it enforced.
_FALLBACK = {
    RefusedWhat.REQUEST: "unfamiliar-egress",
    RefusedWhat.CONNECT: "unfamiliar-egress",
    RefusedWhat.DNS: "unfamiliar-egress",
    RefusedWhat.TLS: "unfamiliar-egress",
    RefusedWhat.DATAGRAM: "proxy-bypass",
    RefusedWhat.IO_URING: "proxy-bypass",
}
_BY_ADDRESS = (RefusedWhat.CONNECT, RefusedWhat.DATAGRAM)

_Key = tuple[str, str, str | None, str | None]
"""(rule, target, package, hook): one finding each."""


def rule_of(refusal: Refusal) -> RuleInfo:
    """The rule a refusal enforced: its ``rule`` field, else its reason's prefix, else by what."""
    for candidate in (refusal.rule, refusal.reason.partition(":")[0].strip()):
        if candidate and candidate in RULES_BY_ID:
            return RULES_BY_ID[candidate].info
    return RULES_BY_ID[_FALLBACK.get(refusal.what, "proxy-bypass")].info


def _host(refusal: Refusal) -> str | None:
    """What a host exception and the other rules' findings name: the address of a refused
    connect or datagram (its target is ``address:port``), the name of a request or lookup."""
    if refusal.what in _BY_ADDRESS:
        address = refusal.target.rpartition(":")[0] if ":" in refusal.target else refusal.target
        return address.strip("[]") or None
    if refusal.what in (RefusedWhat.REQUEST, RefusedWhat.DNS, RefusedWhat.TLS):
        return refusal.target.lower().rstrip(".") or None
    return None


def _askers(context: RuleContext) -> dict[str, ProcessNode]:
    """DNS name -> the first process the tracer saw ask for it. The whole record is read
    first: the DNS listener's refusal can be written before the tracer's query event (the
    tracer writes its events once the tracee is resumed, the listener as it answers)."""
    askers: dict[str, ProcessNode] = {}
    for seq, query in context.record.events.of(DnsQuery):
        node = context.tree.node_at(seq)
        if node is not None:
            askers.setdefault(query.name.lower().rstrip("."), node)
    return askers


def with_refusals(context: RuleContext, findings: Iterable[Finding]) -> list[Finding]:
    """``findings`` with every refusal of the record turned into (or joined to) a finding."""
    result = list(findings)
    groups: dict[_Key, list[int]] = {}
    firsts: dict[_Key, tuple[Refusal, RuleInfo, ProcessNode | None]] = {}
    askers = _askers(context)
    for seq, event in context.record.events.of(Refusal):
        info = rule_of(event)
        if context.severity(info) is Severity.OFF:
            continue
        node = context.tree.node_at(seq)
        if node is None and event.what is RefusedWhat.DNS:
            # ciwatch's DNS listener can't always tell who asked (sandbox mode: a packet from
            # the namespace); the tracer's query of the same name says which process did.
            node = askers.get(event.target.lower().rstrip("."))
        hook = node.hook if node is not None else None
        key = (info.id, _host(event) or event.target, hook.package_ref if hook else None, hook.hook if hook else None)
        groups.setdefault(key, []).append(seq)
        firsts.setdefault(key, (event, info, node))
    for key, seqs in groups.items():
        refusal, info, node = firsts[key]
        severity = Severity(max(context.severity(info), context.policy.fail_on))
        host = _host(refusal)
        for index, finding in enumerate(result):
            same = (finding.rule, finding.host, finding.package, finding.hook) == (key[0], host, key[2], key[3])
            if host is not None and same:
                result[index] = dataclasses.replace(
                    finding,
                    severity=Severity(max(finding.severity, severity)),
                    message=f"{finding.message}; refused in block mode ({len(seqs)}x)",
                    evidence=tuple(sorted({*finding.evidence, *seqs})),
                )
                break
        else:
            who = node.hook.label if node is not None and node.hook is not None else "the build"
            times = f" ({len(seqs)}x)" if len(seqs) > 1 else ""
            message = f"block mode refused {who}'s {refusal.what} {refusal.target}{times}: {refusal.reason}"
            result.append(context.finding(info, message, node, seqs, severity=severity, host=host))
    return result
