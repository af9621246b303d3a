"""Reading a policy file: every mistake is reported before the build starts, as
``FILE:LINE: key.path: what is wrong; expected ...``.

The file is composed with PyYAML's node API rather than loaded, so each value keeps its line,
duplicate keys can be caught (``yaml.safe_load`` silently keeps the last), and YAML 1.1's
implicit types don't get in the way (``off`` stays the text ``off``, not ``False``).
"""

from __future__ import annotations

import dataclasses
import datetime
import difflib
import ipaddress
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import ParamSpec, TypeVar

import yaml

from ciwatch.errors import UsageError
from ciwatch.policy.model import Allowlist, Exception_, HostPattern, Mode, PackageSpec, Policy, Severity
from ciwatch.policy.rule_ids import RULE_IDS
from ciwatch.policy.versions import parse_range

__all__ = [
    "ECOSYSTEMS",
    "POLICY_FILE_NAMES",
    "PolicyError",
    "PolicyProblem",
    "default_policy",
    "find_policy",
    "load_policy",
    "parse_policy",
    "resolve_policy",
]

#: Where ``find_policy`` looks, relative to the project directory.
POLICY_FILE_NAMES = (".ciwatch/policy.yml", ".ciwatch/policy.yaml")

#: The ecosystem prefixes a package spec may carry (``pip:cryptography``), as hook attribution names them.
ECOSYSTEMS = ("npm", "yarn", "pnpm", "bun", "pip", "cargo", "gem", "dpkg", "go", "maven", "gradle")
_ECOSYSTEM_ALIASES = {
    "apt": "dpkg",
    "deb": "dpkg",
    "debian": "dpkg",
    "pypi": "pip",
    "python": "pip",
    "uv": "pip",
    "poetry": "pip",
    "node": "npm",
    "rubygems": "gem",
    "ruby": "gem",
    "bundler": "gem",
    "crates": "cargo",
    "rust": "cargo",
}

_BUILT_IN = "<built-in default>"
_HINT = "The policy format is described in docs/policy.md; `ciwatch policy check FILE` checks a policy file."
_MAX_PROBLEMS = 50

_TOP_KEYS = ("version", "mode", "fail-on", "allow", "hooks", "rules", "exceptions")
_ALLOW_KEYS = ("registries", "hosts")
_HOOKS_KEYS = ("allowed", "import")
_EXCEPTION_KEYS = ("rule", "package", "host", "reason", "expires")
#: Keys that belong one level down, for a better hint when written at the top.
_NESTED_KEYS = {"registries": "allow", "hosts": "allow", "allowed": "hooks", "import": "hooks"}

_MODES = tuple(mode.value for mode in Mode)
_SEVERITIES = tuple(severity.label for severity in Severity)
_AUTO_NONE = ("auto", "none")
_FAIL_ON = tuple(severity.label for severity in Severity if severity is not Severity.OFF)

_HOST_EXPECTED = (
    "expected a host name (artifacts.example.internal), a wildcard pattern (*.example.internal) "
    "or a CIDR (10.0.0.0/8, fd00::/8)"
)
_PACKAGE_EXPECTED = (
    'expected NAME or NAME@RANGE, optionally after an ecosystem (esbuild, "@scope/pkg@^1.3", pip:cryptography@>=41)'
)
_RANGE_EXPECTED = (
    "expected an npm range (1.2.3, ^1.2, ~1.2.3, >=1 <2, 1.x, 1.2 - 1.4, ^1 || ^2) "
    "or PEP 440 specifiers (>=1.2,<2, ==1.*, ~=1.4)"
)

_LABEL = re.compile(r"^[a-z0-9_*?]([a-z0-9_*?-]{0,61}[a-z0-9_*?])?$", re.IGNORECASE)
_PACKAGE_NAME = re.compile(r"^(@[a-z0-9*?][a-z0-9*?._~-]*/)?[a-z0-9*?_][a-z0-9*?._~+-]*$", re.IGNORECASE)
_VERSION_OPERATOR = re.compile(r"[=<>!~^]")


@dataclass(frozen=True)
class PolicyProblem:
    """One mistake in a policy file, where it is and what was expected."""

    file: str
    line: int
    """1-based."""
    key: str
    """The key path (``allow.hosts[2]``), empty for the file as a whole."""
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}: "
        return f"{where}{self.key}: {self.message}" if self.key else f"{where}{self.message}"


class PolicyError(UsageError):
    """A policy file that can't be used; ``problems`` lists every mistake found (up to 50), by line."""

    def __init__(self, problems: Sequence[PolicyProblem], hint: str | None = _HINT) -> None:
        self.problems = tuple(sorted(problems, key=lambda problem: problem.line))
        super().__init__("\n".join(str(problem) for problem in self.problems), hint=hint)


def find_policy(project_dir: Path) -> Path | None:
    """The project's policy file, ``.ciwatch/policy.yml`` (or ``.yaml``), or None."""
    found = [project_dir / name for name in POLICY_FILE_NAMES if (project_dir / name).is_file()]
    if len(found) > 1:
        raise UsageError(
            f"{found[0]} and {found[1]} both exist; ciwatch reads one policy",
            hint="Keep one of them (or pass the one you mean with --policy).",
        )
    return found[0] if found else None


def load_policy(path: Path) -> Policy:
    """The policy in ``path``; PolicyError (a UsageError) naming every mistake, with its line."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise UsageError(
            f"{path}: no such policy file",
            hint="Pass an existing file to --policy, or write .ciwatch/policy.yml (see docs/policy.md).",
        ) from None
    except IsADirectoryError:
        raise UsageError(f"{path}: is a directory; expected a policy file (YAML)", hint=_HINT) from None
    except OSError as error:
        raise UsageError(f"{path}: can't read the policy file: {error.strerror or error}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise PolicyError([PolicyProblem(str(path), line, "", "is not UTF-8 text; expected a YAML file")]) from None
    return parse_policy(text, str(path))


def default_policy() -> Policy:
    """The built-in default policy (``ciwatch/policy/default.yaml``, identical to ``policies/default.yaml``)."""
    text = resources.files("ciwatch.policy").joinpath("default.yaml").read_text(encoding="utf-8")
    return parse_policy(text, _BUILT_IN)


def resolve_policy(project_dir: Path, policy_file: Path | None = None, mode: Mode | str | None = None) -> Policy:
    """The policy a run uses: ``policy_file`` (``--policy``), else the project's
    ``.ciwatch/policy.yml``, else the built-in default; ``mode`` (``--mode``) overrides its mode."""
    if policy_file is not None:
        policy = load_policy(policy_file)
    else:
        found = find_policy(project_dir)
        policy = load_policy(found) if found is not None else default_policy()
    if mode is None:
        return policy
    try:
        return dataclasses.replace(policy, mode=Mode(mode))
    except ValueError:
        raise UsageError(f'--mode "{mode}": expected one of {", ".join(_MODES)}') from None


def parse_policy(text: str, source: str) -> Policy:
    """The policy written in ``text``; ``source`` names it in errors (a path, or ``<built-in default>``)."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as error:
        raise PolicyError([_syntax_problem(source, error)]) from None
    except yaml.YAMLError as error:  # no position known (e.g. a reader error on a control character)
        raise PolicyError([PolicyProblem(source, 1, "", f"is not valid YAML: {error}")]) from None
    reader = _Reader(source)
    if root is None:
        reader.problem_at(1, "", "the policy is empty; expected a mapping with at least `version: 1`")
        raise PolicyError(reader.problems)
    policy = reader.policy(root)
    if reader.problems or policy is None:
        raise PolicyError(reader.problems)
    return policy


def _syntax_problem(source: str, error: yaml.MarkedYAMLError) -> PolicyProblem:
    mark = error.problem_mark or error.context_mark
    line = mark.line + 1 if mark is not None else 1
    what = error.problem or error.context or "unreadable"
    if what.startswith("but ") and error.context:
        what = f"{error.context}, {what}"
    detail = f"column {mark.column + 1}: " if mark is not None else ""
    message = f"is not valid YAML ({detail}{what})"
    if "'@'" in what or "'`'" in what:
        message += '; expected a quoted value where it starts with @ or ` (e.g. "@scope/pkg@^1.3")'
    elif "'\\t'" in what:
        message += "; expected spaces for indentation, not tabs"
    elif "mapping values are not allowed" in what:
        message += "; expected `key: value`, with a value that contains `: ` in quotes"
    return PolicyProblem(source, line, "", message)


class _Invalid(Exception):
    """One value is wrong; already recorded, and the rest of the file is still checked."""


_T = TypeVar("_T")
_P = ParamSpec("_P")


def _line(node: yaml.Node) -> int:
    return int(node.start_mark.line) + 1


def _kind(node: yaml.Node) -> str:
    if isinstance(node, yaml.MappingNode):
        return "a mapping"
    if isinstance(node, yaml.SequenceNode):
        return "a list"
    if _is_null(node):
        return "no value"
    return f'"{node.value}"'


def _is_null(node: yaml.Node) -> bool:
    return isinstance(node, yaml.ScalarNode) and node.tag == "tag:yaml.org,2002:null"


def _suggest(word: str, choices: Sequence[str]) -> str:
    close = difflib.get_close_matches(word.lower(), choices, n=1, cutoff=0.6)
    return f'did you mean "{close[0]}"? ' if close else ""


def _join(key: str, child: str) -> str:
    return f"{key}.{child}" if key else child


class _Reader:
    """Walks the node tree, turning each mistake into a PolicyProblem and carrying on."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.problems: list[PolicyProblem] = []

    def problem_at(self, line: int, key: str, message: str) -> None:
        if len(self.problems) < _MAX_PROBLEMS:
            self.problems.append(PolicyProblem(self.source, line, key, message))

    def problem(self, node: yaml.Node, key: str, message: str) -> _Invalid:
        self.problem_at(_line(node), key, message)
        return _Invalid()

    def guard(self, read: Callable[_P, _T], *args: _P.args, **kwargs: _P.kwargs) -> _T | None:
        """``read(...)``, or None where it found a mistake (already recorded)."""
        try:
            return read(*args, **kwargs)
        except _Invalid:
            return None

    # --- shapes ---------------------------------------------------------------------------

    def mapping(self, node: yaml.Node, key: str, allowed: Sequence[str], what: str) -> dict[str, yaml.Node]:
        """The mapping's values by key, each key once and known; null stands for an empty mapping."""
        if _is_null(node):
            return {}
        if not isinstance(node, yaml.MappingNode):
            raise self.problem(node, key, f"expected {what}, found {_kind(node)}")
        values: dict[str, yaml.Node] = {}
        first_line: dict[str, int] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
                self.problem(key_node, key, "a key must be plain text (anchors merged with << are not supported)")
                continue
            name = str(key_node.value)
            path = _join(key, name)
            if name in first_line:
                self.problem(key_node, path, f"duplicate key (first written on line {first_line[name]})")
                continue
            first_line[name] = _line(key_node)
            if name not in allowed:
                self.unknown_key(key_node, key, name, allowed)
                continue
            values[name] = value_node
        return values

    def unknown_key(self, node: yaml.Node, key: str, name: str, allowed: Sequence[str]) -> None:
        path = _join(key, name)
        if not key and name in _NESTED_KEYS:
            hint = f'did you mean "{_NESTED_KEYS[name]}.{name}" (indented under {_NESTED_KEYS[name]}:)? '
        elif not key and name in RULE_IDS:
            hint = f'did you mean "rules.{name}" (indented under rules:)? '
        else:
            hint = _suggest(name, allowed)
        self.problem(node, path, f"unknown key; {hint}expected one of {', '.join(allowed)}")

    def sequence(self, node: yaml.Node, key: str, what: str) -> list[yaml.Node]:
        if _is_null(node):
            return []
        if not isinstance(node, yaml.SequenceNode):
            raise self.problem(node, key, f"expected a list of {what}, found {_kind(node)}")
        return list(node.value)

    def scalar(self, node: yaml.Node, key: str, what: str) -> str:
        """The text as written (so ``off``, ``no`` and ``2027-06-30`` stay text)."""
        if not isinstance(node, yaml.ScalarNode) or _is_null(node):
            raise self.problem(node, key, f"expected {what}, found {_kind(node)}")
        return str(node.value)

    def choice(self, node: yaml.Node, key: str, choices: Sequence[str], noun: str) -> str:
        expected = ", ".join(choices[:-1]) + f" or {choices[-1]}"
        value = self.scalar(node, key, expected)
        if value not in choices:
            close = _suggest(value, choices)
            raise self.problem(node, key, f'"{value}" is not {noun}; {close}expected {expected}')
        return value

    # --- the policy -----------------------------------------------------------------------

    def policy(self, root: yaml.Node) -> Policy | None:
        if not isinstance(root, yaml.MappingNode):
            self.problem(
                root, "", f"the policy must be a mapping of keys ({', '.join(_TOP_KEYS)}); found {_kind(root)}"
            )
            return None
        top = self.mapping(root, "", _TOP_KEYS, "a mapping")
        if "version" not in top:
            self.problem(root, "version", "missing; expected `version: 1` as the policy's first line")
        else:
            self.guard(self.version, top["version"])
        mode = Mode.AUDIT
        if "mode" in top:
            mode = Mode(self.guard(self.choice, top["mode"], "mode", _MODES, "a mode") or mode)
        fail_on = Severity.HIGH
        if "fail-on" in top:
            fail_on = Severity.parse(
                self.guard(self.choice, top["fail-on"], "fail-on", _FAIL_ON, "a severity that can fail") or "high"
            )
        allow = self.guard(self.allow, top["allow"]) if "allow" in top else Allowlist()
        hooks_allowed: tuple[PackageSpec, ...] | None = None
        hooks_import = True
        if "hooks" in top:
            hooks = self.guard(self.hooks, top["hooks"])
            if hooks is not None:
                hooks_allowed, hooks_import = hooks
        severities = self.guard(self.rules, top["rules"]) if "rules" in top else {}
        exceptions = self.guard(self.exceptions, top["exceptions"]) if "exceptions" in top else ()
        return Policy(
            version=1,
            mode=mode,
            allow=allow or Allowlist(),
            hooks_allowed=hooks_allowed,
            hooks_import=hooks_import,
            severities=severities or {},
            fail_on=fail_on,
            exceptions=exceptions or (),
            source=self.source,
        )

    def version(self, node: yaml.Node) -> None:
        if not isinstance(node, yaml.ScalarNode) or node.tag != "tag:yaml.org,2002:int" or node.value != "1":
            shown = _kind(node) if not isinstance(node, yaml.ScalarNode) or _is_null(node) else f'"{node.value}"'
            raise self.problem(node, "version", f"{shown} is not a policy version this ciwatch reads; expected 1")

    def allow(self, node: yaml.Node) -> Allowlist:
        values = self.mapping(node, "allow", _ALLOW_KEYS, "a mapping with registries and hosts")
        registries: str | None = "auto"
        if "registries" in values:
            registries = self.guard(
                self.choice, values["registries"], "allow.registries", ("auto", "none"), "a setting"
            )
        hosts: list[HostPattern] = []
        if "hosts" in values:
            items = self.guard(self.sequence, values["hosts"], "allow.hosts", "host names, patterns or CIDRs")
            for index, item in enumerate(items or []):
                host = self.guard(self.host, item, f"allow.hosts[{index}]")
                if host is not None:
                    hosts.append(host)
        return Allowlist(registries_auto=registries != "none", hosts=tuple(hosts))

    def host(self, node: yaml.Node, key: str) -> HostPattern:
        text = self.scalar(node, key, _HOST_EXPECTED.removeprefix("expected "))
        wrong = _host_problem(text)
        if wrong is not None:
            raise self.problem(node, key, wrong)
        return HostPattern(text)

    def hooks(self, node: yaml.Node) -> tuple[tuple[PackageSpec, ...] | None, bool]:
        values = self.mapping(node, "hooks", _HOOKS_KEYS, "a mapping with allowed and import")
        allowed: tuple[PackageSpec, ...] | None = None
        if "allowed" in values:
            allowed_node = values["allowed"]
            if _is_null(allowed_node):
                raise self.problem(
                    allowed_node,
                    "hooks.allowed",
                    "has no value; expected a list of packages "
                    "(write [] to allow none, or remove the key to allow any)",
                )
            items = self.sequence(allowed_node, "hooks.allowed", "packages")
            specs: list[PackageSpec] = []
            for index, item in enumerate(items):
                spec = self.guard(self.package, item, f"hooks.allowed[{index}]")
                if spec is not None:
                    specs.append(spec)
            allowed = tuple(specs)
        imported = "auto"
        if "import" in values:
            imported = self.guard(self.choice, values["import"], "hooks.import", _AUTO_NONE, "a setting") or "auto"
        return allowed, imported == "auto"

    def package(self, node: yaml.Node, key: str) -> PackageSpec:
        text = self.scalar(node, key, _PACKAGE_EXPECTED.removeprefix("expected "))
        spec, wrong = _parse_package(text.strip())
        if wrong is not None:
            raise self.problem(node, key, wrong)
        assert spec is not None
        return spec

    def rule_id(self, node: yaml.Node, key: str, text: str, as_key: bool = False) -> str:
        if text not in RULE_IDS:
            close = _suggest(text, RULE_IDS)
            expected = f"expected one of {', '.join(RULE_IDS)}" if not close else "see docs/policy.md for the rule ids"
            what = "unknown rule id" if as_key else f'"{text}" is not a rule id'
            raise self.problem(node, key, f"{what}; {close}{expected}")
        return text

    def rules(self, node: yaml.Node) -> dict[str, Severity]:
        if _is_null(node):
            return {}
        if not isinstance(node, yaml.MappingNode):
            raise self.problem(node, "rules", f"expected a mapping of rule id to severity, found {_kind(node)}")
        severities: dict[str, Severity] = {}
        first_line: dict[str, int] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                self.problem(key_node, "rules", "a key must be a rule id")
                continue
            name = str(key_node.value)
            path = f"rules.{name}"
            if name in first_line:
                self.problem(key_node, path, f"duplicate rule (first written on line {first_line[name]})")
                continue
            first_line[name] = _line(key_node)
            if self.guard(self.rule_id, key_node, path, name, as_key=True) is None:
                continue
            label = self.guard(self.choice, value_node, path, _SEVERITIES, "a severity")
            if label is not None:
                severities[name] = Severity.parse(label)
        return severities

    def exceptions(self, node: yaml.Node) -> tuple[Exception_, ...]:
        items = self.sequence(node, "exceptions", "exceptions (each with rule, package or host, and reason)")
        found: list[Exception_] = []
        for index, item in enumerate(items):
            exception = self.guard(self.exception, item, f"exceptions[{index}]")
            if exception is not None:
                found.append(exception)
        return tuple(found)

    def exception(self, node: yaml.Node, key: str) -> Exception_:
        values = self.mapping(node, key, _EXCEPTION_KEYS, "a mapping with rule, package or host, reason, expires")
        problems_before = len(self.problems)
        rule = self.guard(self.exception_rule, node, values, key)
        package = host = None
        if "package" in values and "host" in values:
            self.problem(
                values["host"], key, "has both package and host; expected one of them (write two exceptions for both)"
            )
        elif "package" in values:
            package = self.guard(self.package, values["package"], f"{key}.package")
        elif "host" in values:
            host = self.guard(self.host, values["host"], f"{key}.host")
        else:
            self.problem(
                node, key, "has neither package nor host; expected one of `package: NAME[@RANGE]` or `host: PATTERN`"
            )
        reason = self.guard(self.reason, node, values, key)
        expires = self.guard(self.date, values["expires"], f"{key}.expires") if "expires" in values else None
        if len(self.problems) > problems_before or rule is None or reason is None:
            raise _Invalid()
        return Exception_(rule, reason, package, host, expires, source=f"{self.source}:{_line(node)}")

    def exception_rule(self, node: yaml.Node, values: dict[str, yaml.Node], key: str) -> str:
        if "rule" not in values:
            raise self.problem(node, f"{key}.rule", "missing; expected the id of the rule the exception is for")
        text = self.scalar(values["rule"], f"{key}.rule", "a rule id")
        return self.rule_id(values["rule"], f"{key}.rule", text)

    def reason(self, node: yaml.Node, values: dict[str, yaml.Node], key: str) -> str:
        expected = "expected a reason: why this is safe, for whoever reads the report"
        if "reason" not in values:
            raise self.problem(node, f"{key}.reason", f"missing; {expected}")
        reason_node = values["reason"]
        if _is_null(reason_node) or (isinstance(reason_node, yaml.ScalarNode) and not str(reason_node.value).strip()):
            raise self.problem(reason_node, f"{key}.reason", f"is empty; {expected}")
        return self.scalar(reason_node, f"{key}.reason", "a reason (text)").strip()

    def date(self, node: yaml.Node, key: str) -> datetime.date:
        text = self.scalar(node, key, "a date (YYYY-MM-DD)")
        if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", text.strip()):
            raise self.problem(node, key, f'"{text}" is not a date; expected YYYY-MM-DD (e.g. 2027-06-30)')
        try:
            return datetime.date.fromisoformat(text.strip())
        except ValueError as error:
            raise self.problem(node, key, f'"{text}" is not a date ({error}); expected YYYY-MM-DD') from None


def _host_problem(text: str) -> str | None:
    """What is wrong with ``text`` as an allowlist entry, or None."""
    shown = f'"{text}"'
    plain = text.strip()
    if not plain:
        return f"is empty; {_HOST_EXPECTED}"
    if "://" in plain:
        host = plain.split("://", 1)[1].split("/", 1)[0].rsplit("@", 1)[-1]
        return f"{shown} is a URL; expected the host name alone: {host}"
    if "/" in plain:
        try:
            ipaddress.ip_network(plain)
        except ValueError:
            try:
                network = ipaddress.ip_network(plain, strict=False)
            except ValueError:
                return f"{shown} is not a host name, wildcard pattern or CIDR; {_HOST_EXPECTED}"
            return f"{shown} has bits set after the prefix length; expected the network address: {network}"
        return None
    if plain.startswith("[") and plain.endswith("]"):
        return f"{shown} has brackets; expected the address alone: {plain[1:-1]}"
    if ":" in plain:
        try:
            ipaddress.IPv6Address(plain)
        except ValueError:
            host, _, port = plain.rpartition(":")
            if port.isdigit() and host and ":" not in host:
                return f"{shown} has a port; expected the host name alone (any port is allowed): {host}"
            return f"{shown} is not a host name, wildcard pattern or CIDR; {_HOST_EXPECTED}"
        return None
    name = plain.removesuffix(".")
    labels = name.split(".")
    if all(label.isdigit() for label in labels):
        try:
            ipaddress.IPv4Address(name)
        except ValueError:
            return f"{shown} is not an IP address; {_HOST_EXPECTED}"
        return None
    if len(name) > 253 or not all(_LABEL.match(label) for label in labels):
        return f"{shown} is not a host name, wildcard pattern or CIDR; {_HOST_EXPECTED}"
    if any(ch in labels[-1] for ch in "*?"):
        return (
            f"{shown} matches every domain; expected a pattern under a fixed domain (*.example.internal) "
            "(to stop judging egress, set `rules: {unfamiliar-egress: off}` instead)"
        )
    return None


def _parse_package(text: str) -> tuple[PackageSpec | None, str | None]:
    """The spec ``text`` names, or what is wrong with it."""
    shown = f'"{text}"'
    if not text:
        return None, f"is empty; {_PACKAGE_EXPECTED}"
    spec = PackageSpec.parse(text)
    if spec.ecosystem is not None and spec.ecosystem not in ECOSYSTEMS:
        alias = _ECOSYSTEM_ALIASES.get(spec.ecosystem.lower())
        close = f'did you mean "{alias}"? ' if alias else _suggest(spec.ecosystem, ECOSYSTEMS)
        return None, f'{shown}: "{spec.ecosystem}" is not an ecosystem; {close}expected one of {", ".join(ECOSYSTEMS)}'
    if not _PACKAGE_NAME.match(spec.name):
        operator = _VERSION_OPERATOR.search(spec.name)
        if operator is not None and spec.version_range is None and operator.start() > 0:
            prefix = f"{spec.ecosystem}:" if spec.ecosystem else ""
            name, version = spec.name[: operator.start()], spec.name[operator.start() :]
            return None, f"{shown} has no @ before its version range; expected {prefix}{name}@{version}"
        return None, f"{shown} is not a package name; {_PACKAGE_EXPECTED}"
    if spec.version_range is None and text.endswith("@") and len(text) > 1:
        return None, f"{shown} has nothing after @; expected a version range, or the name alone for any version"
    if spec.version_range is not None:
        try:
            parse_range(spec.version_range)
        except ValueError as error:
            return None, f"{shown}: {error}; {_RANGE_EXPECTED}"
    return spec, None
