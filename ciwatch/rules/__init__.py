"""The rules: one module each, each declaring its id, summary, default severity and hint once."""

from collections.abc import Mapping
from types import MappingProxyType

from ciwatch.policy.model import Severity
from ciwatch.rules.base import Finding, Rule, RuleContext, RuleInfo
from ciwatch.rules.credential_read import CredentialRead
from ciwatch.rules.daemon_outside_trace import DaemonOutsideTrace
from ciwatch.rules.dns_tunnel import DnsTunnel
from ciwatch.rules.exec_written_file import ExecWrittenFile
from ciwatch.rules.executable_write import ExecutableWrite
from ciwatch.rules.hook_network_tool import HookNetworkTool
from ciwatch.rules.hook_shell import HookShell
from ciwatch.rules.leftover_process import LeftoverProcess
from ciwatch.rules.persistence_write import PersistenceWrite
from ciwatch.rules.proxy_bypass import ProxyBypass
from ciwatch.rules.record_tamper import RecordTamper
from ciwatch.rules.tracer_evasion import TracerEvasion
from ciwatch.rules.unapproved_hook import UnapprovedHook
from ciwatch.rules.unfamiliar_egress import UnfamiliarEgress

ALL_RULES: tuple[Rule, ...] = (
    UnfamiliarEgress(),
    HookNetworkTool(),
    HookShell(),
    ExecutableWrite(),
    ExecWrittenFile(),
    PersistenceWrite(),
    ProxyBypass(),
    TracerEvasion(),
    DnsTunnel(),
    LeftoverProcess(),
    CredentialRead(),
    UnapprovedHook(),
    RecordTamper(),
    DaemonOutsideTrace(),
)
RULES_BY_ID = {rule.info.id: rule for rule in ALL_RULES}
RULE_CATALOGUE: Mapping[str, Severity] = MappingProxyType(
    {rule.info.id: rule.info.default_severity for rule in ALL_RULES}
)
"""Rule id -> default severity, in the docs' order: what a policy may name (``known_rules``)."""

__all__ = ["ALL_RULES", "RULES_BY_ID", "RULE_CATALOGUE", "Finding", "Rule", "RuleContext", "RuleInfo"]
