"""A record line built field by field (ciwatch.record.lines), in Python or in C (_lines.c, a
batch at a time), is byte for byte the line the generic route writes (a dict of the fields
through ``json.dumps``), for every event class and any values its fields may hold; and a batch
scrubbed at once is the batch scrubbed one by one."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ciwatch.job import Scrubber
from ciwatch.record import lines
from ciwatch.record.codec import EVENT_TYPES, to_json_dict
from ciwatch.record.events import Event, FileWrite
from ciwatch.record.lines import LineEncoder
from ciwatch.record.vocabulary import FileOp

SETTINGS = settings(max_examples=300, deadline=None, database=None)

_ODD = ["", "\x00", "\u202e", "\udc80", "\ud800", "é", "\U0001f600", '"\\/', "\n\t", "a" * 200]
_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**64), max_value=2**64),
    st.floats(),  # NaN and the infinities too: json spells them its own way
    st.sampled_from(_ODD),
    st.text(max_size=12),
    st.sampled_from(list(FileOp)),
)
_values = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8,
)


def _generic(seq: int, t: float, job: str, event: Event) -> bytes:
    line = {"seq": seq, "t": t, "job": job, **to_json_dict(event)}
    return (json.dumps(line, separators=(",", ":")) + "\n").encode("ascii")


def _any_fields(cls: type[Event], values: list[Any]) -> Event:
    """An instance of ``cls`` whatever its fields' declared types (frozen dataclasses: set past
    __init__, so that a value of the wrong type is tried too)."""
    event = object.__new__(cls)
    for field, value in zip(dataclasses.fields(cls), values, strict=False):
        object.__setattr__(event, field.name, value)
    return event


def test_the_compiled_route_is_built() -> None:
    # Built in place for the tests and by pip on install (setup.py); without it every test
    # below would compare the Python route with itself.
    assert lines._compiled is not None


#: Both routes: C (a batch at a time) and Python (the fallback without a compiler).
ROUTES = pytest.mark.parametrize("compiled", [True, False], ids=["c", "python"])


@ROUTES
@SETTINGS
@given(
    data=st.data(),
    kind=st.sampled_from(sorted(EVENT_TYPES, key=str)),
    seq=st.integers(1, 2**40),
    t=st.floats(0, 2e9),
    job=st.text(max_size=20),
)
def test_every_event_class_any_values_same_bytes(
    compiled: bool, data: st.DataObject, kind: Any, seq: int, t: float, job: str
) -> None:
    count = len(dataclasses.fields(EVENT_TYPES[kind]))
    values = data.draw(st.lists(st.one_of(_scalars, _values), min_size=count, max_size=count))
    event = _any_fields(EVENT_TYPES[kind], values)
    assert LineEncoder(job, compiled).line(seq, t, event) == _generic(seq, t, job, event)


#: Paths as a tracee may spell them: undecodable bytes (surrogate escapes, as the tracer decodes
#: them), control characters, quotes, backslashes, DEL, characters beyond the BMP, long ones.
_AWKWARD_BYTES = [
    b"/tmp/\xff\xfe/x",
    b"/tmp/caf\xc3\xa9/\xe9t\xe9",
    bytes(range(1, 32)) + b"/x",
    b'/tmp/"quoted" \\back\\slash\\',
    b"/tmp/del\x7f/x\x80",
    "/tmp/\U0001f600/\u202e/\u00a0".encode(),
    b"/" + b"d" * 255 + b"/" + b"e" * 4000,
    b"",
]
_paths = st.one_of(
    st.sampled_from(_AWKWARD_BYTES),
    st.binary(max_size=40),
).map(lambda raw: raw.decode("utf-8", "surrogateescape"))


@ROUTES
@SETTINGS
@given(
    items=st.lists(
        st.tuples(_paths, st.none() | _paths, st.none() | st.integers(0, 2**32), st.sampled_from(list(FileOp))),
        max_size=6,
    ),
    first=st.integers(1, 2**40),
    t=st.floats(0, 2e9),
)
def test_a_batch_of_awkward_paths_same_bytes(
    compiled: bool, items: list[tuple[str, str | None, int | None, FileOp]], first: int, t: float
) -> None:
    events: list[Event] = [
        FileWrite(pid=7, op=op, path=path, as_written=written, flags=flags) for path, written, flags, op in items
    ]
    got = LineEncoder("job", compiled).lines(first, t, events)
    assert got == [_generic(seq, t, "job", event) for seq, event in enumerate(events, first)]


def test_a_file_write_line() -> None:
    event = FileWrite(pid=42, op=FileOp.OPEN, path="/tmp/\udcff/x", flags=0o1101, as_written="x")
    line = LineEncoder("j").line(7, 1.25, event)
    assert line == _generic(7, 1.25, "j", event)
    assert json.loads(line)["path"] == "/tmp/\udcff/x"


_SECRET = "s3cr3t-Value-0123456789"
_texts = st.one_of(
    st.text(max_size=30),
    st.sampled_from([_SECRET, f"/tmp/{_SECRET}/x", "/tmp/" + _SECRET.upper(), "ghp_" + "a" * 36, "%73%33cr3t", "x.y"]),
)


_SCRUBBER = Scrubber([_SECRET, "another-secret-value"])


@SETTINGS
@given(paths=st.lists(st.tuples(_texts, st.none() | _texts), min_size=0, max_size=12))
def test_a_batch_is_scrubbed_as_one_by_one(paths: list[tuple[str, str | None]]) -> None:
    scrubber = _SCRUBBER
    events: list[Event] = [
        FileWrite(pid=1, op=FileOp.RENAME, path=path, target=target, as_written=path + "\x00" if target else None)
        for path, target in paths
    ]
    assert scrubber.events(events) == [scrubber.event(event) for event in events]


def test_a_secret_split_across_two_strings_is_not_found_in_neither() -> None:
    """The batch's strings are joined for one search: a secret spelled half in one path and
    half in the next must not be taken for a match (nothing to scrub in either)."""
    scrubber = Scrubber([_SECRET])
    half = len(_SECRET) // 2
    events: list[Event] = [
        FileWrite(pid=1, op=FileOp.OPEN, path=_SECRET[:half]),
        FileWrite(pid=1, op=FileOp.OPEN, path=_SECRET[half:]),
    ]
    assert scrubber.events(events) == events
    assert scrubber.events([*events, FileWrite(pid=1, op=FileOp.OPEN, path=f"/{_SECRET}")])[2].path == "/[REDACTED]"
