"""The policy: the YAML file that says what a job may reach and run, how much each rule
matters, and the documented exceptions (docs/policy.md)."""

from ciwatch.policy.loader import PolicyError, default_policy, find_policy, load_policy, resolve_policy
from ciwatch.policy.model import Mode, Policy, Severity
from ciwatch.policy.rule_ids import RULE_IDS

__all__ = [
    "RULE_IDS",
    "Mode",
    "Policy",
    "PolicyError",
    "Severity",
    "default_policy",
    "find_policy",
    "load_policy",
    "resolve_policy",
]
