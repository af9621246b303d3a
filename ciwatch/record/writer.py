"""Append-only JSONL writer: one event a line, written through to the file as it happens.

Each line goes out with a single ``write(2)`` on an ``O_APPEND`` descriptor, so a build or a
ciwatch killed at any moment leaves every line written so far readable; only an ``end``
line says that the run finished cleanly.
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from pathlib import Path

from ciwatch.record.events import Event, EventKind, to_json_dict

RECORD_FILE = "record.jsonl"


class RecordWriter:
    def __init__(self, path: Path, job_key: str) -> None:
        self.path = path
        self.job_key = job_key
        self.counts: Counter[str] = Counter()
        self._seq = 0
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND | os.O_CLOEXEC, 0o644)

    def append(self, event: Event) -> int:
        """Write one event; returns its sequence number."""
        self._seq += 1
        line = {"seq": self._seq, "t": round(time.time(), 6), "job": self.job_key}
        line.update(to_json_dict(event))
        # ensure_ascii keeps lone surrogates (undecodable bytes) as \udcXX escapes.
        data = (json.dumps(line, separators=(",", ":")) + "\n").encode("ascii")
        os.write(self._fd, data)
        if event.kind not in (EventKind.HEADER, EventKind.END):
            self.counts[str(event.kind)] += 1
        return self._seq

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
