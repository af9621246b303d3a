"""What the tracer does with the file syscalls the table decodes: writes recorded and the
paths written remembered (after renames) so that executables among them can be hashed;
opens for reading (which only a hook's processes stop at) recorded when of a credential."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable

from ciwatch.facts.paths import is_credential_path
from ciwatch.record.events import Event, FileHash, FileRead, FileWrite
from ciwatch.record.vocabulary import FileOp, ReadHow
from ciwatch.trace.executables import FileState, PlainState, inspect_executable, plain_state
from ciwatch.trace.table import WRITE_OPEN_FLAGS
from ciwatch.trace.tasks import TracedThread

#: At most this many files remembered as not executables (some 270 bytes each).
_PLAIN_LIMIT = 50_000


class FileWatch:
    def __init__(self, home: str, emit: Callable[[Event], None]) -> None:
        self._home = home
        self._emit = emit
        self.written: dict[str, int] = {}
        """Paths written during the run (after renames), with the pid that wrote them last."""
        self._hashed: dict[str, FileState] = {}
        """Executables hashed, with the state of the file their hash was read from."""
        self._plain: set[PlainState] = set()
        """Files found not to be executables when closed after writing (fanotify), as they were
        then: one still so at the end of the run needn't be opened and read again."""

    def on_file(self, thread: TracedThread, event: FileWrite) -> None:
        if event.op is FileOp.OPEN and not (event.flags or 0) & WRITE_OPEN_FLAGS:
            # Only a hook's processes stop at read-only opens (the hook filter).
            self.on_read(thread, event)
            return
        self.record_write(thread.tgid, event)

    def record_write(self, pid: int, event: FileWrite) -> None:
        """Record a write (from a stop or from fanotify) and follow the paths written."""
        op, path = event.op, event.path
        self._emit(event)
        match op:
            case FileOp.OPEN | FileOp.CREAT | FileOp.CHMOD:
                self.written[path] = pid
            case FileOp.RENAME | FileOp.LINK if event.target is not None:
                if path in self.written:
                    self.written[event.target] = pid
                    if op is FileOp.RENAME:
                        del self.written[path]
            case FileOp.UNLINK:
                self.written.pop(path, None)
            case _:
                pass

    def on_read(self, thread: TracedThread, event: FileWrite) -> None:
        """An open seen as a read: recorded only when it is of a credential file."""
        self.record_read(thread.tgid, event.path, event.as_written)

    def record_read(self, pid: int, path: str, as_written: str | None = None) -> None:
        if is_credential_path(path, self._home, pid):
            self._emit(FileRead(pid=pid, path=path, how=ReadHow.OPEN, as_written=as_written))

    def hash_written(self, path: str) -> None:
        """Record the digest of a written file, if it is an executable or a script (when it
        is run, and at the end of the run)."""
        if self._plain:
            try:
                if plain_state(os.stat(path)) in self._plain:
                    return  # not an executable when closed, and unchanged since
            except OSError:
                return  # gone: nothing to hash
        found = self.hash_of(path, self.written.get(path, 0))
        if found is not None:
            self._emit(found)

    def record_hash(self, found: FileHash) -> None:
        self._emit(found)

    def hash_of(self, path: str | Callable[[], str], written_by: int, fd: int | None = None) -> FileHash | None:
        """The digest event of a written executable or script (read from ``fd`` if given: a
        file fanotify reports closed after writing, whose path is asked for only if it is an
        executable), or None: not one, or hashed already in the state it is in now."""
        info = None
        if fd is not None:
            try:
                info = os.fstat(fd)
            except OSError:
                return None
        found = inspect_executable(path if isinstance(path, str) else "", fd, info)
        if found is None:
            if info is not None and stat.S_ISREG(info.st_mode):
                if len(self._plain) >= _PLAIN_LIMIT:  # only saves work: forgetting is safe
                    self._plain.clear()
                self._plain.add(plain_state(info))
            return None
        executable, state = found
        if not isinstance(path, str):
            path = path()
            written_by = self.written.get(path, written_by)  # its writer, not whoever closed it last
        if self._hashed.get(path) == state:
            return None
        self._hashed[path] = state
        return FileHash(
            path=path,
            sha256=executable.sha256,
            size=executable.size,
            mode=executable.mode,
            file_type=executable.file_type,
            written_by=written_by,
        )
