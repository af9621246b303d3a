"""The rule ids: a contract. Policies name them (``rules:``, ``exceptions[].rule``), findings and
``verdict.json`` carry them, and docs anchor on them. Add ids; never rename or remove one."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from ciwatch.policy.model import Severity

DEFAULT_SEVERITIES: Mapping[str, Severity] = MappingProxyType(
    {
        "unfamiliar-egress": Severity.HIGH,
        "hook-network-tool": Severity.MEDIUM,
        "hook-shell": Severity.HIGH,
        "executable-write": Severity.MEDIUM,
        "exec-written-file": Severity.HIGH,
        "persistence-write": Severity.HIGH,
        "proxy-bypass": Severity.MEDIUM,
        "dns-tunnel": Severity.HIGH,
        "leftover-process": Severity.LOW,
        "credential-read": Severity.HIGH,
        "unapproved-hook": Severity.MEDIUM,
    }
)
"""Each rule's severity when the policy doesn't set one (``rules:`` overrides it)."""

RULE_IDS: tuple[str, ...] = tuple(DEFAULT_SEVERITIES)
"""Every rule id, in the order the docs list them."""
