"""A hostile or broken policy file is refused with a usage error (exit 2) within bounded memory
and time, and the error never echoes a huge value or a raw control or bidi character."""

from __future__ import annotations

import contextlib
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest

from ciwatch.errors import UsageError
from ciwatch.policy import PolicyError, load_policy, resolve_policy
from ciwatch.policy.loader import MAX_BYTES, parse_policy
from ciwatch.rules import RULE_CATALOGUE

RULES = {"known_rules": RULE_CATALOGUE}


def _billion_laughs() -> str:
    lines = ["version: 1", 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for previous, name in zip("abcdefgh", "bcdefghi", strict=True):
        lines.append(f"{name}: &{name} [{', '.join([f'*{previous}'] * 9)}]")
    lines.append("allow: {hosts: *i}")
    return "\n".join(lines) + "\n"


HOSTILE = {
    "billion laughs": _billion_laughs(),
    "10,000-deep list": "version: 1\nallow:\n  hosts: " + "[" * 10_000 + "]" * 10_000 + "\n",
    "10,000-deep mapping": "version: 1\nrules: " + "{a: " * 10_000 + "1" + "}" * 10_000 + "\n",
    "10,000-deep block nesting": "version: 1\n" + "".join(" " * i + f"k{i}:\n" for i in range(3000)),
    "10 MB string": 'version: 1\nallow:\n  hosts: ["' + "a" * 10_000_000 + '"]\n',
    "10 MB key": "version: 1\n" + "k" * 10_000_000 + ": 1\n",
    "100,000 hosts": "version: 1\nallow:\n  hosts:\n" + "    - a.example.internal\n" * 100_000,
    "huge integer": "version: " + "9" * 5000 + "\n",
    "huge float": "version: 1e999999\n",
}


@contextlib.contextmanager
def _bounded(seconds: float, megabytes: int) -> Iterator[None]:
    """The block allocates at most ``megabytes`` more (Python allocations) and takes at most
    ``seconds`` (generous: 2 shared cores)."""
    tracemalloc.start()
    started = time.monotonic()
    try:
        yield
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    assert time.monotonic() - started < seconds
    assert peak < megabytes << 20, f"peak {peak >> 20} MiB"


def _refused(text: str) -> str:
    with pytest.raises(PolicyError) as caught:
        parse_policy(text, "policy.yml", **RULES)
    return str(caught.value)


@pytest.mark.parametrize("name", list(HOSTILE))
def test_hostile_policies_are_refused_in_bounded_time_and_memory(name: str) -> None:
    text = HOSTILE[name]
    with _bounded(seconds=10, megabytes=64):
        message = _refused(text)
    assert len(message) < 2000
    assert "aaaaaaaaaa" * 20 not in message and "kkkkkkkkkk" * 20 not in message


def test_a_100_mb_policy_file_is_refused_without_reading_it(tmp_path: Path) -> None:
    path = tmp_path / "policy.yml"
    with path.open("wb") as file:
        file.write(b"version: 1\nallow:\n  hosts: [")
        file.truncate(100 << 20)  # sparse: 100 MiB of NULs after the start
    with _bounded(seconds=5, megabytes=3 * (MAX_BYTES >> 20) + 8), pytest.raises(PolicyError) as caught:
        load_policy(path, **RULES)
    assert "1 MiB" in str(caught.value)


BIDI_AND_CONTROLS = "\u202e\u2066\u200f\x1b[31m\x07\r"


@pytest.mark.parametrize(
    "text",
    [
        f'version: 1\nmode: "{BIDI_AND_CONTROLS}"\n',
        f"version: 1\nallow:\n  hosts: ['{BIDI_AND_CONTROLS}x.test']\n",
        f'version: 1\n"{BIDI_AND_CONTROLS}": 1\n',
        f"version: 1\nmode: {BIDI_AND_CONTROLS[:3]}\n",  # unquoted: a YAML syntax error
        f'version: 1\nexceptions:\n  - {{rule: "x{BIDI_AND_CONTROLS}", reason: "r"}}\n',
    ],
)
def test_errors_never_echo_raw_control_or_bidi_characters(text: str) -> None:
    message = _refused(text)
    lines = message.split("\n")
    assert all(ch.isprintable() for line in lines for ch in line), repr(message)


def test_a_policy_file_name_with_bidi_characters_is_shown_escaped(tmp_path: Path) -> None:
    path = tmp_path / "evil\u202eyml.lmth"
    path.write_text("version: 2\n")
    with pytest.raises(PolicyError) as caught:
        load_policy(path, **RULES)
    assert "\u202e" not in str(caught.value) and "\\u202e" in str(caught.value)
    with pytest.raises(Exception) as missing:
        load_policy(tmp_path / "no\u202esuch", **RULES)
    assert "\u202e" not in str(missing.value)


def test_a_normal_policy_with_aliases_still_loads() -> None:
    text = "version: 1\nallow:\n  hosts: &hosts [a.example.internal, b.example.internal]\nmode: warn\n"
    policy = parse_policy(text, "policy.yml", **RULES)
    assert len(policy.allow.hosts) == 2


def test_a_mode_option_with_bidi_characters_is_shown_escaped(tmp_path: Path) -> None:
    with pytest.raises(UsageError) as caught:
        resolve_policy(tmp_path, None, "\u202eblock", **RULES)
    assert "\u202e" not in str(caught.value) and "\\u202e" in str(caught.value)


@pytest.mark.parametrize("escape", ["\\U99999999", "\\UFFFFFFFFFFFFFFFFFFFF", "\\U0011FFFF"])
def test_an_escape_that_names_no_character_is_a_syntax_error(escape: str) -> None:
    # PyYAML's scanner raises ValueError/OverflowError (not a YAMLError) for these: found by
    # the fuzz test; they must still be the usage error every bad policy is.
    with pytest.raises(PolicyError, match="is not valid YAML"):
        parse_policy(f'version: 1\nmode: "{escape}"\n', "policy.yml", **RULES)
