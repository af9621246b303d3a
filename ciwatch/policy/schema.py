"""The policy's shape, checked against ``schema.json`` (JSON Schema) with ``jsonschema``; each
schema error becomes a ``file:line: key`` problem at the YAML node it is about, worded from the
schema's own ``title``s (``expected a mapping with registries and hosts, found a list``).

The schema leaves the rule ids open: ``policy_schema`` fills them in from the rule catalogue the
loader is given, so the schema and the rules can't disagree.
"""

from __future__ import annotations

import functools
import importlib
import json
from collections.abc import Iterator, Mapping
from importlib import resources
from typing import Any

import yaml

from ciwatch.policy.document import Path, Problem, join, key_node_at, key_text
from ciwatch.policy.problems import choices, is_null, kind, quote, suggest

__all__ = ["policy_schema", "schema_problems"]

Schema = dict[str, Any]

_READ_AS = {"tag:yaml.org,2002:int": "number", "tag:yaml.org,2002:float": "number", "tag:yaml.org,2002:bool": "boolean"}


@functools.cache
def _document() -> str:
    return resources.files("ciwatch.policy").joinpath("schema.json").read_text(encoding="utf-8")


def policy_schema(known_rules: Mapping[str, object]) -> Schema:
    """``schema.json`` with its rule ids (``$defs.ruleId``) filled in from ``known_rules``."""
    schema: Schema = json.loads(_document())
    schema["$defs"]["ruleId"]["enum"] = list(known_rules)
    return schema


@functools.lru_cache(maxsize=8)
def _validator(rule_ids: tuple[str, ...]) -> Any:
    # Imported here: jsonschema (and what it brings) is only needed once a policy is read.
    jsonschema = importlib.import_module("jsonschema")

    schema = policy_schema(dict.fromkeys(rule_ids))
    validator_class = jsonschema.validators.validator_for(schema)
    validator_class.check_schema(schema)
    return validator_class(schema)


def schema_problems(data: object, root: yaml.Node, rule_ids: tuple[str, ...]) -> Iterator[Problem]:
    """Where ``data`` (read from the nodes under ``root``) doesn't fit the schema."""
    validator = _validator(rule_ids)
    explain = _Explain(validator.schema, root)
    said: set[str] = set()
    for error in validator.iter_errors(data):
        for problem in explain.problems(error):
            if problem[1] not in said:  # one problem per key: "expected text" says enough of a list
                said.add(problem[1])
                yield problem


def _title(schema: Schema, fallback: str = "") -> str:
    if "title" in schema:
        return str(schema["title"])
    types = schema.get("type", [])
    names = {"object": "a mapping", "array": "a list", "string": "text", "integer": "a number"}
    found = [names[name] for name in ([types] if isinstance(types, str) else types) if name in names]
    return " or ".join(found) or fallback or "a value allowed here"


class _Explain:
    """Turns one ``jsonschema`` error into the problems it stands for."""

    def __init__(self, schema: Schema, root: yaml.Node) -> None:
        self.schema = schema
        self.root = root

    def resolve(self, schema: Schema) -> Schema:
        ref = schema.get("$ref", "")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            resolved: Schema = self.schema["$defs"][ref.removeprefix("#/$defs/")]
            return {**resolved, **{key: value for key, value in schema.items() if key != "$ref"}}
        return schema

    def problems(self, error: Any) -> Iterator[Problem]:
        path: Path = [part for part in error.absolute_path if isinstance(part, str | int)]
        node, _ = key_node_at(self.root, path)
        key = key_text(path)
        schema: Schema = error.schema if isinstance(error.schema, dict) else {}
        instance = error.instance
        check = str(error.validator)
        if check == "additionalProperties" and isinstance(instance, dict):
            yield from self.unknown_keys(path, schema, instance)
        elif check == "required":
            yield from self.missing(node, key, schema, instance)
        elif check == "oneOf":
            if isinstance(instance, dict):  # else the type error says it all
                yield self.one_of(path, node, key, schema, instance)
        elif "propertyNames" in error.absolute_schema_path:  # about a key: the instance is its name
            yield self.unknown_name(path, schema, str(instance))
        elif check in ("enum", "const"):
            yield node, key, self.not_one_of(node, schema)
        elif check == "type":
            yield node, key, self.wrong_type(node, key, schema)
        elif check in ("pattern", "minLength", "maxLength", "format") and isinstance(instance, str):
            title = _title(schema)
            message = f"is empty; expected {title}" if not instance.strip() else f"{quote(instance)} is not {title}"
            yield node, key, message
        else:
            yield node, key, f"expected {_title(schema)}, found {kind(node)}"

    def unknown_name(self, path: Path, schema: Schema, name: str) -> Problem:
        noun = _title(schema).removeprefix("a ").removeprefix("an ")
        words = _words(schema)
        message = f"unknown {noun}; {suggest(name, words)}expected one of {', '.join(words)}"
        return self.key_node(path, name), join(key_text(path), name), message

    def key_node(self, path: Path, name: str) -> yaml.Node:
        node, key_node = key_node_at(self.root, [*path, name])
        return key_node if key_node is not None else node

    def unknown_keys(self, path: Path, schema: Schema, instance: dict[str, object]) -> Iterator[Problem]:
        allowed = list(schema.get("properties", {}))
        for name in instance:
            if name in allowed:
                continue
            hint = self.nested_hint(schema, name) or suggest(name, allowed)
            message = f"unknown key; {hint}expected one of {', '.join(allowed)}"
            yield self.key_node(path, name), join(key_text(path), name), message

    def nested_hint(self, schema: Schema, name: str) -> str:
        """``did you mean "allow.hosts"`` for a key written a level too high."""
        for parent, child in schema.get("properties", {}).items():
            child = self.resolve(child)
            names = self.resolve(child.get("propertyNames", {})).get("enum", [])
            if name in child.get("properties", {}) or name in names:
                return f'did you mean "{parent}.{name}" (indented under {parent}:)? '
        return ""

    def missing(self, node: yaml.Node, key: str, schema: Schema, instance: object) -> Iterator[Problem]:
        present = instance if isinstance(instance, dict) else {}
        for name in schema.get("required", []):
            if name in present:
                continue
            wanted = self.resolve(schema.get("properties", {}).get(name, {}))
            if "const" in wanted:
                expected = f"`{name}: {wanted['const']}`" + (" as the policy's first line" if not key else "")
            else:
                expected = _title(wanted)
            yield node, join(key, name), f"missing; expected {expected}"

    def one_of(self, path: Path, node: yaml.Node, key: str, schema: Schema, instance: dict[str, object]) -> Problem:
        """An exception names exactly one of its alternatives (``package`` or ``host``)."""
        names = [name for option in schema["oneOf"] for name in option.get("required", [])]
        present = [name for name in names if name in instance]
        if len(present) > 1:
            what = f"two {path[-2]}" if len(path) > 1 and isinstance(path[-2], str) else "two"
            return (
                self.key_node(path, present[-1]),
                key,
                (f"has both {' and '.join(present)}; expected one of them (write {what} for both)"),
            )
        examples = []
        for name in names:
            wanted = self.resolve(schema.get("properties", {}).get(name, {}))
            examples.append(f"`{name}: {wanted.get('examples', ['...'])[0]}`")
        listed = " nor ".join(names)
        return node, key, f"has neither {listed}; expected one of {' or '.join(examples)}"

    def not_one_of(self, node: yaml.Node, schema: Schema) -> str:
        words = _words(schema)
        expected = choices(words)
        if not isinstance(node, yaml.ScalarNode) or is_null(node):
            return f"expected {expected}, found {kind(node)}"
        text = str(node.value)
        if text in words:  # the right word, the wrong type: `version: "1"`
            return f"{quote(text)} is not {_title(schema)}; expected {expected}, written without quotes"
        return f"{quote(text)} is not {_title(schema)}; {suggest(text, words)}expected {expected}"

    def wrong_type(self, node: yaml.Node, key: str, schema: Schema) -> str:
        if not key:
            keys = ", ".join(self.schema.get("properties", {}))
            return f"the policy must be a mapping of keys ({keys}); found {kind(node)}"
        if is_null(node):
            return f"has no value; expected {_title(schema)}"
        read_as = _READ_AS.get(node.tag) if isinstance(node, yaml.ScalarNode) else None
        if read_as and schema.get("type") == "string":
            return f"expected {_title(schema)}, found the {read_as} {kind(node)} (write it in quotes to mean text)"
        return f"expected {_title(schema)}, found {kind(node)}"


def _words(schema: Schema) -> list[str]:
    values = schema["enum"] if "enum" in schema else [schema["const"]] if "const" in schema else []
    return [str(value) for value in values]
