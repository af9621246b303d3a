"""The paths of a batch of fanotify events, as they were when each event happened.

An event names a directory by its file handle and the entry by name. The handle is
resolved now (``open_by_handle_at`` and the descriptor's link in /proc), but a directory
may have been renamed since the event (npm and pip move whole trees into place) or removed.
So the batch is walked from its last event back to its first, undoing each directory rename
on the way: a path seen now under the rename's new name was, before it, under the old one.
A directory that no longer exists is named by its own removal event (its parent and name,
found the same way), which comes after every event inside it; the removal of a directory
the batch doesn't hold is looked for in the queue once more, since the kernel queued it
before the handle went stale. A handle still unresolved then falls back to the last path
known for it.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable

from ciwatch.dataclass import dataclass
from ciwatch.trace.fanotify import FAN_CREATE, FAN_DELETE, FAN_ONDIR, FAN_RENAME, HandleKey, RawEvent

_DELETED = " (deleted)"
_MAX_PASSES = 8


@dataclass(slots=True)
class Located:
    """An event with its paths as of when it happened (None: unresolved)."""

    raw: RawEvent
    path: str | None
    target: str | None = None
    """A rename's new path."""
    removed_as: str | None = None
    """An object made and removed in the batch (one merged event, queued where it was made):
    the path it had when removed, taken to be where it would be at the batch's end (builds
    remove their temporary trees last)."""


def _join(directory: str | None, name: str) -> str | None:
    if directory is None:
        return None
    if not name or name == ".":
        return directory
    return directory.rstrip("/") + "/" + name


def _move(path: str, source: str, destination: str) -> str:
    if path == source:
        return destination
    if path.startswith(source) and path[len(source)] == "/":
        return destination + path[len(source) :]
    return path


def _undo(path: str, renames: list[tuple[str, str]]) -> str:
    """``path`` before the renames (latest first), each (new, old) of a directory."""
    for new, old in renames:
        path = _move(path, new, old)
    return path


def _redo(path: str, renames: list[tuple[str, str]]) -> str:
    """``path`` after the renames (latest first): where it would be now, had it not gone."""
    for new, old in reversed(renames):
        path = _move(path, old, new)
    return path


class PathResolver:
    """Resolves handles through ``open_handle`` (an O_PATH fd or -1); remembers the last path
    of each handle across batches for the ones gone before they could be resolved."""

    def __init__(self, open_handle: Callable[[HandleKey], int]) -> None:
        self._open_handle = open_handle
        self._last_known: dict[HandleKey, str] = {}

    def now(self, key: HandleKey, cache: dict[HandleKey, str | None]) -> str | None:
        if key in cache:
            return cache[key]
        path: str | None = None
        fd = self._open_handle(key)
        if fd >= 0:
            with contextlib.suppress(OSError):
                link = os.readlink(f"/proc/self/fd/{fd}")
                if link.startswith("/") and not link.endswith(_DELETED):
                    path = link
            os.close(fd)
        cache[key] = path
        return path

    def locate(self, batch: list[RawEvent]) -> tuple[list[Located], bool]:
        """The batch with its paths; the flag says whether every directory was resolved.

        The kernel merges an event into an identical one still queued (same process, same
        directory, name and object), wherever that one is: a directory made and removed
        between two reads is one CREATE|DELETE event, queued before the events inside it.
        So another pass names such directories from the removals the one before found (one
        more pass per level of directories made and removed inside each other)."""
        cache: dict[HandleKey, str | None] = {}
        known: dict[HandleKey, str] = {}
        for _ in range(_MAX_PASSES):
            located, complete, removed = self._walk(batch, cache, known)
            if complete or removed.keys() <= known.keys():
                break
            known.update(removed)
        self._remember(batch, located)
        return located, complete

    def _walk(
        self,
        batch: list[RawEvent],
        cache: dict[HandleKey, str | None],
        removed_later: dict[HandleKey, str],
    ) -> tuple[list[Located], bool, dict[HandleKey, str]]:
        renames: list[tuple[str, str]] = []
        removed: dict[HandleKey, str] = {}
        """A removed directory: where it would be now (its path then, moved by the renames
        since), so that it is found like one that still exists."""
        complete = True

        def directory(key: HandleKey | None) -> str | None:
            nonlocal complete
            if key is None:
                return None
            now = removed.get(key) or self.now(key, cache) or removed_later.get(key)
            if now is None:
                complete = False
                last = self._last_known.get(key)
                return _undo(last, renames) if last is not None else None
            return _undo(now, renames)

        located: list[Located] = []
        for raw in reversed(batch):
            if raw.mask & FAN_RENAME:
                old = _join(directory(raw.old_directory), raw.old_name)
                new = _join(directory(raw.new_directory), raw.new_name)
                if raw.mask & FAN_ONDIR and old is not None and new is not None:
                    renames.append((new, old))
                located.append(Located(raw, old, new))
                continue
            path = _join(directory(raw.directory), raw.name)
            removed_as = None
            if raw.mask & FAN_DELETE and path is not None:
                if raw.mask & FAN_ONDIR and raw.obj is not None:
                    removed[raw.obj] = _redo(path, renames)
                if raw.mask & FAN_CREATE:
                    removed_as = _redo(path, renames)
            located.append(Located(raw, path, removed_as=removed_as))
        located.reverse()
        return located, complete, removed

    def _remember(self, batch: list[RawEvent], located: list[Located]) -> None:
        seen: set[HandleKey] = set()
        for raw, where in zip(batch, located, strict=True):
            if raw.directory is None or raw.directory in seen:
                continue
            seen.add(raw.directory)
            if where.path is not None and raw.name:
                parent = os.path.dirname(where.path)
                if parent:
                    self._last_known[raw.directory] = parent
        if len(self._last_known) > 100_000:  # a bound: only a fallback
            self._last_known.clear()
