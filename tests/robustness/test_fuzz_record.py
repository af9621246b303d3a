"""Fuzzing `check`, `report` and `baseline` on damaged records (hypothesis, bounded): a record
written by the real writer, then bytes flipped, lines deleted, duplicated or swapped, fields
given values of another type. Every outcome is a verdict or a summary (0, 3) or a usage error
(2) naming the line, never an internal error (70); messages stay short and printable."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ciwatch.exitcodes import USAGE_ERROR
from tests.robustness.test_malformed_records import COMMANDS, VERDICT_CODES, invoke, sample_lines

# database=None: no .hypothesis directory in the work tree; each run draws afresh (bounded by max_examples).
FUZZ = settings(max_examples=120, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])

#: Values of every JSON type, and the ones that broke readers before: nulls, bools for numbers,
#: numbers beyond 64 bits, control and bidi characters, lone surrogates, nesting.
_ODD_STRINGS = ["", "\u202e", "\x00", "\x1b[2J", "\udc80", "\ud800", "..", "/", "a" * 300, "-1", "1e999"]
_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=2**63 - 2, max_value=2**65),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from(_ODD_STRINGS),
    st.text(max_size=20),
)
_values = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=12,
)


@pytest.fixture(scope="module")
def lines(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    return sample_lines(tmp_path_factory.mktemp("fuzz-sample"))


def _judged_or_refused(tmp_path_factory: pytest.TempPathFactory, data: bytes, command: str) -> None:
    record = tmp_path_factory.mktemp("fuzz") / "record.jsonl"
    record.write_bytes(data)
    code, stderr = invoke(command, record)
    assert code in {*VERDICT_CODES, USAGE_ERROR}, stderr
    if code == USAGE_ERROR:
        assert " line " in stderr or "empty record" in stderr, stderr
    assert all(ch.isprintable() for text in stderr.splitlines() for ch in text), repr(stderr[:300])
    assert len(stderr) < 4000, stderr[:300]


def _encoded(lines: list[str]) -> bytes:
    return ("\n".join(lines) + "\n").encode("utf-8", "surrogateescape")


_commands = st.sampled_from(sorted(COMMANDS))


@FUZZ
@given(data=st.data(), command=_commands)
def test_flipped_bytes(
    tmp_path_factory: pytest.TempPathFactory, lines: list[str], data: st.DataObject, command: str
) -> None:
    damaged = bytearray(_encoded(lines))
    for _ in range(data.draw(st.integers(1, 8))):
        at = data.draw(st.integers(0, len(damaged) - 1))
        damaged[at] = data.draw(st.integers(0, 255))
    _judged_or_refused(tmp_path_factory, bytes(damaged), command)


@FUZZ
@given(data=st.data(), command=_commands)
def test_lines_deleted_duplicated_or_swapped(
    tmp_path_factory: pytest.TempPathFactory, lines: list[str], data: st.DataObject, command: str
) -> None:
    damaged = list(lines)
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, len(damaged) - 1))
        action = data.draw(st.sampled_from(["delete", "duplicate", "swap", "cut"]))
        if action == "delete" and len(damaged) > 1:
            del damaged[at]
        elif action == "duplicate":
            damaged.insert(at, damaged[at])
        elif action == "swap":
            other = data.draw(st.integers(0, len(damaged) - 1))
            damaged[at], damaged[other] = damaged[other], damaged[at]
        elif action == "cut":
            damaged[at] = damaged[at][: data.draw(st.integers(0, len(damaged[at])))]
    _judged_or_refused(tmp_path_factory, _encoded(damaged), command)


@FUZZ
@given(data=st.data(), command=_commands)
def test_fields_of_another_type(
    tmp_path_factory: pytest.TempPathFactory, lines: list[str], data: st.DataObject, command: str
) -> None:
    damaged = list(lines)
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, len(damaged) - 1))
        fields = json.loads(damaged[at])
        key = data.draw(st.sampled_from(sorted(fields)) | st.text(max_size=6))
        if data.draw(st.booleans()) and key in fields:
            del fields[key]
        else:
            fields[key] = data.draw(_values)
        damaged[at] = json.dumps(fields)
    _judged_or_refused(tmp_path_factory, _encoded(damaged), command)


@FUZZ
@given(data=st.data(), command=_commands)
def test_values_of_the_right_type_but_odd(
    tmp_path_factory: pytest.TempPathFactory, lines: list[str], data: st.DataObject, command: str
) -> None:
    """Well-typed values a writer would never write (negative pids, empty argv, odd paths, pids
    that never started): the record reads, and the rules and reports must cope."""
    damaged = list(lines)
    for _ in range(data.draw(st.integers(1, 6))):
        at = data.draw(st.integers(0, len(damaged) - 1))
        fields = json.loads(damaged[at])
        key = data.draw(st.sampled_from(sorted(fields)))
        value = fields[key]
        if isinstance(value, bool):
            fields[key] = not value
        elif isinstance(value, int):
            fields[key] = data.draw(st.sampled_from([0, -1, 1, 2**63 - 1, -(2**63), 101, 102]))
        elif isinstance(value, float):
            fields[key] = data.draw(st.sampled_from([0.0, -1.0, 1e300]))
        elif isinstance(value, str):
            fields[key] = data.draw(st.sampled_from(_ODD_STRINGS) | st.text(max_size=10))
        elif isinstance(value, list):
            fields[key] = data.draw(st.lists(st.sampled_from(_ODD_STRINGS), max_size=3))
        damaged[at] = json.dumps(fields)
    _judged_or_refused(tmp_path_factory, _encoded(damaged), command)


@FUZZ
@given(st.binary(max_size=600), _commands)
def test_any_bytes(tmp_path_factory: pytest.TempPathFactory, data: bytes, command: str) -> None:
    _judged_or_refused(tmp_path_factory, data, command)
