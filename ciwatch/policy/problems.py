"""How a policy's mistakes are reported: one ``PolicyProblem`` per mistake, naming its file,
line and key, with values shown short and printable."""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from typing import TYPE_CHECKING

from ciwatch.dataclass import dataclass

if TYPE_CHECKING:
    import yaml

__all__ = ["PolicyProblem", "choices", "kind", "line_of", "quote", "suggest"]

#: Longest value a message shows; longer ones are cut, saying how long they are.
MAX_SHOWN = 80
#: Longest message (values in it already cut to MAX_SHOWN).
MAX_MESSAGE = 1000


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
        # Whatever built the message, what is shown is short and has no raw control or bidi
        # character (a file name or a YAML error can carry them too).
        where = f"{printable(self.file, 200)}:{self.line}: "
        message = printable(self.message, MAX_MESSAGE)
        return f"{where}{printable(self.key, 200)}: {message}" if self.key else f"{where}{message}"


def printable(text: str, limit: int = MAX_SHOWN) -> str:
    """``text`` cut to ``limit`` characters, control (and other invisible) characters escaped
    as ``repr`` would (``\\n``, ``\\x1b``, ``\\u202e``)."""
    cut = text[:limit]
    shown = "".join(repr(ch)[1:-1] if unicodedata.category(ch)[0] in "CZ" and ch != " " else ch for ch in cut)
    return shown if len(text) <= limit else f"{shown}... ({len(text)} characters)"


def quote(text: str) -> str:
    """``text`` in double quotes, short and printable, for a message."""
    return f'"{printable(text)}"'


def line_of(node: yaml.Node) -> int:
    return int(node.start_mark.line) + 1


def is_null(node: yaml.Node) -> bool:
    import yaml  # here: the built-in policy is read without PyYAML (policy/builtin.py)

    return isinstance(node, yaml.ScalarNode) and node.tag == "tag:yaml.org,2002:null"


def kind(node: yaml.Node) -> str:
    """What was found, for ``expected X, found ...``."""
    import yaml  # as in is_null

    if isinstance(node, yaml.MappingNode):
        return "a mapping"
    if isinstance(node, yaml.SequenceNode):
        return "a list"
    if is_null(node):
        return "no value"
    return quote(str(node.value))


def suggest(word: str, candidates: Sequence[str]) -> str:
    """``did you mean "X"? `` for the closest candidate, or nothing."""
    import difflib  # here: only a policy with a typo needs it

    close = difflib.get_close_matches(word.lower()[:200], list(candidates), n=1, cutoff=0.6)
    return f'did you mean "{close[0]}"? ' if close else ""


def choices(values: Sequence[object]) -> str:
    """``a, b or c`` for a few values, ``one of a, b, c, ...`` for many."""
    words = [str(value) for value in values]
    if len(words) == 1:
        return words[0]
    if len(words) <= 5:
        return ", ".join(words[:-1]) + f" or {words[-1]}"
    return "one of " + ", ".join(words)
