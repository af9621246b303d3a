"""record-tamper: the build touched ciwatch's ``--out`` directory (its record, its verdict):
opened something there for writing, truncated, renamed, removed, linked or chmodded it.

ciwatch writes its record through a descriptor of its own and never traces itself, so every
write-like syscall on a path under ``--out`` in the record is the build's. Paths are canonical
(the tracer resolves aliases and links), and so is the header's ``out_dir``: every spelling of
the record is caught. A rename or link counts by either end: moving a forged file in is
tampering as much as moving the record out."""

from __future__ import annotations

import os
from collections.abc import Iterator

from ciwatch.policy.model import Severity
from ciwatch.record.events import FileWrite
from ciwatch.record.vocabulary import FileOp
from ciwatch.rules.base import Finding, RuleContext, RuleInfo

INFO = RuleInfo(
    id="record-tamper",
    summary="The build wrote, truncated, renamed or removed something in ciwatch's --out directory (its record)",
    default_severity=Severity.HIGH,
    hint="Nothing in a build has a reason to touch ciwatch's record: treat the step as compromised, and keep "
    "--out outside every directory the build writes (a build that cleans its whole workspace removes it too).",
)

#: Every operation on a named file (a memfd has no path in --out).
_NAMED = frozenset(FileOp) - {FileOp.MEMFD}
_O_TRUNC = 0o1000
_O_APPEND = 0o2000

_VERBS = {
    FileOp.CREAT: "created or truncated",
    FileOp.RENAME: "renamed",
    FileOp.LINK: "made a hard link of",
    FileOp.SYMLINK: "made a symlink at",
    FileOp.CHMOD: "changed the mode of",
    FileOp.UNLINK: "removed",
    FileOp.TRUNCATE: "truncated",
}


def _under(path: str | None, directory: str) -> bool:
    return path is not None and (path == directory or path.startswith(directory.rstrip("/") + "/"))


def _verb(event: FileWrite) -> str:
    if event.op is FileOp.OPEN:
        flags = event.flags or 0
        if flags & _O_TRUNC:
            return "truncated"
        return "appended to" if flags & _O_APPEND else "opened for writing"
    return _VERBS.get(event.op, str(event.op))


class RecordTamper:
    info = INFO

    def check(self, context: RuleContext) -> Iterator[Finding]:
        out_dir = context.record.header.out_dir
        if not out_dir:
            return  # a record from before the header named it
        out_dir = os.path.normpath(out_dir)
        # Only the writes that touch --out are made into events (a build writes a million files).
        for seq, event in context.record.events.file_writes(_NAMED, touching=lambda path: _under(path, out_dir)):
            target = event.target if event.op in (FileOp.RENAME, FileOp.LINK) else None
            if not (_under(event.path, out_dir) or _under(target, out_dir)):
                continue
            node = context.tree.node_at(seq)
            who = node.hook.label if node is not None and node.hook is not None else f"pid {event.pid}"
            what = f"{event.path} as {target}" if target else event.path
            message = f"{who} {_verb(event)} {what}, in ciwatch's --out: the record may not be what ciwatch wrote"
            yield context.finding(INFO, message, node, [seq])
