"""The events of a fanotify batch that add nothing to the record, dropped before their paths
are looked for.

The record holds one ``open`` per time a process has a file open for writing: its first event
(creation, change or close) is recorded, the later ones are the same open, until the close
after writing ends it (:meth:`ciwatch.trace.fanwatch.FanWatch._wrote`). The kernel reports a
change once per ``write`` call it could not merge into an event still queued, so a file written
in many chunks across drains brings many events that need no path: only the close among them
still does something (it ends the open). Resolving their directories and building their paths
was most of what they cost the tracer.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from ciwatch.trace.fanotify import FAN_CLOSE_WRITE, FAN_MODIFY, HandleKey, RawEvent

_WRITES = FAN_MODIFY | FAN_CLOSE_WRITE

#: (process, file): a process's open of a file, by the file's handle.
Writing = tuple[int, HandleKey | str]


def without_repeats(
    batch: list[RawEvent],
    writing: set[Writing],
    parent_of: Callable[[int], int],
    kept_anyway: Callable[[RawEvent], bool],
) -> list[RawEvent]:
    """The batch without the changes and closes (nothing else in their mask) of a file whose
    process has it open for writing and recorded already (in ``writing``); a close among them
    ends the open here (removed from ``writing``). The result is what recording the events in
    order would have made of them: once an event of a (process, file) goes on to be recorded,
    every later one of that pair or of its parent's goes on too (its own recording may end
    the open; a close alone ends the parent's open when the parent has the file open for
    writing: the child dropped the last reference at its exec). ``kept_anyway``: events that
    go on whatever they are (held back for a reused pid, expected by a stop)."""
    passed: set[Writing] = set()
    kept: list[RawEvent] = []
    for raw in batch:
        if raw.obj is None:  # recorded by its path: never dropped, and its pairs aren't these
            kept.append(raw)
            continue
        own, parent = (raw.pid, raw.obj), (parent_of(raw.pid), raw.obj)
        if not raw.mask & ~_WRITES and own in writing and own not in passed and not kept_anyway(raw):
            if not raw.mask & FAN_CLOSE_WRITE:
                _forget(raw)
                continue
            if raw.mask & FAN_MODIFY or (parent not in writing and parent not in passed):
                writing.discard(own)
                _forget(raw)
                continue
        passed.add(own)
        passed.add(parent)
        kept.append(raw)
    return kept


def _forget(raw: RawEvent) -> None:
    if raw.pidfd >= 0:
        os.close(raw.pidfd)
        raw.pidfd = -1
