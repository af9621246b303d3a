"""The fanotify groups whose events carry a descriptor (no file handles): the kernel opens the
file of each event for ciwatch, and the event holds that file from the moment it is queued.

- :class:`ClosedFiles`: closes after writing on every marked filesystem, so an executable is
  hashed as it was closed, even when it is removed or replaced before the queue is read.
- :class:`HookReads`: what a hook's reads of credentials need, and no more. Opens in /proc
  (which has no file handles), while a hook runs. And opens of the credential files and of the
  directories that hold them, by inode marks: only those opens are events, whatever path a
  process opens them by, instead of every open on the machine while a hook runs.
"""

from __future__ import annotations

import ctypes
import logging
import os
import stat
from collections.abc import Callable, Iterable

from ciwatch.facts.paths import credential_prefixes, is_credential_path
from ciwatch.trace.fanotify import (
    AT_FDCWD,
    FAN_CLOEXEC,
    FAN_CLOSE_WRITE,
    FAN_MARK_ADD,
    FAN_MARK_FILESYSTEM,
    FAN_MARK_REMOVE,
    FAN_NONBLOCK,
    FAN_OPEN,
    FAN_UNLIMITED_QUEUE,
    METADATA,
    libc,
)

log = logging.getLogger(__name__)

FAN_EVENT_ON_CHILD = 0x08000000
#: One read: each event in it brings a descriptor into this process until it is handled.
_READ_SIZE = METADATA.size * 64
#: Events whose file the kernel could no longer open (its process gone), skipped in one read.
_OPEN_FAILURES = 10_000


def _open_group() -> int:
    flags = FAN_CLOEXEC | FAN_NONBLOCK | FAN_UNLIMITED_QUEUE  # FAN_CLASS_NOTIF is 0
    # O_NONBLOCK: the kernel opening a fifo for an event must not wait for a writer.
    fd = libc.fanotify_init(flags, os.O_RDONLY | os.O_LARGEFILE | os.O_NONBLOCK | os.O_CLOEXEC)
    if fd < 0:
        code = ctypes.get_errno()
        raise OSError(code, f"fanotify_init: {os.strerror(code)}")
    return int(fd)


def _read(fd: int, each: Callable[[int, int], None]) -> None:
    """``each(pid, descriptor)`` for every event queued now; each descriptor closed after."""
    failures = 0
    while True:
        try:
            data = os.read(fd, _READ_SIZE)
        except BlockingIOError:
            return
        except OSError as error:  # the event at the head of the queue is dropped, not the rest
            failures += 1
            if failures > _OPEN_FAILURES:
                log.debug("fanotify: %s", error)
                return
            continue
        if not data:
            return
        offset = 0
        while offset + METADATA.size <= len(data):
            event_len, _v, _r, _m, _mask, event_fd, pid = METADATA.unpack_from(data, offset)
            offset += max(event_len, METADATA.size)
            if event_fd < 0:
                continue
            try:
                each(pid, event_fd)
            except OSError:
                pass
            finally:
                os.close(event_fd)


def path_of(fd: int) -> str:
    """The path of an event's file, as the kernel names it now (a removed one by its last name)."""
    return os.readlink(f"/proc/self/fd/{fd}").removesuffix(" (deleted)")


class ClosedFiles:
    """Closes after writing on the given filesystems (those the writes' group marked)."""

    def __init__(self, mounts: Iterable[str]) -> None:
        self.fd = _open_group()
        self.mark(mounts)

    def mark(self, mounts: Iterable[str]) -> None:
        for point in mounts:
            how = FAN_MARK_ADD | FAN_MARK_FILESYSTEM
            if libc.fanotify_mark(self.fd, how, FAN_CLOSE_WRITE, AT_FDCWD, os.fsencode(point)):
                log.debug("fanotify: cannot mark %s for closes: %s", point, os.strerror(ctypes.get_errno()))

    def read(self, wanted: Callable[[int], bool], each: Callable[[int, int], None]) -> None:
        """``each(pid, descriptor)`` for every close queued now by a process ``wanted`` says
        matters (:func:`path_of` names the file: only worth it for an executable)."""
        _read(self.fd, lambda pid, fd: each(pid, fd) if wanted(pid) else None)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class HookReads:
    """Opens of credentials: in /proc while ``watch(True)``, and of ``places`` (files, and
    directories standing for the files made in them) for the whole run."""

    def __init__(self, home: str, places: Iterable[str]) -> None:
        self.fd = _open_group()
        self._home = home
        self._prefixes = tuple(prefix for prefix in credential_prefixes(home) if not prefix.startswith("/proc/"))
        """What every credential path outside /proc starts with: ``made`` is asked of every file
        the build creates (npm creates thousands), and matching each against every credential
        pattern cost the tracer more than the rest of the event's handling."""
        self._files: dict[tuple[int, int], str] = {}
        """(device, inode) of each credential file marked: its path, whatever name it is
        opened by (a hard link, a bind mount, /proc/self/root/...)."""
        try:
            self.watch(True)  # proves the mark can be made, before the build starts
        except OSError:
            self.close()
            raise
        self.watch(False)
        for path in places:
            self.mark(path)

    def mark(self, path: str) -> None:
        """Watch opens of a credential file, or of the files in a directory of them."""
        try:
            info = os.stat(path)
        except OSError:
            return
        mask = FAN_OPEN | (FAN_EVENT_ON_CHILD if stat.S_ISDIR(info.st_mode) else 0)
        if libc.fanotify_mark(self.fd, FAN_MARK_ADD, mask, AT_FDCWD, os.fsencode(path)):
            log.debug("fanotify: cannot mark %s: %s", path, os.strerror(ctypes.get_errno()))
            return
        if stat.S_ISREG(info.st_mode):
            self._files[(info.st_dev, info.st_ino)] = path

    def made(self, path: str) -> None:
        """A file made or moved into place during the run: watched if it is a credential."""
        if path.startswith(self._prefixes) and is_credential_path(path, self._home):
            self.mark(path)

    def watch(self, on: bool) -> None:
        """Mark /proc for open events (while a hook runs), or no longer."""
        how = FAN_MARK_ADD if on else FAN_MARK_REMOVE
        if libc.fanotify_mark(self.fd, how | FAN_MARK_FILESYSTEM, FAN_OPEN, AT_FDCWD, b"/proc"):
            code = ctypes.get_errno()
            if on:
                raise OSError(code, f"fanotify_mark /proc: {os.strerror(code)}")

    def read(self, wanted: Callable[[int], bool]) -> list[tuple[int, str, str | None]]:
        """(pid, path, the path it was opened by if another) of every open queued now by a
        process ``wanted`` says matters."""
        opens: list[tuple[int, str, str | None]] = []

        def one(pid: int, fd: int) -> None:
            if not wanted(pid):
                return
            opened_as = path_of(fd)
            info = os.fstat(fd)
            path = self._files.get((info.st_dev, info.st_ino), opened_as)
            opens.append((pid, path, opened_as if path != opened_as else None))

        _read(self.fd, one)
        return opens

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
