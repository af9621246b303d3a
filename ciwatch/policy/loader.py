"""Reading a policy file: every mistake is reported before the build starts, as
``FILE:LINE: key.path: what is wrong; expected ...``.

The file is composed into nodes (``ciwatch.policy.document``), so each value keeps its line and
duplicate keys are caught; its shape is checked against ``schema.json`` (``ciwatch.policy.schema``)
and what a schema can't say in code (``ciwatch.policy.reader``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from ciwatch.errors import UsageError
from ciwatch.policy.model import Mode, Policy, RuleCatalogue
from ciwatch.policy.problems import PolicyProblem, line_of, printable
from ciwatch.policy.reader import build_policy, value_problems

# PyYAML and the node API are imported where a policy file is read: a run with the built-in
# policy (policy/builtin.py) needs neither on the way to its build.
if TYPE_CHECKING:
    import yaml

    from ciwatch.policy.document import Problem

__all__ = [
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

_BUILT_IN = "<built-in default>"
_HINT = "The policy format is described in docs/policy.md; `ciwatch policy check FILE` checks a policy file."
_MODES = tuple(mode.value for mode in Mode)
#: At most this many problems are reported.
_MAX = 50
#: A policy is a few kilobytes; these bound what a hostile or broken one can cost (memory and
#: time) before it is refused: the file's size, how deep its values nest, how many values it
#: has once its aliases are expanded (a "billion laughs" is small on disk, and the schema check
#: walks every expanded value), and how long one value may be.
MAX_BYTES = 1 << 20
MAX_DEPTH = 20
MAX_VALUES = 10_000
MAX_SCALAR = 64 << 10


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
            f"{printable(str(found[0]), 200)} and {printable(str(found[1]), 200)} both exist; ciwatch reads one policy",
            hint="Keep one of them (or pass the one you mean with --policy).",
        )
    return found[0] if found else None


def load_policy(path: Path, *, known_rules: RuleCatalogue) -> Policy:
    """The policy in ``path``; PolicyError (a UsageError) naming every mistake, with its line.
    ``known_rules`` are the rule ids it may name (``ciwatch.rules.RULE_CATALOGUE``)."""
    try:
        with path.open("rb") as file:
            data = file.read(MAX_BYTES + 1)  # never more than that in memory, whatever the file's size
    except FileNotFoundError:
        raise UsageError(
            f"{printable(str(path), 200)}: no such policy file",
            hint="Pass an existing file to --policy, or write .ciwatch/policy.yml (see docs/policy.md).",
        ) from None
    except IsADirectoryError:
        raise UsageError(
            f"{printable(str(path), 200)}: is a directory; expected a policy file (YAML)", hint=_HINT
        ) from None
    except OSError as error:
        shown = printable(str(path), 200)
        raise UsageError(f"{shown}: can't read the policy file: {printable(str(error.strerror or error))}") from None
    if len(data) > MAX_BYTES:
        raise PolicyError([PolicyProblem(str(path), 1, "", _too_big())])
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise PolicyError([PolicyProblem(str(path), line, "", "is not UTF-8 text; expected a YAML file")]) from None
    return parse_policy(text, str(path), known_rules=known_rules)


def default_policy(*, known_rules: RuleCatalogue) -> Policy:
    """The built-in default policy (``ciwatch/policy/default.yaml``, identical to ``policies/default.yaml``)."""
    # Beside this module (ciwatch is installed as files): importlib.resources' readers (zipfile,
    # tempfile) would be imported at every start for it.
    import copy

    from ciwatch.policy.builtin import DEFAULT_POLICY

    # default.yaml's data, neither parsed nor checked against the schema at every start
    # (PyYAML's import, jsonschema's import and check): the tests check that the two agree and
    # that the file fits the schema (tests/test_startup.py, tests/test_startup_imports.py).
    return build_policy(copy.deepcopy(DEFAULT_POLICY), None, _BUILT_IN)


def resolve_policy(
    project_dir: Path,
    policy_file: Path | None = None,
    mode: Mode | str | None = None,
    *,
    known_rules: RuleCatalogue,
) -> Policy:
    """The policy a run uses: ``policy_file`` (``--policy``), else the project's
    ``.ciwatch/policy.yml``, else the built-in default; ``mode`` (``--mode``) overrides its mode."""
    if policy_file is not None:
        policy = load_policy(policy_file, known_rules=known_rules)
    else:
        found = find_policy(project_dir)
        if found is not None:
            policy = load_policy(found, known_rules=known_rules)
        else:
            policy = default_policy(known_rules=known_rules)
    if mode is None:
        return policy
    try:
        return dataclasses.replace(policy, mode=Mode(mode))
    except ValueError:
        raise UsageError(f'--mode "{printable(str(mode))}": expected one of {", ".join(_MODES)}') from None


def parse_policy(text: str, source: str, *, known_rules: RuleCatalogue, fits_schema: bool = False) -> Policy:
    """The policy written in ``text``; ``source`` names it in errors (a path, or ``<built-in default>``).
    Its shape is checked against ``schema.json`` (the rule ids filled in from ``known_rules``;
    not when ``fits_schema`` says it is known to), then what a schema can't say (hosts,
    package specs, version ranges, dates) in code."""
    import yaml

    from ciwatch.policy.document import Core12Loader, to_data
    from ciwatch.policy.schema import schema_problems

    if len(text) > MAX_BYTES:
        raise PolicyError([PolicyProblem(source, 1, "", _too_big())])
    try:
        _check_bounds(text, source)
        root = yaml.compose(text, Loader=Core12Loader)
    except yaml.MarkedYAMLError as error:
        raise PolicyError([_syntax_problem(source, error)]) from None
    except yaml.reader.ReaderError as error:  # a character YAML doesn't allow, e.g. a control character
        line = text[: error.position].count("\n") + 1
        message = f"is not valid YAML (character {printable(chr(error.character))}: {error.reason})"
        raise PolicyError([PolicyProblem(source, line, "", message)]) from None
    except yaml.YAMLError as error:  # no position known
        raise PolicyError([PolicyProblem(source, 1, "", f"is not valid YAML: {printable(str(error))}")]) from None
    except (ValueError, OverflowError) as error:
        # PyYAML's scanner lets these out for an escape it can't turn into a character
        # ("\U99999999" in a double-quoted value): still a file that isn't valid YAML.
        message = f"is not valid YAML (an escape sequence names no character: {printable(str(error))})"
        raise PolicyError([PolicyProblem(source, 1, "", message)]) from None
    if root is None:
        message = "the policy is empty; expected a mapping with at least `version: 1`"
        raise PolicyError([PolicyProblem(source, 1, "", message)])
    found: list[Problem] = []
    data = to_data(root, found)
    checked = list(value_problems(data, root))
    checked_keys = {key for _, key, _ in checked}
    shape = [] if fits_schema else list(schema_problems(data, root, tuple(known_rules)))
    shape = [problem for problem in shape if problem[1] not in checked_keys]
    found += checked + shape
    if found:
        found.sort(key=lambda problem: (problem[0].start_mark.line, problem[0].start_mark.column))
        raise PolicyError([PolicyProblem(source, line_of(node), key, message) for node, key, message in found][:_MAX])
    assert isinstance(data, dict)
    return build_policy(data, root, source)


def _too_big() -> str:
    return f"is larger than {MAX_BYTES} bytes (1 MiB); expected a policy file of a few kilobytes"


def _check_bounds(text: str, source: str) -> None:
    """Refuse a document that nests deeper, holds more values (aliases expanded) or a longer
    value than any policy needs, from PyYAML's event stream: its parser keeps its own stack (no
    recursion, unlike the composer that follows) and holds one event at a time, so this costs
    one pass over the text and bounded memory whatever the document."""
    import yaml

    from ciwatch.policy.document import Core12Loader

    depth = values = 0
    anchored: dict[str, int] = {}  # anchor -> how many values it stands for, expanded
    open_anchors: list[tuple[str | None, int]] = []  # per open collection: its anchor, `values` at its start
    for event in yaml.parse(text, Loader=Core12Loader):
        line = event.start_mark.line + 1 if event.start_mark is not None else 1
        if isinstance(event, yaml.AliasEvent):
            values += anchored.get(str(event.anchor), 1)
        elif isinstance(event, yaml.ScalarEvent):
            values += 1
            if len(event.value) > MAX_SCALAR:
                message = f"a value of {len(event.value)} characters; expected at most {MAX_SCALAR}"
                raise PolicyError([PolicyProblem(source, line, "", message)])
            if event.anchor is not None:
                anchored[str(event.anchor)] = 1
        elif isinstance(event, yaml.CollectionStartEvent):
            values += 1
            depth += 1
            open_anchors.append((event.anchor, values))
            if depth > MAX_DEPTH:
                message = f"values nest more than {MAX_DEPTH} levels deep; a policy needs at most 5"
                raise PolicyError([PolicyProblem(source, line, "", message)])
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1
            anchor, start = open_anchors.pop()
            if anchor is not None:
                anchored[str(anchor)] = values - start + 1
        if values > MAX_VALUES:
            message = (
                f"more than {MAX_VALUES} values (aliases counted as the values they repeat); "
                "expected a policy of a few hundred at most"
            )
            raise PolicyError([PolicyProblem(source, line, "", message)])


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
