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
from dataclasses import dataclass

from ciwatch.trace.fanotify import FAN_DELETE, FAN_ONDIR, FAN_RENAME, HandleKey, RawEvent

_DELETED = " (deleted)"


@dataclass(slots=True)
class Located:
    """An event with its paths as of when it happened (None: unresolved)."""

    raw: RawEvent
    path: str | None
    target: str | None = None
    """A rename's new path."""


def _join(directory: str | None, name: str) -> str | None:
    if directory is None:
        return None
    if not name or name == ".":
        return directory
    return directory.rstrip("/") + "/" + name


def _undo(path: str, renames: list[tuple[str, str]]) -> str:
    """``path`` before the renames (latest first), each (new, old) of a directory."""
    for new, old in renames:
        if path == new:
            path = old
        elif path.startswith(new) and path[len(new)] == "/":
            path = old + path[len(new) :]
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
        """The batch with its paths; the flag says whether every directory was resolved."""
        cache: dict[HandleKey, str | None] = {}
        renames: list[tuple[str, str]] = []
        removed: dict[HandleKey, tuple[str, int]] = {}
        """A removed directory: its path at its removal, and len(renames) then."""
        complete = True

        def directory(key: HandleKey | None) -> str | None:
            nonlocal complete
            if key is None:
                return None
            if key in removed:
                path, since = removed[key]
                return _undo(path, renames[since:])
            now = self.now(key, cache)
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
            if raw.mask & FAN_DELETE and raw.mask & FAN_ONDIR and raw.obj is not None and path is not None:
                removed[raw.obj] = (path, len(renames))
            located.append(Located(raw, path))
        located.reverse()
        self._remember(batch, located)
        return located, complete

    def _remember(self, batch: list[RawEvent], located: list[Located]) -> None:
        for raw, where in zip(batch, located, strict=True):
            if raw.directory is not None and where.path is not None and raw.name:
                parent = os.path.dirname(where.path)
                if parent:
                    self._last_known[raw.directory] = parent
        if len(self._last_known) > 100_000:  # a bound: only a fallback
            self._last_known.clear()
