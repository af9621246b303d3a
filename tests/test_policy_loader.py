"""The policy loader: every mistake names its file, line and key; the shipped policies load and
match the JSON Schema; host, package and version matching."""

from __future__ import annotations

import dataclasses
import datetime
import json
import re
import textwrap
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from ciwatch.errors import UsageError
from ciwatch.policy import (
    Mode,
    Policy,
    PolicyError,
    Severity,
    default_policy,
    find_policy,
    load_policy,
    resolve_policy,
)
from ciwatch.policy.model import HostPattern, PackageSpec
from ciwatch.policy.schema import policy_schema
from ciwatch.policy.versions import parse_range, version_in_range
from ciwatch.rules import RULE_CATALOGUE

RULE_IDS = tuple(RULE_CATALOGUE)
RULES = {"known_rules": RULE_CATALOGUE}

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = sorted((ROOT / "policies").glob("*.yaml"))


def write(tmp_path: Path, text: str, name: str = "policy.yml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


def problems_of(path: Path) -> list[str]:
    with pytest.raises(PolicyError) as caught:
        load_policy(path, **RULES)
    assert isinstance(caught.value, UsageError)
    assert str(caught.value) == "\n".join(str(problem) for problem in caught.value.problems)
    return [str(problem) for problem in caught.value.problems]


def only_problem(path: Path) -> str:
    problems = problems_of(path)
    assert len(problems) == 1, problems
    return problems[0]


# --- the shipped policies ---------------------------------------------------------------------


def test_the_three_policies_are_shipped() -> None:
    assert [path.name for path in SHIPPED] == ["default.yaml", "example.yaml", "strict.yaml"]


@pytest.mark.parametrize("path", SHIPPED, ids=lambda path: path.name)
def test_shipped_policies_load(path: Path) -> None:
    policy = load_policy(path, **RULES)
    assert policy.version == 1
    assert policy.source == str(path)


def test_packaged_default_is_policies_default() -> None:
    packaged = resources.files("ciwatch.policy").joinpath("default.yaml").read_bytes()
    assert packaged == (ROOT / "policies" / "default.yaml").read_bytes()
    assert default_policy(**RULES) == dataclasses.replace(
        load_policy(ROOT / "policies" / "default.yaml", **RULES), source=Policy().source
    )


def test_default_policy_fits_a_first_run() -> None:
    policy = default_policy(**RULES)
    assert policy.mode is Mode.AUDIT
    assert policy.allow.registries_auto
    assert policy.hooks_allowed is None  # any package may run hooks
    assert policy.fail_on is Severity.HIGH
    assert policy.exceptions == ()
    assert max(policy.severities.values()) <= Severity.HIGH
    assert policy.source == "<built-in default>"


def test_default_policy_names_every_rule() -> None:
    # A new rule id needs its line in default.yaml, which doubles as the list users copy from.
    assert set(default_policy(**RULES).severities) == set(RULE_IDS)
    assert dict(default_policy(**RULES).severities) == dict(RULE_CATALOGUE)


def test_strict_policy_blocks() -> None:
    policy = load_policy(ROOT / "policies" / "strict.yaml", **RULES)
    assert policy.mode is Mode.BLOCK
    assert policy.hooks_allowed == ()
    assert policy.hooks_import
    assert policy.fail_on is Severity.MEDIUM


def test_example_policy_has_both_kinds_of_exception_and_an_expiry() -> None:
    path = ROOT / "policies" / "example.yaml"
    policy = load_policy(path, **RULES)
    assert any(exception.package is not None for exception in policy.exceptions)
    assert any(exception.host is not None for exception in policy.exceptions)
    assert any(exception.expires is not None for exception in policy.exceptions)
    assert all(re.fullmatch(re.escape(str(path)) + r":\d+", exception.source) for exception in policy.exceptions)
    assert policy.allow.hosts and policy.hooks_allowed
    assert "#" in path.read_text()  # commented


# --- the JSON Schema --------------------------------------------------------------------------


class _Yaml12Loader(yaml.SafeLoader):
    """Reads as editors do (YAML 1.2 core): on/off/yes/no and dates stay text."""


_Yaml12Loader.yaml_implicit_resolvers = {
    first: [
        (tag, regexp)
        for tag, regexp in resolvers
        if tag not in ("tag:yaml.org,2002:bool", "tag:yaml.org,2002:timestamp")
    ]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.copy().items()
}
_Yaml12Loader.add_implicit_resolver("tag:yaml.org,2002:bool", re.compile(r"^(?:true|false)$"), list("tf"))


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    """The schema as the loader uses it: the rule ids filled in from the rule catalogue."""
    filled = policy_schema(RULE_CATALOGUE)
    jsonschema.Draft202012Validator.check_schema(filled)
    assert filled["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    return filled


def schema_errors(schema: dict[str, Any], text: str) -> list[str]:
    document = yaml.load(textwrap.dedent(text), Loader=_Yaml12Loader)  # a SafeLoader
    validator = jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker())
    return [error.message for error in validator.iter_errors(document)]


@pytest.mark.parametrize("path", SHIPPED, ids=lambda path: path.name)
def test_shipped_policies_validate_against_the_schema(schema: dict[str, Any], path: Path) -> None:
    assert schema_errors(schema, path.read_text()) == []


def test_the_schema_file_is_valid_and_leaves_the_rule_ids_to_the_catalogue() -> None:
    document = json.loads(resources.files("ciwatch.policy").joinpath("schema.json").read_text())
    jsonschema.Draft202012Validator.check_schema(document)
    assert "enum" not in document["$defs"]["ruleId"]  # no copy of the catalogue to keep in step
    assert not any(rule in json.dumps(document) for rule in RULE_IDS)
    assert document["$defs"]["severity"]["enum"] == [severity.label for severity in Severity]


def test_the_filled_schema_names_the_rules_it_is_given(schema: dict[str, Any]) -> None:
    assert schema["$defs"]["ruleId"]["enum"] == list(RULE_IDS)
    assert policy_schema({"only-rule": Severity.LOW})["$defs"]["ruleId"]["enum"] == ["only-rule"]
    text = "version: 1\nrules: {only-rule: low}\nexceptions: [{rule: only-rule, host: a.example.internal, reason: r}]\n"
    assert schema_errors(policy_schema({"only-rule": Severity.LOW}), text) == []
    assert len(schema_errors(schema, text)) == 2  # a rule key and an exception's rule, both unknown here


def test_a_rule_the_catalogue_gains_is_accepted_without_editing_the_schema(tmp_path: Path) -> None:
    path = write(
        tmp_path, "version: 1\nrules: {brand-new: high}\nexceptions: [{rule: brand-new, package: a, reason: r}]\n"
    )
    policy = load_policy(path, known_rules={**RULE_CATALOGUE, "brand-new": Severity.LOW})
    assert policy.severities == {"brand-new": Severity.HIGH}
    assert policy.exceptions[0].rule == "brand-new"


@pytest.mark.parametrize(
    "text",
    [
        "version: 1\nmodes: audit\n",
        "version: 2\n",
        "mode: audit\n",
        "version: 1\nrules: {hook-shel: high}\n",
        "version: 1\nrules: {hook-shell: severe}\n",
        "version: 1\nexceptions: [{rule: hook-shell, package: esbuild}]\n",
        "version: 1\nexceptions: [{rule: hook-shell, reason: r}]\n",
        "version: 1\nexceptions: [{rule: hook-shell, reason: r, package: a, host: b.example.internal}]\n",
        "version: 1\nexceptions: [{rule: hook-shell, reason: r, package: a, expires: someday}]\n",
        "version: 1\nallow: {hosts: ['https://a.example.internal/']}\n",
    ],
)
def test_schema_rejects_what_the_loader_rejects(schema: dict[str, Any], text: str, tmp_path: Path) -> None:
    assert schema_errors(schema, text)
    with pytest.raises(PolicyError):
        load_policy(write(tmp_path, text), **RULES)


# --- mistakes: each names file, line and key --------------------------------------------------


@pytest.mark.parametrize(
    ("text", "where", "message"),
    [
        pytest.param(
            """
            version: 1
            allow:
              hosts:
                - a.example.internal
                - "*.example.internal"
                - 10.0.0.0/33
            """,
            "6: allow.hosts[2]",
            '"10.0.0.0/33" is not a host name, wildcard pattern or CIDR; expected a host name '
            "(artifacts.example.internal), a wildcard pattern (*.example.internal) or a CIDR (10.0.0.0/8, fd00::/8)",
            id="bad-cidr",
        ),
        pytest.param(
            "version: 1\nallow:\n  hosts: [10.0.0.1/8]\n",
            "3: allow.hosts[0]",
            '"10.0.0.1/8" has bits set after the prefix length; expected the network address: 10.0.0.0/8',
            id="cidr-host-bits",
        ),
        pytest.param(
            "version: 1\nallow:\n  hosts:\n    - https://mirror.example.internal/simple\n",
            "4: allow.hosts[0]",
            '"https://mirror.example.internal/simple" is a URL; expected the host name alone: mirror.example.internal',
            id="url-for-host",
        ),
        pytest.param(
            "version: 1\nallow:\n  hosts:\n    - mirror.example.internal:8443\n",
            "4: allow.hosts[0]",
            '"mirror.example.internal:8443" has a port; expected the host name alone (any port is allowed): '
            "mirror.example.internal",
            id="host-with-port",
        ),
        pytest.param(
            "version: 1\nallow:\n  hosts: ['*']\n",
            "3: allow.hosts[0]",
            '"*" matches every domain',
            id="star-alone",
        ),
        pytest.param(
            "version: 1\nallow:\n  hosts: [bad..example.internal]\n",
            "3: allow.hosts[0]",
            '"bad..example.internal" is not a host name, wildcard pattern or CIDR',
            id="empty-label",
        ),
        pytest.param(
            "version: 1\nallow:\n  hosts: [300.1.2.3]\n",
            "3: allow.hosts[0]",
            '"300.1.2.3" is not an IP address',
            id="bad-ipv4",
        ),
        pytest.param(
            "version: 1\nallow:\n  hosts: a.example.internal\n",
            "3: allow.hosts",
            'expected a list of host names, patterns or CIDRs, found "a.example.internal"',
            id="hosts-not-a-list",
        ),
        pytest.param(
            "version: 1\nallow:\n  hosts:\n    - {name: a}\n",
            "4: allow.hosts[0]",
            "expected a host name (artifacts.example.internal), a wildcard pattern (*.example.internal) or a CIDR "
            "(10.0.0.0/8, fd00::/8), found a mapping",
            id="host-is-a-mapping",
        ),
        pytest.param(
            "version: 1\nallow:\n  registries: yes\n",
            "3: allow.registries",
            '"yes" is not a setting; expected auto or none',
            id="registries-yes",
        ),
        pytest.param(
            "version: 1\nallow: [a.example.internal]\n",
            "2: allow",
            "expected a mapping with registries and hosts, found a list",
            id="allow-is-a-list",
        ),
        pytest.param(
            "version: 1\nallow:\n  host: [a.example.internal]\n",
            "3: allow.host",
            'unknown key; did you mean "hosts"? expected one of registries, hosts',
            id="unknown-nested-key",
        ),
        pytest.param(
            "version: 1\nfail_on: high\n",
            "2: fail_on",
            'unknown key; did you mean "fail-on"? '
            "expected one of version, mode, fail-on, allow, hooks, rules, exceptions",
            id="unknown-top-key",
        ),
        pytest.param(
            "version: 1\nhosts: [a.example.internal]\n",
            "2: hosts",
            'unknown key; did you mean "allow.hosts" (indented under allow:)?',
            id="hosts-at-the-top",
        ),
        pytest.param(
            "version: 1\nleftover-process: off\n",
            "2: leftover-process",
            'unknown key; did you mean "rules.leftover-process" (indented under rules:)?',
            id="rule-at-the-top",
        ),
        pytest.param(
            "version: 1\nmode: audit\nmode: block\n",
            "3: mode",
            "duplicate key (first written on line 2)",
            id="duplicate-key",
        ),
        pytest.param(
            "version: 2\n", "1: version", '"2" is not a policy version this ciwatch reads; expected 1', id="v2"
        ),
        pytest.param(
            'version: "1"\n', "1: version", '"1" is not a policy version this ciwatch reads; expected 1', id="v-text"
        ),
        pytest.param("mode: audit\n", "1: version", "missing; expected `version: 1`", id="no-version"),
        pytest.param(
            "version: 1\nmode: strict\n", "2: mode", '"strict" is not a mode; expected audit, warn or block', id="mode"
        ),
        pytest.param(
            "version: 1\nmode: blok\n",
            "2: mode",
            '"blok" is not a mode; did you mean "block"? expected audit, warn or block',
            id="mode-typo",
        ),
        pytest.param(
            "version: 1\nfail-on: off\n",
            "2: fail-on",
            '"off" is not a severity that can fail; expected low, medium, high or critical',
            id="fail-on-off",
        ),
        pytest.param(
            "version: 1\nrules:\n  hook-shell: severe\n",
            "3: rules.hook-shell",
            '"severe" is not a severity; expected off, low, medium, high or critical',
            id="bad-severity",
        ),
        pytest.param(
            "version: 1\nrules:\n  hook-shell: [high]\n",
            "3: rules.hook-shell",
            "expected off, low, medium, high or critical, found a list",
            id="severity-is-a-list",
        ),
        pytest.param(
            "version: 1\nrules:\n  leftover-proces: off\n",
            "3: rules.leftover-proces",
            'unknown rule id; did you mean "leftover-process"?',
            id="unknown-rule-typo",
        ),
        pytest.param(
            "version: 1\nrules:\n  made-up: off\n",
            "3: rules.made-up",
            "unknown rule id; expected one of " + ", ".join(RULE_IDS),
            id="unknown-rule",
        ),
        pytest.param(
            "version: 1\nrules:\n  hook-shell: low\n  hook-shell: high\n",
            "4: rules.hook-shell",
            "duplicate key (first written on line 3)",
            id="duplicate-rule",
        ),
        pytest.param(
            "version: 1\nrules: [hook-shell]\n",
            "2: rules",
            "expected a mapping of rule id to severity, found a list",
            id="rules-is-a-list",
        ),
        pytest.param(
            "version: 1\nhooks:\n  allowed:\n    - esbuild\n    - pip:cryptography==41\n",
            "5: hooks.allowed[1]",
            '"pip:cryptography==41" has no @ before its version range; expected pip:cryptography@==41',
            id="pip-style-pin",
        ),
        pytest.param(
            "version: 1\nhooks:\n  allowed: [apt:curl]\n",
            "3: hooks.allowed[0]",
            '"apt:curl": "apt" is not an ecosystem; did you mean "dpkg"?',
            id="unknown-ecosystem",
        ),
        pytest.param(
            "version: 1\nhooks:\n  allowed: [esbuild@^zero]\n",
            "3: hooks.allowed[0]",
            '"esbuild@^zero": "zero" is not a version; expected an npm range',
            id="bad-range",
        ),
        pytest.param(
            "version: 1\nhooks:\n  allowed: [cryptography@~=41]\n",
            "3: hooks.allowed[0]",
            '"cryptography@~=41": "~=41" needs at least two release numbers (e.g. ~=1.4)',
            id="bad-pep440",
        ),
        pytest.param(
            "version: 1\nhooks:\n  allowed: [esbuild@]\n",
            "3: hooks.allowed[0]",
            '"esbuild@" has nothing after @',
            id="empty-range",
        ),
        pytest.param(
            "version: 1\nhooks:\n  allowed:\n  import: auto\n",
            "3: hooks.allowed",
            "has no value; expected a list of packages (write [] to allow none, or remove the key to allow any)",
            id="allowed-null",
        ),
        pytest.param(
            "version: 1\nhooks:\n  allowed: esbuild\n",
            "3: hooks.allowed",
            'expected a list of packages (write [] to allow none, or remove the key to allow any), found "esbuild"',
            id="allowed-not-a-list",
        ),
        pytest.param(
            "version: 1\nhooks:\n  import: yes\n",
            "3: hooks.import",
            '"yes" is not a setting; expected auto or none',
            id="import-yes",
        ),
        pytest.param(
            """
            version: 1
            exceptions:
              - rule: hook-network-tool
                package: esbuild@^0.19
            """,
            "3: exceptions[0].reason",
            "missing; expected a reason: why this is safe, for whoever reads the report",
            id="no-reason",
        ),
        pytest.param(
            """
            version: 1
            exceptions:
              - rule: hook-network-tool
                package: esbuild
                reason: "  "
            """,
            "5: exceptions[0].reason",
            "is empty; expected a reason",
            id="blank-reason",
        ),
        pytest.param(
            """
            version: 1
            exceptions:
              - rule: hook-network-tool
                reason: r
            """,
            "3: exceptions[0]",
            "has neither package nor host; expected one of `package: esbuild@^0.19` or "
            "`host: artifacts.example.internal`",
            id="neither-package-nor-host",
        ),
        pytest.param(
            """
            version: 1
            exceptions:
              - rule: unfamiliar-egress
                package: esbuild
                host: a.example.internal
                reason: r
            """,
            "5: exceptions[0]",
            "has both package and host; expected one of them (write two exceptions for both)",
            id="both-package-and-host",
        ),
        pytest.param(
            """
            version: 1
            exceptions:
              - rule: hook-netwrok-tool
                package: esbuild
                reason: r
            """,
            "3: exceptions[0].rule",
            '"hook-netwrok-tool" is not a rule id; did you mean "hook-network-tool"?',
            id="exception-rule-typo",
        ),
        pytest.param(
            """
            version: 1
            exceptions:
              - package: esbuild
                reason: r
            """,
            "3: exceptions[0].rule",
            "missing; expected the id of the rule the exception is for",
            id="exception-without-rule",
        ),
        pytest.param(
            """
            version: 1
            exceptions:
              - rule: hook-shell
                package: esbuild
                reason: r
                expires: 2027-02-30
            """,
            "6: exceptions[0].expires",
            '"2027-02-30" is not a date (day is out of range for month); expected YYYY-MM-DD',
            id="impossible-date",
        ),
        pytest.param(
            """
            version: 1
            exceptions:
              - rule: hook-shell
                package: esbuild
                reason: r
                expires: next summer
            """,
            "6: exceptions[0].expires",
            '"next summer" is not a date; expected YYYY-MM-DD (e.g. 2027-06-30)',
            id="not-a-date",
        ),
        pytest.param(
            """
            version: 1
            exceptions:
              - rule: hook-shell
                package: esbuild
                reason: r
                expires: 2027-06-30 12:00:00
            """,
            "6: exceptions[0].expires",
            '"2027-06-30 12:00:00" is not a date; expected YYYY-MM-DD',
            id="datetime-not-date",
        ),
        pytest.param(
            """
            version: 1
            exceptions:
              - rule: hook-shell
                package: esbuild
                reason: r
                until: 2027-06-30
            """,
            "6: exceptions[0].until",
            "unknown key; expected one of rule, package, host, reason, expires",
            id="exception-unknown-key",
        ),
        pytest.param(
            "version: 1\nexceptions:\n  - hook-shell esbuild\n",
            "3: exceptions[0]",
            'expected a mapping with rule, package or host, reason, expires, found "hook-shell esbuild"',
            id="exception-is-text",
        ),
        pytest.param(
            "version: 1\nexceptions:\n  rule: hook-shell\n",
            "3: exceptions",
            "expected a list of exceptions (each with rule, package or host, and reason), found a mapping",
            id="exceptions-not-a-list",
        ),
    ],
)
def test_each_mistake_names_file_line_and_key(tmp_path: Path, text: str, where: str, message: str) -> None:
    path = write(tmp_path, text)
    problem = only_problem(path)
    assert problem.startswith(f"{path}:{where}: "), problem
    assert message in problem.removeprefix(f"{path}:{where}: "), problem


def test_the_whole_message_for_a_bad_cidr(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        version: 1
        mode: audit
        allow:
          registries: auto
          hosts:
            - artifacts.example.internal
            - 10.0.0.0/33
        """,
    )
    with pytest.raises(UsageError) as caught:
        load_policy(path, **RULES)
    assert str(caught.value) == (
        f'{path}:7: allow.hosts[1]: "10.0.0.0/33" is not a host name, wildcard pattern or CIDR; expected a host '
        "name (artifacts.example.internal), a wildcard pattern (*.example.internal) or a CIDR (10.0.0.0/8, fd00::/8)"
    )
    assert "docs/policy.md" in caught.value.hint


def test_every_mistake_is_reported_in_line_order(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        version: 1
        mode: strict
        rules:
          hook-shel: high
        colour: blue
        exceptions:
          - rule: hook-shell
            package: esbuild
        """,
    )
    lines = [problem.split(": ", 1)[0] for problem in problems_of(path)]
    assert lines == [f"{path}:2", f"{path}:4", f"{path}:5", f"{path}:7"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("", "1: the policy is empty; expected a mapping with at least `version: 1`", id="empty"),
        pytest.param("# nothing yet\n\n", "1: the policy is empty", id="only-comments"),
        pytest.param("- version: 1\n", "1: the policy must be a mapping of keys", id="top-level-list"),
        pytest.param("version: 1\nmode: audit: warn\n", "2: is not valid YAML (column 12: mapping values", id="syntax"),
        pytest.param(
            "version: 1\nhooks:\n  allowed:\n    - @swc/core\n",
            "4: is not valid YAML (column 7: found character '@' that cannot start any token); "
            'expected a quoted value where it starts with @ or ` (e.g. "@scope/pkg@^1.3")',
            id="unquoted-scope",
        ),
        pytest.param(
            "version: 1\nrules:\n\thook-shell: high\n",
            "3: is not valid YAML (column 1: found character '\\t' that cannot start any token); "
            "expected spaces for indentation, not tabs",
            id="tab",
        ),
        pytest.param(
            "version: 1\nallow: {hosts: [a, b}\n", "2: is not valid YAML (column 21: expected ',' or ']'", id="flow"
        ),
        pytest.param(
            "version: 1\n---\nversion: 1\n",
            "2: is not valid YAML (column 1: expected a single document in the stream, but found another document)",
            id="two-documents",
        ),
    ],
)
def test_file_level_mistakes(tmp_path: Path, text: str, expected: str) -> None:
    path = write(tmp_path, text) if text else tmp_path / "policy.yml"
    if not text:
        path.write_text("")
    assert only_problem(path).startswith(f"{path}:{expected}")


def test_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(UsageError) as caught:
        load_policy(tmp_path / "nope.yml", **RULES)
    assert str(caught.value) == f"{tmp_path / 'nope.yml'}: no such policy file"
    assert "--policy" in caught.value.hint


def test_a_directory(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"is a directory; expected a policy file"):
        load_policy(tmp_path, **RULES)


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "policy.yml"
    path.write_bytes(b"version: 1\n# caf\xe9\n")
    assert only_problem(path) == f"{path}:2: is not UTF-8 text; expected a YAML file"


# --- what a valid file means ------------------------------------------------------------------


def test_a_full_policy_reads_as_written(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        version: 1
        mode: block
        fail-on: medium
        allow:
          registries: none
          hosts:
            - artifacts.example.internal
            - "*.cache.example.internal"
            - 10.20.0.0/16
            - fd00::/8
            - 192.0.2.7
        hooks:
          allowed:
            - esbuild
            - "@swc/core@^1.3"
            - pip:cryptography@>=41,<44
          import: none
        rules:
          leftover-process: off
          hook-shell: critical
        exceptions:
          - rule: hook-network-tool
            package: esbuild@^0.19
            reason: downloads its platform binary
            expires: 2027-06-30
          - rule: unfamiliar-egress
            host: "*.telemetry.example.internal"
            reason: our test reporter
        """,
    )
    policy = load_policy(path, **RULES)
    assert policy.mode is Mode.BLOCK
    assert policy.fail_on is Severity.MEDIUM
    assert not policy.allow.registries_auto
    assert [host.text for host in policy.allow.hosts] == [
        "artifacts.example.internal",
        "*.cache.example.internal",
        "10.20.0.0/16",
        "fd00::/8",
        "192.0.2.7",
    ]
    assert policy.hooks_allowed == (
        PackageSpec("esbuild"),
        PackageSpec("@swc/core", "^1.3"),
        PackageSpec("cryptography", ">=41,<44", "pip"),
    )
    assert not policy.hooks_import
    assert policy.severities == {"leftover-process": Severity.OFF, "hook-shell": Severity.CRITICAL}
    first, second = policy.exceptions
    assert first.rule == "hook-network-tool"
    assert first.package == PackageSpec("esbuild", "^0.19")
    assert first.host is None
    assert first.reason == "downloads its platform binary"
    assert first.expires == datetime.date(2027, 6, 30)
    assert first.source == f"{path}:22"
    assert second.host == HostPattern("*.telemetry.example.internal")
    assert second.package is None and second.expires is None
    assert second.source == f"{path}:26"


def test_defaults_for_what_is_left_out(tmp_path: Path) -> None:
    policy = load_policy(write(tmp_path, "version: 1\n"), **RULES)
    assert policy == Policy(source=str(tmp_path / "policy.yml"))
    assert policy.hooks_allowed is None
    assert policy.allow.registries_auto and policy.allow.hosts == ()


def test_empty_sections_are_empty(tmp_path: Path) -> None:
    policy = load_policy(
        write(tmp_path, "version: 1\nallow:\n  hosts:\nhooks:\n  allowed: []\nrules:\nexceptions:\n"), **RULES
    )
    assert policy.allow.hosts == ()
    assert policy.hooks_allowed == ()  # an empty list: no package may run hooks
    assert policy.severities == {}
    assert policy.exceptions == ()


def test_yaml_1_1_words_are_read_as_written(tmp_path: Path) -> None:
    # `off` and `no` are booleans to yaml.safe_load; the loader reads the text.
    policy = load_policy(
        write(
            tmp_path,
            """
            version: 1
            rules: {leftover-process: off}
            exceptions:
              - {rule: hook-shell, package: "no", reason: yes}
            """,
        ),
        **RULES,
    )
    assert policy.severities == {"leftover-process": Severity.OFF}
    assert policy.exceptions[0].package == PackageSpec("no")
    assert policy.exceptions[0].reason == "yes"


def test_severity_falls_back_to_the_rule_default() -> None:
    policy = Policy(severities={"hook-shell": Severity.LOW})
    assert policy.severity("hook-shell", RULE_CATALOGUE["hook-shell"]) is Severity.LOW
    assert policy.severity("leftover-process", RULE_CATALOGUE["leftover-process"]) is Severity.LOW
    assert policy.severity("unfamiliar-egress", RULE_CATALOGUE["unfamiliar-egress"]) is Severity.HIGH


def test_rule_ids_and_their_defaults() -> None:
    assert RULE_IDS == (
        "unfamiliar-egress",
        "hook-network-tool",
        "hook-shell",
        "executable-write",
        "exec-written-file",
        "persistence-write",
        "proxy-bypass",
        "tracer-evasion",
        "dns-tunnel",
        "leftover-process",
        "credential-read",
        "unapproved-hook",
        "record-tamper",
        "daemon-outside-trace",
    )
    assert all(re.fullmatch(r"[a-z]+(-[a-z]+)*", rule) for rule in RULE_IDS)
    assert RULE_CATALOGUE["leftover-process"] is Severity.LOW
    assert RULE_CATALOGUE["unfamiliar-egress"] is Severity.HIGH


def test_the_loader_knows_only_the_rules_it_is_given(tmp_path: Path) -> None:
    path = write(tmp_path, "version: 1\nrules: {hook-shell: low}\n")
    assert load_policy(path, known_rules={"hook-shell": Severity.HIGH}).severities == {"hook-shell": Severity.LOW}
    with pytest.raises(PolicyError, match=r"rules.hook-shell: unknown rule id; expected one of other-rule"):
        load_policy(path, known_rules={"other-rule": Severity.LOW})


# --- finding the policy and precedence --------------------------------------------------------


def test_find_policy(tmp_path: Path) -> None:
    assert find_policy(tmp_path) is None
    (tmp_path / ".ciwatch").mkdir()
    (tmp_path / ".ciwatch" / "policy.yaml").write_text("version: 1\n")
    assert find_policy(tmp_path) == tmp_path / ".ciwatch" / "policy.yaml"
    (tmp_path / ".ciwatch" / "policy.yml").write_text("version: 1\n")
    with pytest.raises(UsageError, match="both exist"):
        find_policy(tmp_path)
    (tmp_path / ".ciwatch" / "policy.yaml").unlink()
    assert find_policy(tmp_path) == tmp_path / ".ciwatch" / "policy.yml"


def test_precedence_and_mode_override(tmp_path: Path) -> None:
    assert resolve_policy(tmp_path, **RULES) == default_policy(**RULES)
    (tmp_path / ".ciwatch").mkdir()
    project = write(tmp_path, "version: 1\nmode: warn\n", ".ciwatch/policy.yml")
    assert resolve_policy(tmp_path, **RULES).source == str(project)
    explicit = write(tmp_path, "version: 1\nmode: block\n", "other.yml")
    assert resolve_policy(tmp_path, explicit, **RULES).mode is Mode.BLOCK
    assert resolve_policy(tmp_path, explicit, "audit", **RULES).mode is Mode.AUDIT
    assert resolve_policy(tmp_path, None, Mode.BLOCK, **RULES).mode is Mode.BLOCK
    with pytest.raises(UsageError, match=r'--mode "strict": expected one of audit, warn, block'):
        resolve_policy(tmp_path, None, "strict", **RULES)


# --- matching -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "host", "matches"),
    [
        ("artifacts.example.internal", "artifacts.example.internal", True),
        ("artifacts.example.internal", "ARTIFACTS.example.internal.", True),
        ("artifacts.example.internal", "x.artifacts.example.internal", False),
        ("*.example.internal", "a.example.internal", True),
        ("*.example.internal", "a.b.example.internal", True),
        ("*.example.internal", "example.internal", False),
        ("*.example.internal", "badexample.internal", False),
        ("mirror-*.example.internal", "mirror-3.example.internal", True),
        ("mirror-*.example.internal", "cache-3.example.internal", False),
        ("10.0.0.0/8", "10.200.3.4", True),
        ("10.0.0.0/8", "11.0.0.1", False),
        ("10.0.0.0/8", "ten.example.internal", False),
        ("fd00::/8", "fd12::1", True),
        ("fd00::/8", "fe80::1", False),
        ("192.0.2.7", "192.0.2.7", True),
    ],
)
def test_host_pattern_matching(pattern: str, host: str, matches: bool) -> None:
    assert HostPattern(pattern).matches(host) is matches


@pytest.mark.parametrize(
    ("text", "spec"),
    [
        ("esbuild", PackageSpec("esbuild")),
        ("esbuild@^0.19", PackageSpec("esbuild", "^0.19")),
        ("@swc/core", PackageSpec("@swc/core")),
        ("@swc/core@>=1.2 <2", PackageSpec("@swc/core", ">=1.2 <2")),
        ("pip:cryptography@>=41,<44", PackageSpec("cryptography", ">=41,<44", "pip")),
        ("npm:@scope/pkg@1.x", PackageSpec("@scope/pkg", "1.x", "npm")),
    ],
)
def test_package_spec_parse(text: str, spec: PackageSpec) -> None:
    assert PackageSpec.parse(text) == spec
    assert str(spec) == text


@pytest.mark.parametrize(
    ("spec", "package", "matches"),
    [
        ("esbuild", ("npm", "esbuild", "0.19.2"), True),
        ("esbuild", ("npm", "esbuild-wasm", "0.19.2"), False),
        ("esbuild@^0.19", ("pnpm", "esbuild", "0.19.12"), True),
        ("esbuild@^0.19", ("npm", "esbuild", "0.20.0"), False),
        ("@swc/core@^1.3", ("npm", "@swc/core", "1.3.107"), True),
        ("@swc/*", ("npm", "@swc/core-linux-x64-gnu", "1.3.107"), True),
        ("pip:cryptography@>=41,<44", ("pip", "cryptography", "42.0.5"), True),
        ("pip:cryptography@>=41,<44", ("pip", "cryptography", "44.0.0"), False),
        ("pip:cryptography", ("npm", "cryptography", "1.0.0"), False),
        ("Cryptography", ("pip", "cryptography", "42.0.5"), True),
        ("esbuild@^0.19", ("npm", "esbuild", "not-a-version"), False),
    ],
)
def test_package_spec_matching(spec: str, package: tuple[str, str, str], matches: bool) -> None:
    assert PackageSpec.parse(spec).matches(*package) is matches


# --- version ranges -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("version", "range_text", "inside"),
    [
        # exact
        ("1.2.3", "1.2.3", True),
        ("1.2.4", "1.2.3", False),
        ("1.2.3", "=1.2.3", True),
        ("1.2.3", "v1.2.3", True),
        ("v1.2.3", "1.2.3", True),
        # caret
        ("1.9.0", "^1.2.3", True),
        ("1.2.2", "^1.2.3", False),
        ("2.0.0", "^1.2.3", False),
        ("0.2.9", "^0.2.3", True),
        ("0.3.0", "^0.2.3", False),
        ("0.0.3", "^0.0.3", True),
        ("0.0.4", "^0.0.3", False),
        ("0.19.12", "^0.19", True),
        ("0.20.0", "^0.19", False),
        ("0.9.0", "^0.x", True),
        ("1.0.0", "^0.x", False),
        # tilde
        ("1.2.9", "~1.2.3", True),
        ("1.3.0", "~1.2.3", False),
        ("1.3.9", "~1.3", True),
        ("1.4.0", "~1.3", False),
        ("1.9.9", "~1", True),
        ("2.0.0", "~1", False),
        # comparisons, partial versions and AND
        ("1.2.0", ">=1.2", True),
        ("1.1.9", ">=1.2", False),
        ("1.3.0", ">1.2", True),
        ("1.2.9", ">1.2", False),
        ("1.2.9", "<=1.2", True),
        ("1.3.0", "<=1.2", False),
        ("1.1.9", "<1.2", True),
        ("1.2.0", "<1.2", False),
        ("1.5.0", ">=1.2.3 <2", True),
        ("2.0.0", ">=1.2.3 <2", False),
        ("1.2.3", ">= 1.2.3 < 2", True),
        # wildcards
        ("9.9.9", "*", True),
        ("9.9.9", "x", True),
        ("1.5.0", "1.x", True),
        ("2.0.0", "1.x", False),
        ("1.2.7", "1.2.*", True),
        ("1.3.0", "1.2.X", False),
        # hyphen ranges
        ("1.2.3", "1.2.3 - 2.3.4", True),
        ("2.3.4", "1.2.3 - 2.3.4", True),
        ("2.3.5", "1.2.3 - 2.3.4", False),
        ("2.3.9", "1.2 - 2.3", True),
        ("2.4.0", "1.2 - 2.3", False),
        ("1.1.9", "1.2 - 2.3", False),
        # alternatives
        ("3.1.0", "^1 || ^3", True),
        ("2.1.0", "^1 || ^3", False),
        ("1.0.0", "<1.0.0 || >=1.0.0", True),
        # pre-releases only where the range names one of the same release
        ("2.0.0-beta.1", "^1.2.3", False),
        ("1.5.0-beta.1", "^1.2.3", False),
        ("1.2.3-beta.4", ">=1.2.3-beta.2 <1.3", True),
        ("1.2.3-beta.1", ">=1.2.3-beta.2 <1.3", False),
        ("1.2.4-beta.4", ">=1.2.3-beta.2 <1.3", False),
        ("1.2.3-rc.1", "1.2.3-rc.1", True),
        # build metadata is ignored
        ("1.2.3+build.5", "1.2.3", True),
    ],
)
def test_npm_ranges(version: str, range_text: str, inside: bool) -> None:
    assert parse_range(range_text).syntax == "npm"
    assert version_in_range(version, range_text) is inside


@pytest.mark.parametrize(
    ("version", "range_text", "inside"),
    [
        ("1.5", ">=1.2,<2", True),
        ("1.2", ">=1.2,<2", True),
        ("2.0", ">=1.2,<2", False),
        ("1.1.9", ">=1.2, <2", False),
        ("1.4.2", "==1.*", True),
        ("1.0", "==1.*", True),
        ("2.0", "==1.*", False),
        ("1", "==1.0.*", True),
        ("1.4.5", "~=1.4", True),
        ("1.3", "~=1.4", False),
        ("2.0", "~=1.4", False),
        ("1.4.9", "~=1.4.5", True),
        ("1.5.0", "~=1.4.5", False),
        ("1.0", "==1.0.0", True),
        ("1.0+local.7", "==1.0", True),
        ("1.0+other", "==1.0+local", False),
        ("1.0", "!=1.0,>=0.5", False),
        ("1.1", "!=1.0,>=0.5", True),
        ("2.1", "!=1.*,>=0.5", True),
        ("0.9", "!=1.*,>=0.5", True),
        ("1.2", "!=1.*,>=0.5", False),
        ("2.0b1", ">=1.0,<3", False),  # pre-releases only where the range names one
        ("2.0b1", ">=2.0b1,<3", True),
        ("2.0b1", ">=2.0b1", True),
        ("1.0.post1", ">1.0,<2", False),  # >V excludes V's post-releases
        ("1.0.1", ">1.0,<2", True),
        ("2.0rc1", ">=1,<2.0", False),
        ("1.0.dev3", ">=0.9,<2", False),
        ("2020.1", ">=2019,<2021", True),
        ("1!1.0", ">=2,<3", False),
        ("2.0.0-beta.1", "==2.0.0b1", True),
        ("weird-build", "===weird-build", True),
        ("41.0.7", ">=41,<43", True),
    ],
)
def test_pep440_specifiers(version: str, range_text: str, inside: bool) -> None:
    assert parse_range(range_text).syntax == "pep440"
    assert version_in_range(version, range_text) is inside


@pytest.mark.parametrize(
    ("version", "range_text"),
    [
        ("not-a-version", "^1.0.0"),
        ("", "*"),
        ("1.0.0", "^banana"),
        ("1.0.0", ">=1.0,,<2"),
        ("1.0.0", ""),
        ("1.0.0", "~=1"),
        ("1.0.0", "1.x-beta"),
        ("1:2.3-4", ">=1"),  # a Debian epoch isn't a version here
    ],
)
def test_what_cannot_be_parsed_never_matches(version: str, range_text: str) -> None:
    assert version_in_range(version, range_text) is False


def test_parse_range_says_what_is_wrong() -> None:
    with pytest.raises(ValueError, match='"~=1" needs at least two release numbers'):
        parse_range("~=1")
    with pytest.raises(ValueError, match='"banana" is not a version'):
        parse_range("^banana")
    with pytest.raises(ValueError, match="the version range is empty"):
        parse_range("  ")


# -- CIDRs that allow the internet ----------------------------------------------------------


@pytest.mark.parametrize(
    "cidr",
    ["0.0.0.0/0", "::/0", "0.0.0.0/1", "128.0.0.0/1", "64.0.0.0/2", "2000::/3", "::/1", "::ffff:0:0/96", "2002::/16"],
)
def test_a_cidr_that_covers_much_of_the_internet_is_refused_like_star(tmp_path, cidr):
    for text in (
        f"version: 1\nallow:\n  hosts: ['{cidr}']\n",
        f"version: 1\nexceptions:\n  - {{rule: unfamiliar-egress, host: '{cidr}', reason: r}}\n",
    ):
        problem = only_problem(write(tmp_path, text))
        assert f'"{cidr}" covers ' in problem and "as `*` would" in problem
        assert "or narrower" in problem and "unfamiliar-egress: off" in problem


@pytest.mark.parametrize(
    "cidr", ["10.0.0.0/8", "192.168.0.0/16", "1.2.3.0/24", "fd00::/8", "2001:db8::/32", "::ffff:10.0.0.0/104"]
)
def test_narrow_or_private_cidrs_are_allowed(tmp_path, cidr):
    policy = load_policy(write(tmp_path, f"version: 1\nallow:\n  hosts: ['{cidr}']\n"), **RULES)
    assert [host.text for host in policy.allow.hosts] == [cidr]
