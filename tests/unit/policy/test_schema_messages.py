"""Schema errors as ``file:line: key`` messages: short, printable, at the node they are about."""

from __future__ import annotations

import pytest
import yaml

from ciwatch.policy.document import Core12Loader, key_node_at, to_data
from ciwatch.policy.loader import PolicyError, parse_policy
from ciwatch.policy.problems import printable, quote
from ciwatch.policy.schema import policy_schema
from ciwatch.rules import RULE_CATALOGUE


def problems(text: str) -> list[str]:
    with pytest.raises(PolicyError) as caught:
        parse_policy(text, "p.yml", known_rules=RULE_CATALOGUE)
    return [str(problem) for problem in caught.value.problems]


def test_printable_cuts_long_values_and_escapes_control_characters() -> None:
    assert printable("a" * 80) == "a" * 80
    assert printable("a" * 81) == "a" * 80 + "... (81 characters)"
    assert printable("a\x1b[31mb\nc\u202ed\tcafé") == "a\\x1b[31mb\\nc\\u202ed\\tcafé"
    assert quote('x"y') == '"x"y"'


def test_a_huge_value_is_not_echoed() -> None:
    (problem,) = problems("version: 1\nallow: {hosts: ['" + "a" * 5000 + "']}\n")
    assert len(problem) < 400
    assert "... (5000 characters)" in problem
    (problem,) = problems("version: 1\nrules: {" + "x" * 3000 + ": low}\n")
    assert len(problem) < 500


def test_control_characters_are_escaped() -> None:
    (problem,) = problems('version: 1\nmode: "bl\\x1b]0;owned\\x07ock"\n')
    assert problem.startswith('p.yml:2: mode: "bl\\x1b]0;owned\\x07ock" is not a mode')
    assert "\x1b" not in problem and "\x07" not in problem
    (problem,) = problems('version: 1\n"\\x1b[2J": 1\n')
    assert problem.startswith("p.yml:2: \\x1b[2J: unknown key")
    (problem,) = problems("version: 1\n\x01\n")
    assert problem == "p.yml:2: is not valid YAML (character \\x01: special characters are not allowed)"


def test_values_are_read_as_yaml_1_2_core() -> None:
    root = yaml.compose("a: off\nb: 2027-06-30\nc: true\nd: 0x10\ne: 1.5\nf: ~\ng: 010\n", Core12Loader)
    assert root is not None
    data = to_data(root, [])
    assert data == {"a": "off", "b": "2027-06-30", "c": True, "d": 16, "e": 1.5, "f": None, "g": 10}


def test_a_number_where_text_is_expected_says_so() -> None:
    (problem,) = problems("version: 1\nexceptions: [{rule: hook-shell, package: a, reason: 42}]\n")
    assert problem.endswith('found the number "42" (write it in quotes to mean text)')
    (problem,) = problems('version: "1"\n')
    assert (
        problem
        == 'p.yml:1: version: "1" is not a policy version this ciwatch reads; expected 1, written without quotes'
    )


def test_one_message_per_key() -> None:
    (problem,) = problems("version: 1\nexceptions: [{rule: [x], package: a, reason: r}]\n")
    assert problem == "p.yml:2: exceptions[0].rule: expected a rule id, found a list"


def test_aliases_merges_and_recursion() -> None:
    assert problems("version: 1\nallow: &a {registries: auto}\nhooks:\n  <<: *a\n") == [
        "p.yml:4: hooks: a key must be plain text (anchors merged with << are not supported)"
    ]
    assert "an alias refers to the value it is part of" in problems("version: 1\nexceptions: &a [*a]\n")[0]
    laughs = "version: 1\na: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join([f'*{chr(97 + i)}'] * 10)}]\n" for i in range(8)
    )
    # Refused before it is built: the schema check would walk 10^9 values (see test_hostile_policies).
    [refused] = problems(laughs)
    assert "more than 10000 values (aliases counted as the values they repeat)" in refused


def test_keys_written_a_level_too_high_are_placed() -> None:
    assert problems("version: 1\nimport: none\nunapproved-hook: low\n") == [
        'p.yml:2: import: unknown key; did you mean "hooks.import" (indented under hooks:)? '
        "expected one of version, mode, fail-on, allow, hooks, rules, exceptions",
        'p.yml:3: unapproved-hook: unknown key; did you mean "rules.unapproved-hook" (indented under rules:)? '
        "expected one of version, mode, fail-on, allow, hooks, rules, exceptions",
    ]


def test_at_most_fifty_problems() -> None:
    assert len(problems("version: 1\n" + "".join(f"k{i}: 1\n" for i in range(70)))) == 50


def test_key_node_at_walks_mappings_and_lists() -> None:
    root = yaml.compose("a:\n  - x\n  - {b: 1}\n", Core12Loader)
    assert root is not None
    node, key = key_node_at(root, ["a", 1, "b"])
    assert node.start_mark.line == 2 and key is not None and key.value == "b"
    node, key = key_node_at(root, ["a", 5])  # past the end: the deepest node on the path
    assert isinstance(node, yaml.SequenceNode)


def test_the_filled_schema_is_a_copy() -> None:
    first = policy_schema({"a": 1})
    first["$defs"]["ruleId"]["enum"].append("b")
    assert policy_schema({"a": 1})["$defs"]["ruleId"]["enum"] == ["a"]
