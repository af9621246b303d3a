"""Fuzzing the policy loader (hypothesis, bounded): any input either loads or raises the usage
error (PolicyError, exit 2), never anything else; errors stay short and printable."""

from __future__ import annotations

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ciwatch.errors import UsageError
from ciwatch.policy import Policy, load_policy
from ciwatch.policy.loader import parse_policy
from ciwatch.rules import RULE_CATALOGUE

RULES = {"known_rules": RULE_CATALOGUE}
# database=None: no .hypothesis directory in the work tree; each run draws afresh (bounded by max_examples).
FUZZ = settings(max_examples=150, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])

_KEYS = [
    "version",
    "mode",
    "fail-on",
    "allow",
    "hosts",
    "registries",
    "hooks",
    "allowed",
    "import",
    "rules",
    "exceptions",
    "rule",
    "reason",
    "package",
    "host",
    "expires",
    *RULE_CATALOGUE,
]
_WORDS = [
    "1",
    "audit",
    "block",
    "warn",
    "high",
    "low",
    "off",
    "auto",
    "none",
    "*.example.internal",
    "0.0.0.0/0",
    "10.0.0.0/8",
    "esbuild@^1",
    "pip:cryptography@>=41",
    "2027-06-30",
    "\u202e",
    "\x00",
    "~",
    "null",
    "&a",
    "*a",
    "<<",
    "!!binary",
    "- ",
    ": ",
    "{",
    "[",
    "'",
    '"',
    "#",
    "\t",
    "\n",
    "\\",
    "%YAML 1.1",
    "---",
    "...",
    "1e999",
    "0x" + "f" * 50,
    "9" * 5000,
]

_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.sampled_from(_WORDS), st.text(max_size=30)
)
_values = st.recursive(
    _scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=5), st.dictionaries(st.sampled_from(_KEYS) | st.text(max_size=8), inner, max_size=5)
    ),
    max_leaves=40,
)


def _loads_or_refuses(text: str) -> None:
    try:
        policy = parse_policy(text, "fuzz.yml", **RULES)
    except UsageError as error:
        message = str(error)
        assert len(message) < 60_000
        assert all(ch.isprintable() for line in message.split("\n") for ch in line), repr(message[:200])
    else:
        assert isinstance(policy, Policy)


@FUZZ
@given(st.dictionaries(st.sampled_from(_KEYS), _values, max_size=8))
def test_policy_shaped_documents_load_or_are_refused(document: dict[str, object]) -> None:
    _loads_or_refuses(yaml.safe_dump(document, allow_unicode=True))


@FUZZ
@given(st.lists(st.sampled_from(_WORDS) | st.text(max_size=12), max_size=40))
def test_token_soup_loads_or_is_refused(pieces: list[str]) -> None:
    _loads_or_refuses("".join(pieces))


@FUZZ
@given(st.text(max_size=400))
def test_any_text_loads_or_is_refused(text: str) -> None:
    _loads_or_refuses(text)


@FUZZ
@given(
    st.dictionaries(st.sampled_from(_KEYS), _values, max_size=8), st.integers(0, 400), st.text(min_size=1, max_size=5)
)
def test_damaged_documents_load_or_are_refused(document: dict[str, object], at: int, insert: str) -> None:
    text = yaml.safe_dump(document, allow_unicode=True)
    _loads_or_refuses(text[:at] + insert + text[at:])


@FUZZ
@given(st.binary(max_size=400))
def test_any_bytes_in_a_file_load_or_are_refused(tmp_path_factory: pytest.TempPathFactory, data: bytes) -> None:
    path = tmp_path_factory.mktemp("fuzz") / "policy.yml"
    path.write_bytes(data)
    try:
        load_policy(path, **RULES)
    except UsageError as error:
        assert all(ch.isprintable() for line in str(error).split("\n") for ch in line), repr(str(error)[:200])
