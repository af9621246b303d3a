"""Append-only JSONL writer: one event a line, written through to the file as it happens.

Lines go out whole on an ``O_APPEND`` descriptor, so a build or a ciwatch killed at any
moment leaves every line written so far readable; only an ``end`` line says that the run
finished cleanly. The tracer's lines are written in batches, at the latest whenever the
tracer waits for the build: a ciwatch killed mid-burst loses at most that burst.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections import Counter
from pathlib import Path

from ciwatch.record.codec import to_json_dict
from ciwatch.record.events import Event
from ciwatch.record.vocabulary import EventKind

RECORD_FILE = "record.jsonl"
#: The lines that frame a segment rather than say what the build did: not counted.
_FRAMING = frozenset({EventKind.HEADER, EventKind.END, EventKind.AFTER_BUILD, EventKind.AFTER_BUILD_END})
#: Bytes of record lines the tracer's thread may hold before it writes them.
_FLUSH_AT = 64 * 1024


class RecordWriter:
    def __init__(self, path: Path, job_key: str) -> None:
        self.path = path
        self.job_key = job_key
        self.counts: Counter[str] = Counter()
        self._seq = 0
        # The tracer (main thread) and the proxy (its own thread) both append.
        self._lock = threading.Lock()
        self._fd = os.open(
            path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND | os.O_CLOEXEC | os.O_NOFOLLOW, 0o644
        )
        self._owner = threading.get_ident()
        self.kept: list[tuple[int, float, Event]] = []
        """Every event as written, so the run can be judged without reading the file back."""
        self._buffer: list[bytes] = []
        self._buffered = 0

    def append(self, event: Event) -> int:
        """Write one event; returns its sequence number."""
        fields = to_json_dict(event)
        with self._lock:
            self._seq += 1
            now = round(time.time(), 6)
            line = {"seq": self._seq, "t": now, "job": self.job_key, **fields}
            if self._fd >= 0:
                self.kept.append((self._seq, now, event))
            # ensure_ascii keeps lone surrogates (undecodable bytes) as \udcXX escapes.
            data = (json.dumps(line, separators=(",", ":")) + "\n").encode("ascii")
            if self._fd >= 0:
                # The tracer's thread batches its lines while stops come back to back and
                # writes them before it waits (``flush``); every other thread writes through.
                self._buffer.append(data)
                self._buffered += len(data)
                if threading.get_ident() != self._owner or self._buffered >= _FLUSH_AT:
                    self._write_buffer()
            if event.kind not in _FRAMING:
                self.counts[str(event.kind)] += 1
            return self._seq

    def flush(self) -> None:
        with self._lock:
            self._write_buffer()

    def _write_buffer(self) -> None:
        if self._buffer and self._fd >= 0:
            data = b"".join(self._buffer)
            view = memoryview(data)
            while view:
                view = view[os.write(self._fd, view) :]
        self._buffer.clear()
        self._buffered = 0

    @property
    def closed(self) -> bool:
        return self._fd < 0

    def reopen(self) -> None:
        """Append again after ``close``: the second segment (what processes left running do
        after the ``end`` line) goes on with the same sequence numbers and counts afresh."""
        with self._lock:
            if self._fd < 0:
                self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC | os.O_NOFOLLOW)
                self.counts.clear()

    def close(self) -> None:
        with self._lock:
            self._write_buffer()
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1
