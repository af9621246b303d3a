"""The files processes inside hooks wrote: what several rules ask of a record (a hook that
wrote an executable, a persistence file, a script it then ran)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from ciwatch.analysis.tree import ProcessNode, ProcessTree
from ciwatch.record.reader import Record
from ciwatch.record.vocabulary import FileOp

#: Every operation that leaves a file written (all but removing one).
_WRITING = frozenset(FileOp) - {FileOp.UNLINK}


class HookWrites(Mapping[str, list[tuple[int, ProcessNode]]]):
    """Path -> (seq, writer) of each write by a process inside a hook, in record order.

    A hook that unpacks a large build writes hundreds of thousands of files: each is held as
    its write's sequence number alone (keyed by the path string the record holds already), and
    the writer is found in the process tree when a rule asks, rather than a list of pairs for
    each path."""

    def __init__(self, tree: ProcessTree) -> None:
        self._tree = tree
        self._seqs: dict[str, int | list[int]] = {}

    def add(self, path: str, seq: int) -> None:
        known = self._seqs.get(path)
        if known is None:
            self._seqs[path] = seq
        elif isinstance(known, int):
            self._seqs[path] = [known, seq]
        else:
            known.append(seq)

    def __getitem__(self, path: str) -> list[tuple[int, ProcessNode]]:
        known = self._seqs[path]
        seqs = [known] if isinstance(known, int) else known
        writes = []
        for seq in seqs:
            node = self._tree.node_at(seq)
            assert node is not None  # added only for events with a process
            writes.append((seq, node))
        return writes

    def __contains__(self, path: object) -> bool:
        return path in self._seqs

    def __iter__(self) -> Iterator[str]:
        return iter(self._seqs)

    def __len__(self) -> int:
        return len(self._seqs)


def hook_writes(record: Record, tree: ProcessTree) -> HookWrites:
    """Files that processes inside hooks created or changed (rename and link targets too)."""
    written = HookWrites(tree)
    # Paths without the events: a build writes a million files, most of them outside hooks.
    for seq, op, path, target in record.events.written_paths(_WRITING):
        node = tree.node_at(seq)
        if node is None or node.hook is None:
            continue
        written.add(target if op in (FileOp.RENAME, FileOp.LINK) and target else path, seq)
    return written
