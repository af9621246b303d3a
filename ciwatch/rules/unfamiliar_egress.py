"""unfamiliar-egress: a connection, request or DNS lookup to a host outside the allowlist."""

from __future__ import annotations

from collections.abc import Iterator

from ciwatch.analysis.network import Contact, ContactKind
from ciwatch.policy.model import Severity
from ciwatch.rules.base import Finding, RuleContext, RuleInfo

INFO = RuleInfo(
    id="unfamiliar-egress",
    summary="The build reached a host outside the allowlist",
    default_severity=Severity.HIGH,
    hint="If the host is legitimate, add it to allow.hosts (or a documented exception); otherwise find out "
    "why the package reaches it.",
)


class UnfamiliarEgress:
    info = INFO

    def check(self, context: RuleContext) -> Iterator[Finding]:
        grouped: dict[tuple[str, str | None], list[int]] = {}
        first: dict[tuple[str, str | None], Contact] = {}
        claims: dict[tuple[str, str | None], str] = {}
        kinds_of: dict[tuple[str, str | None], set[ContactKind]] = {}
        for contact in context.contacts:
            if context.allowlist.allows_contact(contact.host, contact.address):
                continue  # allowed, or an address that an allowed name resolved to
            host = contact.host
            if contact.address and context.allowlist.allows(host):
                # An allowed name sent to an address it never resolved to: the contact is the
                # address (the name is only what the client claimed in Host or SNI).
                claims[(contact.address, contact.hook_label)] = host
                host = contact.address
            key = (host, contact.hook_label)
            kinds_of.setdefault(key, set()).add(contact.kind)
            grouped.setdefault(key, []).append(contact.seq)
            first.setdefault(key, contact)
        base = context.severity(INFO)
        for (host, hook_label), seqs in grouped.items():
            contact = first[(host, hook_label)]
            kinds = sorted(kinds_of[(host, hook_label)])
            what = "/".join(kinds)
            if (host, hook_label) in claims:
                what += f", claiming to be {claims[(host, hook_label)]}"
            if hook_label is not None:
                message = f"{hook_label} reached {host} ({what}), which is not in the allowlist"
                severity = base
            else:
                message = f"the build reached {host} ({what}), which is not in the allowlist"
                severity = Severity(max(Severity.LOW, base - 1)) if base > Severity.OFF else base
            yield context.finding(INFO, message, contact.node, seqs, severity=severity, host=host)
