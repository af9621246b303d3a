"""Executables and scripts written during a run, as a report lists them: ELF files and ``#!``
scripts. A file with only an execute bit (a tarball's 0755 LICENSE) runs nothing, and git's
sample hooks are never run under that name: they are counted, not listed (the record keeps
their hashes)."""

from __future__ import annotations

import fnmatch
from collections.abc import Callable

from ciwatch.analysis.tree import ProcessNode, ProcessTree
from ciwatch.dataclass import dataclass, field
from ciwatch.record.events import FileHash
from ciwatch.record.reader import Record
from ciwatch.record.vocabulary import FileOp

#: Files a tool writes with ``#!`` that nothing runs: git copies its sample hooks into every
#: repository it creates, and runs a hook only once it is renamed without ``.sample``.
_INERT_SCRIPTS = ("*/hooks/*.sample",)


@dataclass(frozen=True)
class ExecutableItem:
    path: str
    file_type: str
    """``elf`` or ``script`` (``#!``)."""
    sha256: str
    size: int
    written_by: str
    """The writer's lineage (``npm ci > postinstall of pkg@1.0.0 > sh -c``)."""
    hook: str | None


@dataclass(frozen=True)
class Executables:
    files: list[ExecutableItem] = field(default_factory=list)
    mode_only: int = 0
    """Files with an execute bit that are neither ELF nor ``#!`` (a tarball's 0755 LICENSE):
    not listed (the record keeps them)."""
    inert_scripts: int = 0
    """Scripts nothing runs (git's ``hooks/*.sample``): not listed."""


def executables_written(record: Record, tree: ProcessTree, keeps: Callable[[ProcessNode | None], bool]) -> Executables:
    """ELF files and ``#!`` scripts written during the run, those whose writer ``keeps`` keeps."""
    # Only the writes of hashed paths: a build writes hundreds of thousands of files, a few executables.
    hashed = list(record.events.of(FileHash))
    paths = {event.path for _, event in hashed}
    last_write: dict[str, int] = {}
    for seq, write in record.events.file_writes(touching=paths.__contains__):
        if write.op is FileOp.SYMLINK:
            continue  # a link to a file (update-alternatives) doesn't write it
        # A rename or link makes its target.
        path = write.target if write.op in (FileOp.RENAME, FileOp.LINK) and write.target else write.path
        last_write[path] = seq
    files: list[ExecutableItem] = []
    listed: set[tuple[str, str]] = set()
    mode_only: set[str] = set()
    inert: set[str] = set()
    for _, event in hashed:
        written_at = last_write.get(event.path)
        node = tree.node_at(written_at) if written_at is not None else None
        if not keeps(node):
            continue
        if event.file_type not in ("elf", "script"):
            mode_only.add(event.path)  # an execute bit alone makes nothing run
        elif any(fnmatch.fnmatchcase(event.path, pattern) for pattern in _INERT_SCRIPTS):
            inert.add(event.path)
        elif (event.path, event.sha256) not in listed:
            # A file run during the build is hashed then and again at the end: one item per content.
            listed.add((event.path, event.sha256))
            who = tree.lineage(node) if node is not None else f"pid {event.written_by}"
            hook = node.hook.label if node is not None and node.hook is not None else None
            files.append(ExecutableItem(event.path, event.file_type, event.sha256, event.size, who, hook))
    return Executables(files, len(mode_only), len(inert))
