"""The policy: the YAML file that says what a job may reach and run, how much each rule
matters, and the documented exceptions (docs/policy.md)."""

from ciwatch.policy.loader import PolicyError, default_policy, find_policy, load_policy, resolve_policy
from ciwatch.policy.model import Mode, Policy, RuleCatalogue, Severity

__all__ = [
    "Mode",
    "Policy",
    "PolicyError",
    "RuleCatalogue",
    "Severity",
    "default_policy",
    "find_policy",
    "load_policy",
    "resolve_policy",
]
