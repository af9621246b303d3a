"""The compiled stop loop (``ciwatch/trace/_stoploop.c``) and the Python side of its batches.

In ptrace mode most of a build's stops are file writes that need no judgement at the stop:
the compiled loop waits, reads what the row's decoder will ask of the stopped tracee (its
syscall info, path strings, the cwd or dirfd link, the path made canonical), resumes it at
once and goes on waiting; it comes back to Python with a batch of such stops and the first
stop it does not handle. Each batched stop is then decoded by the table's own decoder over a
:class:`Snapshot` of what was read, and handled by the same handler as a stop decoded live:
there is one decoder of what a syscall means. A hook's read-only open of a path that can't be
a credential (``credential_prefixes``) needs no decoding at all: it is resumed and counted in C.

Without the extension (not built: no compiler when installed), or with
``CIWATCH_STOP_LOOP=python``, the tracer keeps its Python loop; ``ciwatch doctor`` says which.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from types import ModuleType
from typing import Any, Protocol

from ciwatch.facts.paths import credential_prefixes
from ciwatch.fields import field_names
from ciwatch.record.events import FileWrite
from ciwatch.record.sharing import shared_int
from ciwatch.record.vocabulary import FileOp
from ciwatch.trace.fanwatch import FanWatch
from ciwatch.trace.idlewait import TRACEE_WAIT
from ciwatch.trace.table import TABLE, WRITE_OPEN_FLAGS, Action, Decoder, When
from ciwatch.trace.tasks import TracedThread

log = logging.getLogger(__name__)

_stoploop: ModuleType | None
try:
    from ciwatch.trace import _stoploop  # type: ignore[attr-defined,no-redef]
except ImportError:  # not built: the Python loop
    _stoploop = None

#: Stops read and resumed in C before Python decodes them (bounds the events held back).
BATCH_LIMIT = 256
#: How long the build may be quiet before the compiled loop, holding a batch, hands it to
#: Python (which writes the record before it waits): a build making one syscall at a time stops
#: again within tens of microseconds, and a batch of one cost more than the stop.
HOLD_NS = int(os.environ.get("CIWATCH_STOP_HOLD_US", "2000")) * 1000

# What a row's decoder reads, as the compiled loop takes it: (kind, a, b, follow, flag_arg).
_PATH, _STRING, _FD = 1, 2, 3
_NEVER, _ALWAYS, _OPEN_FLAGS, _AT_FLAG = 0, 1, 2, 3
_CWD = -1
"""A path's dirfd argument when the syscall has none: relative to the cwd (AT_FDCWD)."""

_Read = tuple[int, int, int, int, int]


def _path(dirfd_arg: int, address_arg: int, follow: int = _NEVER, flag_arg: int = 0) -> _Read:
    """A path argument, canonicalised (decode.canonical_at): when the last component is followed
    is the decoder's rule, restated so the loop can resolve the path before the tracee runs on."""
    return (_PATH, dirfd_arg, address_arg, follow, flag_arg)


def _string(address_arg: int) -> _Read:
    return (_STRING, 0, address_arg, _NEVER, 0)


def _fd(fd_arg: int) -> _Read:
    return (_FD, fd_arg, 0, _NEVER, 0)


#: The reads of each file row's decoder (ciwatch.trace.decode.files). A row missing here
#: (openat2: its flags are in memory) stops into Python as before. If a decoder asks the
#: snapshot for something not read, the tracee has already run on: it is answered live and
#: logged as an error (tests/test_stoploop.py compares both loops' records to catch it).
READS: dict[str, tuple[_Read, ...]] = {
    "creat": (_path(_CWD, 0, _ALWAYS),),
    "open": (_path(_CWD, 0, _OPEN_FLAGS, 1),),
    "openat": (_path(0, 1, _OPEN_FLAGS, 2),),
    "rename": (_path(_CWD, 0), _path(_CWD, 1)),
    "renameat": (_path(0, 1), _path(2, 3)),
    "renameat2": (_path(0, 1), _path(2, 3)),
    "link": (_path(_CWD, 0), _path(_CWD, 1)),
    "linkat": (_path(0, 1, _AT_FLAG, 4), _path(2, 3)),
    "symlink": (_string(0), _path(_CWD, 1)),
    "symlinkat": (_string(0), _path(1, 2)),
    "chmod": (_path(_CWD, 0, _ALWAYS),),
    "fchmod": (_fd(0),),
    "fchmodat": (_path(0, 1, _ALWAYS),),
    "fchmodat2": (_path(0, 1, _ALWAYS),),
    "unlink": (_path(_CWD, 0),),
    "unlinkat": (_path(0, 1),),
    "truncate": (_path(_CWD, 0, _ALWAYS),),
    "memfd_create": (_string(0),),
}


# How the loop builds a row's FileWrite itself once its reads are settled (_stopdecode.c, the
# twin of the row's decoder in ciwatch.trace.decode.files): which read is what, and the flags.
_ONE, _TWO, _SYMLINK, _FD_PATH, _MEMFD = 0, 1, 2, 3, 4
"""The shapes: the path (READS[0]); path and target (a rename's, a link's two ends); a symlink
(its target text, then the link's path); an fd's link (fchmod); a memfd's name."""
_NO_FLAGS = -1
_MASK32, _MODE = 0xFFFFFFFF, 0o7777

#: (op, shape, the flags' argument, its mask) of each row in READS (tests/test_stoploop.py
#: holds them to the decoders).
DECODED: dict[str, tuple[FileOp, int, int, int]] = {
    "creat": (FileOp.CREAT, _ONE, 1, _MODE),
    "open": (FileOp.OPEN, _ONE, 1, _MASK32),
    "openat": (FileOp.OPEN, _ONE, 2, _MASK32),
    "rename": (FileOp.RENAME, _TWO, _NO_FLAGS, 0),
    "renameat": (FileOp.RENAME, _TWO, _NO_FLAGS, 0),
    "renameat2": (FileOp.RENAME, _TWO, _NO_FLAGS, 0),
    "link": (FileOp.LINK, _TWO, _NO_FLAGS, 0),
    "linkat": (FileOp.LINK, _TWO, _NO_FLAGS, 0),
    "symlink": (FileOp.SYMLINK, _SYMLINK, _NO_FLAGS, 0),
    "symlinkat": (FileOp.SYMLINK, _SYMLINK, _NO_FLAGS, 0),
    "chmod": (FileOp.CHMOD, _ONE, 1, _MODE),
    "fchmod": (FileOp.CHMOD, _FD_PATH, 1, _MODE),
    "fchmodat": (FileOp.CHMOD, _ONE, 2, _MODE),
    "fchmodat2": (FileOp.CHMOD, _ONE, 2, _MODE),
    "unlink": (FileOp.UNLINK, _ONE, _NO_FLAGS, 0),
    "unlinkat": (FileOp.UNLINK, _ONE, 2, _MASK32),
    "truncate": (FileOp.TRUNCATE, _ONE, _NO_FLAGS, 0),
    "memfd_create": (FileOp.MEMFD, _MEMFD, 1, _MASK32),
}


def decoding() -> tuple[dict[int, tuple[FileOp, int, int, int]], type, tuple[Any, ...], Callable[[int], int]]:
    """What the loop needs to build the FileWrite of a decoded row: the rows by number, the
    class and its fields' slot descriptors in order, and the int sharing its __post_init__ does."""
    rows = {row.number: DECODED[row.name] for row in TABLE if row.action is Action.FILE and row.name in DECODED}
    setters = tuple(getattr(FileWrite, name) for name in field_names(FileWrite))
    return rows, FileWrite, setters, shared_int


_COMPILED = "compiled (write stops, and a hook's reads that can't be of credentials, are resumed in C)"


def compiled_loop_state() -> str:
    """What ``ciwatch doctor`` reports: which loop ptrace-mode runs use, and why."""
    if os.environ.get("CIWATCH_STOP_LOOP") == "python":
        return "python (CIWATCH_STOP_LOOP=python)"
    if _stoploop is None:
        return "python (the compiled stop loop was not built: reinstall with a C compiler)"
    return _COMPILED


class Snapshot:
    """A :class:`ciwatch.trace.decode.MemoryReader` over what the compiled loop read from a
    stopped tracee that has since run on."""

    __slots__ = ("_canonical", "_cwd", "_fds", "_strings", "_thread")

    def __init__(self, thread: TracedThread, item: tuple[Any, ...]) -> None:
        # Strings, fd links and paths as the loop read them: path text already decoded as
        # os.fsdecode would, the bytes of a string as the decoder's string() decodes them.
        _, _, _, strings, cwd, fds, canonical = item
        self._thread = thread
        self._strings: list[tuple[int, bytes]] = strings
        self._cwd: str | None = cwd
        self._fds: list[tuple[int, str]] = fds
        self._canonical: list[tuple[tuple[str, bool], str]] = canonical

    def _missed(self, what: str) -> None:
        log.error("stop loop: %s was not read before tid %d ran on (ciwatch.trace.batch.READS)", what, self._thread.tid)

    def read_cstring(self, address: int) -> bytes:
        for read_at, text in self._strings:  # one or two: a list beats a dict here
            if read_at == address:
                return text
        self._missed(f"the string at {address:#x}")
        return self._thread.memory.read_cstring(address)

    def read_bytes(self, address: int, size: int) -> bytes:
        self._missed("memory")
        return self._thread.memory.read_bytes(address, size)

    def read_u64(self, address: int) -> int | None:
        self._missed("memory")
        return self._thread.memory.read_u64(address)

    def write_bytes(self, address: int, data: bytes) -> bool:
        self._missed("a write")
        return False

    def cwd(self) -> str:
        if self._cwd is None:
            self._missed("the cwd")
            return self._thread.memory.cwd()
        return self._cwd

    def fd_path(self, fd: int) -> str:
        for number, link in self._fds:
            if number == fd:
                return link
        self._missed(f"fd {fd}")
        return self._thread.memory.fd_path(fd)

    def canonical(self, path: str, follow: bool) -> str:
        for asked, found in self._canonical:
            if asked == (path, follow):
                return found
        self._missed(f"the resolution of {path!r}")
        return self._thread.memory.canonical(path, follow)


Handler = Callable[[TracedThread, Any], None]


class StopWaiter(Protocol):
    reads_judged_in_loop: int
    """A hook's read-only opens resumed without reaching Python (no credential can be read)."""

    def next_stop(self, idle: Callable[[], None]) -> tuple[int, int, int]:
        """Wait for the next stop that needs the tracer: its tid and wait status, and how many
        stops were handled on the way. Raises ChildProcessError when no tracee is left;
        ``idle`` is called before blocking."""
        ...


class PythonWait:
    """The tracer's wait without the compiled loop: every stop goes to Python."""

    def __init__(self, fan: FanWatch | None) -> None:
        self._fan = fan
        self.reads_judged_in_loop = 0

    def next_stop(self, idle: Callable[[], None]) -> tuple[int, int, int]:
        tid, status = os.waitpid(-1, TRACEE_WAIT | os.WNOHANG)
        if tid == 0:
            idle()
            tid, status = self._fan.wait(idle) if self._fan else os.waitpid(-1, TRACEE_WAIT)
        return tid, status, 0


def read_open_flag_args() -> dict[int, int]:
    """The fast rows that the hook filter stops at whatever their flags (open, openat), with
    the argument that holds the flags the base filter tests: with none of WRITE_OPEN_FLAGS the
    open is a read, which FileWatch.on_read records only for a credential."""
    return {
        row.number: row.arg
        for row in TABLE
        if row.hook and row.when is When.WRITE_FLAGS and row.action is Action.FILE and row.name in READS
    }


class CompiledLoop:
    """The tracer's wait, through the compiled loop: batched stops decoded and handled here,
    the first other stop handed back to the tracer unresumed.

    A hook's read-only open of a path that no credential pattern can match (it starts with none
    of ``credential_prefixes(home)``) is resumed in C and never built into a Python object: on
    apt, man-db's trigger makes tens of thousands of them. ``reads_judged_in_loop`` counts them."""

    def __init__(
        self, entries: Mapping[int, tuple[Decoder, Handler]], threads: dict[int, TracedThread], home: str
    ) -> None:
        self._entries = entries
        self._threads = threads
        self._rows: dict[int, tuple[_Read, ...]] = {
            row.number: READS[row.name] for row in TABLE if row.action is Action.FILE and row.name in READS
        }
        self._read_opens = read_open_flag_args()
        self._credential_prefixes = tuple(os.fsencode(prefix) for prefix in credential_prefixes(home))
        self._decoding = decoding()
        self.reads_judged_in_loop = 0

    @staticmethod
    def open(
        entries: Mapping[int, tuple[Decoder, Handler]], threads: dict[int, TracedThread], home: str
    ) -> CompiledLoop | None:
        """The compiled loop, or None for the Python one (not built, or not wanted)."""
        return CompiledLoop(entries, threads, home) if compiled_loop_state() == _COMPILED else None

    def next_stop(self, idle: Callable[[], None]) -> tuple[int, int, int]:
        assert _stoploop is not None
        handled = 0
        block = False  # a first look without blocking: idle() only when nothing is waiting
        while True:
            batch, tid, status, judged = _stoploop.next_batch(
                self._rows,
                self._threads,
                BATCH_LIMIT,
                block,
                self._read_opens,
                WRITE_OPEN_FLAGS,
                self._credential_prefixes,
                HOLD_NS,
                self._decoding,
            )
            handled += judged
            self.reads_judged_in_loop += judged
            if batch:
                handled += len(batch)
                self._handle(batch)
            if tid > 0:
                return tid, status, handled
            if tid < 0:
                raise ChildProcessError
            idle()  # nothing waiting: record what was gathered before blocking
            block = True

    def _handle(self, batch: list[tuple[Any, ...]]) -> None:
        threads, entries = self._threads, self._entries
        for item in batch:
            thread = threads[item[0]]
            decode, handle = entries[item[1]]
            if len(item) == 3:  # (tid, number, the FileWrite the loop built)
                handle(thread, item[2])
            else:
                handle(thread, decode(thread.tgid, item[2], Snapshot(thread, item)))
