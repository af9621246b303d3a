"""The policy file as data with positions: composed with PyYAML's node API (so each value keeps
its line and duplicate keys can be caught, where ``yaml.safe_load`` silently keeps the last),
read the way YAML 1.2's core schema and editors read it (``off``, ``yes`` and ``2027-06-30``
stay text; ``true``, ``1`` and ``null`` are a boolean, a number and no value)."""

from __future__ import annotations

import re
from collections.abc import Sequence

import yaml

from ciwatch.policy.problems import line_of, printable

__all__ = ["Core12Loader", "Path", "Problem", "key_node_at", "node_at", "to_data"]

Path = Sequence[str | int]
#: A mistake found while reading: the node it is at, the key path, the message.
Problem = tuple[yaml.Node, str, str]

_NULL = "tag:yaml.org,2002:null"
_BOOL = "tag:yaml.org,2002:bool"
_INT = "tag:yaml.org,2002:int"
_FLOAT = "tag:yaml.org,2002:float"
_MERGE = "tag:yaml.org,2002:merge"
_MAX_DIGITS = 40


class Core12Loader(yaml.SafeLoader):
    """A SafeLoader whose plain scalars resolve as in YAML 1.2's core schema."""


Core12Loader.yaml_implicit_resolvers = {}
for _tag, _pattern, _first in (
    (_MERGE, r"^(?:<<)$", ["<"]),
    (_NULL, r"^(?:~|null|Null|NULL|)$", ["~", "n", "N", ""]),
    (_BOOL, r"^(?:true|True|TRUE|false|False|FALSE)$", list("tTfF")),
    (_INT, r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$", list("-+0123456789")),
    (
        _FLOAT,
        r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$",
        list("-+.0123456789"),
    ),
):
    Core12Loader.add_implicit_resolver(_tag, re.compile(_pattern), _first)


def join(key: str, child: str | int) -> str:
    """``key.child`` or ``key[child]``, the child's name short and printable."""
    if isinstance(child, int):
        return f"{key}[{child}]"
    name = printable(child, 40)
    return f"{key}.{name}" if key else name


def key_text(path: Path) -> str:
    """``allow.hosts[2]`` for ``("allow", "hosts", 2)``."""
    text = ""
    for part in path:
        text = join(text, part)
    return text


def _scalar(node: yaml.ScalarNode) -> object:
    text = str(node.value)
    if node.tag == _NULL:
        return None
    if node.tag == _BOOL:
        return text.lower() == "true"
    if node.tag == _INT:
        if len(text) > _MAX_DIGITS:
            # No setting needs such a number, and Python refuses to convert more than 4300
            # digits: kept as text, the schema check says what was expected there.
            return text
        return int(text, 0) if text[:2] in ("0o", "0x") else int(text)
    if node.tag == _FLOAT:
        lowered = text.lower().lstrip("+")
        return float(lowered.replace(".inf", "inf").replace(".nan", "nan"))
    return text  # str, and explicit tags (!!binary, !!timestamp) read as their text


def to_data(root: yaml.Node, problems: list[Problem]) -> object:
    """``root`` as JSON-like data (dict, list, str, int, float, bool, None); each key once: a
    duplicate key, a key that isn't plain text and an alias to its own value are added to
    ``problems`` and left out. An alias reuses its value, so a document stays its own size."""
    done: dict[int, object] = {}
    open_nodes: set[int] = set()

    def convert(node: yaml.Node, key: str) -> object:
        if id(node) in done:
            return done[id(node)]
        if id(node) in open_nodes:
            problems.append((node, key, "an alias refers to the value it is part of; expected a value that ends"))
            return None
        if isinstance(node, yaml.ScalarNode):
            return _scalar(node)
        open_nodes.add(id(node))
        value: object
        if isinstance(node, yaml.MappingNode):
            value = mapping(node, key)
        else:
            value = [convert(item, join(key, index)) for index, item in enumerate(node.value)]
        open_nodes.discard(id(node))
        done[id(node)] = value
        return value

    def mapping(node: yaml.MappingNode, key: str) -> dict[str, object]:
        values: dict[str, object] = {}
        first_line: dict[str, int] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == _MERGE:
                message = "a key must be plain text (anchors merged with << are not supported)"
                problems.append((key_node, key, message))
                continue
            name = str(key_node.value)
            if name in first_line:
                message = f"duplicate key (first written on line {first_line[name]})"
                problems.append((key_node, join(key, name), message))
                continue
            first_line[name] = line_of(key_node)
            values[name] = convert(value_node, join(key, name))
        return values

    return convert(root, "")


def key_node_at(root: yaml.Node, path: Path) -> tuple[yaml.Node, yaml.Node | None]:
    """The value node at ``path`` and, when it is a mapping's value, its key's node; where the
    path leaves the tree (a value that isn't there), the deepest node on it."""
    node, key_node = root, None
    for part in path:
        found: tuple[yaml.Node, yaml.Node] | None = None
        if isinstance(part, int) and isinstance(node, yaml.SequenceNode) and 0 <= part < len(node.value):
            found = (node.value[part], None)  # type: ignore[assignment]
        elif isinstance(part, str) and isinstance(node, yaml.MappingNode):
            found = next(((v, k) for k, v in node.value if isinstance(k, yaml.ScalarNode) and k.value == part), None)
        if found is None:
            return node, key_node
        node, key_node = found
    return node, key_node


def node_at(root: yaml.Node, path: Path) -> yaml.Node:
    """The node at ``path`` (``("allow", "hosts", 2)``), as ``key_node_at``."""
    return key_node_at(root, path)[0]
