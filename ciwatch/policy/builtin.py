"""The built-in default policy's data: ``default.yaml`` (the file users read and copy) as
``ciwatch.policy.document`` reads it, written here so that a run with the built-in policy
imports no YAML parser on the way to its build (PyYAML and the policy reader's node API: ~15 ms
of every start). tests/test_startup_imports.py checks that the two say the same."""

from __future__ import annotations

from typing import Any

DEFAULT_POLICY: dict[str, Any] = {
    "version": 1,
    "mode": "audit",
    "fail-on": "high",
    "allow": {"registries": "auto", "hosts": []},
    "hooks": {"import": "auto"},
    "rules": {
        "unfamiliar-egress": "high",
        "hook-network-tool": "medium",
        "hook-shell": "high",
        "executable-write": "medium",
        "exec-written-file": "high",
        "persistence-write": "high",
        "proxy-bypass": "medium",
        "tracer-evasion": "high",
        "dns-tunnel": "high",
        "leftover-process": "low",
        "credential-read": "high",
        "unapproved-hook": "medium",
        "record-tamper": "high",
        "daemon-outside-trace": "medium",
    },
    "exceptions": [],
}
