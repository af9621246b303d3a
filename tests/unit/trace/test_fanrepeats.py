"""The events of opens already recorded, dropped before their paths are looked for, change
nothing in the record: the same events come out, in the same order, whichever way a build's
changes and closes fall into drains; and the dropped ones cost no path."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from ciwatch.record.events import Event, FileWrite
from ciwatch.record.vocabulary import FileOp
from ciwatch.trace import fanwatch
from ciwatch.trace.fanotify import FAN_CLOSE_WRITE, FAN_CREATE, FAN_DELETE, FAN_MODIFY, HandleKey, RawEvent
from ciwatch.trace.tasks import TracedProcess
from tests.unit.trace.test_fanwatch import ROOT, FakeGroup, _event, _watch

_MASKS = (
    FAN_MODIFY,
    FAN_MODIFY,
    FAN_MODIFY,
    FAN_CLOSE_WRITE,
    FAN_MODIFY | FAN_CLOSE_WRITE,
    FAN_CREATE,
    FAN_CREATE | FAN_MODIFY,
    FAN_CREATE | FAN_MODIFY | FAN_CLOSE_WRITE,
    FAN_DELETE,
    FAN_CLOSE_WRITE | FAN_DELETE,
)
_NAMES = ("a", "b", "c")


def _processes() -> dict[int, TracedProcess]:
    """10 and its child 11 (which may hold 10's descriptors), and 12."""
    return {10: TracedProcess(10, 1), 11: TracedProcess(11, 10), 12: TracedProcess(12, 1)}


def _script(seed: int) -> list[list[tuple[int, int, str]]]:
    """Drains of (pid, mask, name) events, at random."""
    chance = random.Random(seed)
    return [
        [
            (chance.choice((10, 10, 11, 12)), chance.choice(_MASKS), chance.choice(_NAMES))
            for _ in range(chance.randint(0, 8))
        ]
        for _ in range(chance.randint(1, 6))
    ]


def _recorded(tmp_path: Path, script: list[list[tuple[int, int, str]]], expecting: str | None = None) -> list[Event]:
    group = FakeGroup({ROOT: tmp_path})
    watch, events = _watch(group, _processes())
    if expecting is not None:
        watch.expect(10, f"{tmp_path}/{expecting}")  # a truncate's change, recorded at its stop
    for drain in script:
        group.queue = [_event(mask, ROOT, name, obj=(1, name.encode()), pid=pid) for pid, mask, name in drain]
        watch.drain()
    return events


@pytest.mark.parametrize("seed", range(300))
def test_dropping_the_repeats_changes_nothing_recorded(
    tmp_path: Path, seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    script = _script(seed)
    expecting = random.Random(seed).choice((None, "a"))
    fast = _recorded(tmp_path, script, expecting)
    monkeypatch.setattr(fanwatch, "without_repeats", lambda batch, *_: batch)  # every event handled
    assert fast == _recorded(tmp_path, script, expecting), script


def test_a_thousand_changes_are_one_open_and_need_no_path(tmp_path: Path) -> None:
    group = FakeGroup({ROOT: tmp_path})
    resolved: list[HandleKey] = []
    open_handle = group.open_handle
    group.open_handle = lambda key: resolved.append(key) or open_handle(key)  # type: ignore[method-assign]
    watch, events = _watch(group, _processes())
    obj = (1, b"big")
    group.queue = [_event(FAN_CREATE | FAN_MODIFY, ROOT, "big", obj=obj)]
    watch.drain()
    for _ in range(999):  # each change in a drain of its own: the kernel merged none of them
        group.queue = [_event(FAN_MODIFY, ROOT, "big", obj=obj)]
        watch.drain()
    assert resolved == [ROOT]  # the first event's directory only
    group.queue = [_event(FAN_CLOSE_WRITE, ROOT, "big", obj=obj)]
    watch.drain()
    group.queue = [_event(FAN_MODIFY, ROOT, "big", obj=obj)]  # opened and written again
    watch.drain()
    writes = [(e.op, e.path) for e in events if isinstance(e, FileWrite)]
    assert writes == [(FileOp.OPEN, f"{tmp_path}/big")] * 2


def test_a_repeat_under_a_pid_just_reaped_is_still_looked_at(tmp_path: Path) -> None:
    """An event under a pid just reaped may be another process's (a reused pid): it goes on to
    be held back or recorded, not dropped as the old process's repeat."""
    group = FakeGroup({ROOT: tmp_path})
    watch, events = _watch(group, _processes())
    obj = (1, b"f")
    group.queue = [_event(FAN_CREATE | FAN_MODIFY, ROOT, "f", obj=obj)]
    watch.drain()
    seen: list[RawEvent] = []
    original = fanwatch.FanWatch._hold

    def hold(self: fanwatch.FanWatch, raw: RawEvent, reaped: int, held: bool) -> bool:
        seen.append(raw)
        return original(self, raw, reaped, held)

    fanwatch.FanWatch._hold = hold  # type: ignore[method-assign]
    try:
        group.queue = [_event(FAN_MODIFY, ROOT, "f", obj=obj)]
        watch.drain(reaped=10)
    finally:
        fanwatch.FanWatch._hold = original  # type: ignore[method-assign]
    assert len(seen) == 1
    assert len([e for e in events if isinstance(e, FileWrite)]) == 1
