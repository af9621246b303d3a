"""What a policy's schema can't say, checked in code (host names, CIDRs, package specs, version
ranges, dates), and the Policy a file that passes every check describes.

``ciwatch.policy.loader`` runs these after the schema check; both report ``Problem``s at nodes."""

from __future__ import annotations

import datetime
import re
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from ciwatch.policy.model import Allowlist, Exception_, HostPattern, Mode, PackageSpec, Policy, Severity
from ciwatch.policy.problems import line_of, quote

# ``ciwatch.policy.values`` (host names, package specs and their version ranges: two modules and
# their patterns) is imported where a value is read: the built-in policy has none.
if TYPE_CHECKING:
    import yaml

    from ciwatch.policy.document import Path, Problem

__all__ = ["build_policy", "value_problems"]

_Check = Callable[[str], str | None]
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def _items(data: object, *path: str) -> list[object]:
    """The list at ``path`` in ``data``, or [] where the data isn't shaped so (the schema says why)."""
    value = data
    for part in path:
        value = value.get(part) if isinstance(value, dict) else None
    return value if isinstance(value, list) else []


def _package_problem(text: str) -> str | None:
    from ciwatch.policy.values import parse_package

    return parse_package(text.strip())[1]


def _host_problem(text: str) -> str | None:
    from ciwatch.policy.values import host_problem

    return host_problem(text)


def date_problem(text: str) -> str | None:
    """What is wrong with ``text`` as an ``expires`` date, or None."""
    if not _DATE.fullmatch(text.strip()):
        return f"{quote(text)} is not a date; expected YYYY-MM-DD (e.g. 2027-06-30)"
    try:
        datetime.date.fromisoformat(text.strip())
    except ValueError as error:
        return f"{quote(text)} is not a date ({error}); expected YYYY-MM-DD"
    return None


_EXCEPTION_CHECKS: tuple[tuple[str, _Check], ...] = (
    ("package", _package_problem),
    ("host", _host_problem),
    ("expires", date_problem),
)


def value_problems(data: object, root: yaml.Node) -> Iterator[Problem]:
    # Imported here: the built-in policy is read without PyYAML (policy/builtin.py).
    from ciwatch.policy.document import key_text, node_at

    """Each host, package spec and date in ``data`` that is text but not a good one."""
    checks: list[tuple[Path, object, _Check]] = []
    for index, host in enumerate(_items(data, "allow", "hosts")):
        checks.append((("allow", "hosts", index), host, _host_problem))
    for index, package in enumerate(_items(data, "hooks", "allowed")):
        checks.append((("hooks", "allowed", index), package, _package_problem))
    for index, exception in enumerate(_items(data, "exceptions")):
        if isinstance(exception, dict):
            for name, check in _EXCEPTION_CHECKS:
                checks.append((("exceptions", index, name), exception.get(name), check))
    for path, value, check in checks:
        wrong = check(value) if isinstance(value, str) else None
        if wrong is not None:
            yield node_at(root, path), key_text(path), wrong


def build_policy(data: dict[str, Any], root: yaml.Node | None, source: str) -> Policy:
    """The Policy ``data`` describes; ``data`` has passed the schema and ``value_problems``.
    ``root``: its nodes, which name each exception's line (None: data that has none)."""
    allow = data.get("allow") or {}
    hooks = data.get("hooks") or {}
    allowed = hooks.get("allowed")
    exceptions = []
    for index, item in enumerate(data.get("exceptions") or []):
        from ciwatch.policy.document import node_at

        assert root is not None, "exceptions are read from a file's nodes"
        exceptions.append(
            Exception_(
                rule=item["rule"],
                reason=item["reason"].strip(),
                package=_package(item["package"]) if "package" in item else None,
                host=HostPattern(item["host"]) if "host" in item else None,
                expires=datetime.date.fromisoformat(item["expires"].strip()) if "expires" in item else None,
                source=f"{source}:{line_of(node_at(root, ('exceptions', index)))}",
            )
        )
    return Policy(
        version=1,
        mode=Mode(data.get("mode") or Mode.AUDIT),
        allow=Allowlist(
            registries_auto=allow.get("registries", "auto") != "none",
            hosts=tuple(HostPattern(host) for host in allow.get("hosts") or ()),
        ),
        hooks_allowed=None if allowed is None else tuple(_package(text) for text in allowed),
        hooks_import=hooks.get("import", "auto") == "auto",
        severities={rule: Severity.parse(label) for rule, label in (data.get("rules") or {}).items()},
        fail_on=Severity.parse(data.get("fail-on") or "high"),
        exceptions=tuple(exceptions),
        source=source,
    )


def _package(text: str) -> PackageSpec:
    from ciwatch.policy.values import parse_package

    spec, wrong = parse_package(text.strip())
    assert spec is not None, wrong
    return spec
