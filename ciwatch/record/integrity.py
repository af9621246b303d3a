"""Is a record on disk what ciwatch wrote? (``ciwatch check`` and ``ciwatch report`` ask.)

The writer keeps a running SHA-256 of every byte it writes; each segment's closing line
(``end``, and ``after-build-end`` for what processes left running did) carries the hash of
every byte before it. Recomputing it tells a record changed afterwards (a line added, cut or
edited, by the build or anyone) from one as written. A record may go on after ``end`` only
with its second segment (``after-build`` ... ``after-build-end``); anything else there was
not written by ciwatch.

What it can't tell: a record replaced by a whole forgery whose author recomputed the hashes
(the hash is not a signature). That is why whatever the build does in ``--out`` is itself a
finding (``record-tamper``), judged from ciwatch's own copy, and why the writer puts its file
back when the path no longer names it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

from ciwatch.dataclass import dataclass, field
from ciwatch.record.reader import LARGE_LINE, MAX_LINE_BYTES, resolve_record_path
from ciwatch.record.vocabulary import EventKind

_CLOSING = (str(EventKind.END), str(EventKind.AFTER_BUILD_END))


@dataclass
class Integrity:
    changed: list[str] = field(default_factory=list)
    """How the record differs from what ciwatch wrote: empty when it doesn't (as far as the
    hashes tell)."""
    unverified: list[str] = field(default_factory=list)
    """What could not be checked (a record without hashes, a segment not closed)."""
    incomplete: list[str] = field(default_factory=list)
    """What ciwatch itself says it could not write (a full disk)."""

    @property
    def intact(self) -> bool:
        return not self.changed

    def lines(self) -> list[str]:
        """One sentence each, for the user."""
        said = [f"the record was changed after ciwatch wrote it: {why}" for why in self.changed]
        said += [f"the record is incomplete: {why}" for why in self.incomplete]
        return said + [f"the record's integrity can't be checked: {why}" for why in self.unverified]


def verify_record(path: Path) -> Integrity:
    """Recompute the record's hashes and check what follows its ``end`` line."""
    path = resolve_record_path(path)
    result = Integrity()
    running = hashlib.sha256()
    state = "first"  # then "closed" after end, "second" in the after-build segment, "done"
    closings = 0
    for number, raw in enumerate(_lines(path), start=1):
        data = _parse(raw)
        kind = data.get("kind") if data is not None else None
        if state == "done" or (state == "closed" and kind != str(EventKind.AFTER_BUILD)):
            result.changed.append(f"line {number} follows the record's last closing line")
            break
        if state == "closed":
            state = "second"
        if kind in _CLOSING and data is not None:
            closings += 1
            _check_closing(result, data, running.hexdigest(), number)
            state = "closed" if kind == str(EventKind.END) and state == "first" else "done"
        running.update(raw)
    if closings == 0:
        result.unverified.append("it has no end line (the run was cut short, or the record was cut)")
    elif state == "second":
        result.unverified.append("its second segment (processes left running) is not closed yet")
    return result


def _lines(path: Path) -> Iterator[bytes]:
    """The file's lines, each as written; one longer than the reader reads comes in pieces
    (hashed all the same): memory stays bounded whatever the file holds."""
    with path.open("rb") as stream:
        while piece := stream.readline(MAX_LINE_BYTES + 1):
            yield piece


def _parse(raw: bytes) -> dict[str, object] | None:
    if len(raw) > LARGE_LINE:
        return None  # never a closing line; parsed, garbage this long can take 25 times its size
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):  # RecursionError: nested too deep
        return None
    return data if isinstance(data, dict) else None


def _check_closing(result: Integrity, data: dict[str, object], actual: str, number: int) -> None:
    kind = data.get("kind")
    expected = data.get("record_sha256")
    if expected is None:
        result.unverified.append(f"its {kind} line (line {number}) carries no hash (written by an older ciwatch)")
    elif expected != actual:
        result.changed.append(f"the bytes before line {number} ({kind}) are not the ones ciwatch wrote")
    lost = data.get("lines_lost") if isinstance(data.get("lines_lost"), int) else 0
    if data.get("record_complete") is False or lost:
        result.incomplete.append(f"{lost} line(s) could not be written before line {number} ({kind})")
