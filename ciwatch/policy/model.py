"""The policy: what a job may reach and run, how much each rule matters, and the documented
exceptions. Loaded and validated by ``ciwatch.policy.loader``; evaluated by
``ciwatch.rules``. Everything here is immutable and pure."""

from __future__ import annotations

import datetime
import fnmatch
import ipaddress
from collections.abc import Mapping
from enum import IntEnum, StrEnum

from ciwatch.dataclass import dataclass, field
from ciwatch.facts.ecosystems import Ecosystem


class Mode(StrEnum):
    AUDIT = "audit"
    """Record and judge; the job's exit code is the build's."""
    WARN = "warn"
    """As audit, and findings are surfaced as warnings (terminal, CI annotations)."""
    BLOCK = "block"
    """Refuse what the allowlist doesn't allow as it happens; a ``fail`` verdict fails the job."""


class Severity(IntEnum):
    OFF = 0
    LOW = 1
    MEDIUM = 2
    HIGH = 3
    CRITICAL = 4

    @property
    def label(self) -> str:
        return self.name.lower()

    @classmethod
    def parse(cls, text: str) -> Severity:
        return cls[text.upper()]


@dataclass(frozen=True)
class HostPattern:
    """An allowed host: exact (``registry.example``), a wildcard (``*.example.com``, which
    also matches ``example.com``' subdomains at any depth but not ``example.com`` itself), or
    an address range (``10.0.0.0/8``)."""

    text: str

    def matches(self, host: str) -> bool:
        host = host.lower().rstrip(".")
        pattern = self.text.lower().rstrip(".")
        if "/" in pattern:
            try:
                return ipaddress.ip_address(host) in ipaddress.ip_network(pattern, strict=False)
            except ValueError:
                return False
        if pattern.startswith("*."):
            return host.endswith(pattern[1:])
        if any(ch in pattern for ch in "*?["):
            return fnmatch.fnmatchcase(host, pattern)
        return host == pattern


@dataclass(frozen=True)
class PackageSpec:
    """A package name with an optional version range: ``esbuild``, ``esbuild@^0.19``,
    ``@scope/pkg@>=1.2 <2``, ``pip:cryptography`` (an ecosystem prefix is optional)."""

    name: str
    version_range: str | None = None
    ecosystem: str | None = None

    @classmethod
    def parse(cls, text: str) -> PackageSpec:
        ecosystem = None
        if ":" in text.split("@", 1)[0]:
            ecosystem, text = text.split(":", 1)
        at = text.find("@", 1)  # a scope's leading @ is part of the name
        if at < 0:
            return cls(text, None, ecosystem)
        return cls(text[:at], text[at + 1 :] or None, ecosystem)

    def matches(self, ecosystem: str, name: str, version: str) -> bool:
        from ciwatch.policy.versions import syntax_for, version_in_range

        if self.ecosystem is not None and not _same_ecosystem(self.ecosystem, ecosystem):
            return False
        if not fnmatch.fnmatchcase(name.lower(), self.name.lower()):
            return False
        return self.version_range is None or version_in_range(version, self.version_range, syntax_for(self.ecosystem))

    def __str__(self) -> str:
        prefix = f"{self.ecosystem}:" if self.ecosystem else ""
        return f"{prefix}{self.name}@{self.version_range}" if self.version_range else f"{prefix}{self.name}"


def _same_ecosystem(named: str, package: str) -> bool:
    """Whether a spec's ecosystem covers a package's: npm's packages are npm's whichever client
    installs them (yarn, pnpm, bun); uv's and poetry's are pip's."""
    spec, found = Ecosystem.named(named), Ecosystem.named(package)
    if spec is None or found is None:
        return named == package
    return spec is found.packages or (spec is Ecosystem.NPM and found.npm_family)


@dataclass(frozen=True)
class Exception_:
    """A documented exception: a rule that does not apply to a package or a host."""

    rule: str
    reason: str
    package: PackageSpec | None = None
    host: HostPattern | None = None
    expires: datetime.date | None = None
    source: str = ""
    """``file:line`` where it was written, for the report."""

    def expired(self, today: datetime.date) -> bool:
        return self.expires is not None and today > self.expires


@dataclass(frozen=True)
class Allowlist:
    registries_auto: bool = True
    """Allow the registries the job's package managers are configured for, and the download
    hosts their indexes point at (learned at run time)."""
    hosts: tuple[HostPattern, ...] = ()


@dataclass(frozen=True)
class Policy:
    version: int = 1
    mode: Mode = Mode.AUDIT
    allow: Allowlist = field(default_factory=Allowlist)
    hooks_allowed: tuple[PackageSpec, ...] | None = None
    """Packages allowed to run lifecycle hooks; None: any package may (the rule is off)."""
    hooks_import: bool = True
    """Also allow what the project allows: npm's allowScripts, pnpm's onlyBuiltDependencies
    and allowBuilds, LavaMoat's allowScripts."""
    severities: dict[str, Severity] = field(default_factory=dict)
    """Per-rule severity overrides (``off`` disables a rule)."""
    fail_on: Severity = Severity.HIGH
    """The verdict is ``fail`` when a finding has at least this severity, ``warn`` for any
    other finding, ``pass`` without findings."""
    exceptions: tuple[Exception_, ...] = ()
    source: str = "<built-in default>"
    """The file it was loaded from."""

    def severity(self, rule: str, default: Severity) -> Severity:
        """The severity of ``rule``'s findings: this policy's ``rules:`` entry, else ``default``
        (the rule's own, from its ``RuleInfo``)."""
        return self.severities.get(rule, default)


RuleCatalogue = Mapping[str, Severity]
"""The rules a policy may name: rule id -> default severity, in the order the docs list them.
The rules declare them (``ciwatch.rules.RULE_CATALOGUE``); the loader is given them."""
