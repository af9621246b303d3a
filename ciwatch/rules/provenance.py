"""Where the bytes of a file a hook placed came from: the package's installed files, or not.

A hook that puts its platform binary in place and runs it (esbuild's postinstall hard-links
``@esbuild/linux-x64/bin/esbuild`` over its own ``bin/esbuild`` and runs ``--version``) is no
dropper: the bytes are the ones the package manager installed from the registry, as reviewed
(or not) as every other file of the package. A file whose bytes came from anywhere else (the
network, a generator, an edit) has no such origin. Two ways to show the origin, both from the
record alone:

- the chain of hard links and renames the hook made, back to a file no hook wrote;
- the executed file's SHA-256 (hashed when it ran) equal to that of an executable the package
  manager wrote in this run and no hook touched (a copy).

The origin must have been written by a package manager's own processes (not a hook's, not the
user's build script), or have been on disk before the run."""

from __future__ import annotations

from ciwatch.analysis.tree import ProcessNode
from ciwatch.dataclass import dataclass
from ciwatch.facts.programs import package_manager_name
from ciwatch.record.events import FileHash
from ciwatch.record.vocabulary import FileOp
from ciwatch.rules.base import RuleContext

_WRITING = frozenset(FileOp) - {FileOp.UNLINK}
#: How many links and renames deep a chain is followed (esbuild makes two).
_MAX_HOPS = 8


@dataclass(frozen=True)
class Origin:
    path: str
    """The installed file the bytes are from."""
    how: str
    """``hard-linked``, ``renamed`` or ``copied`` (the last hop the hook made)."""
    installer: str
    """Who put the origin there: a package manager's name, or "already on disk before the run"."""

    def reason(self, placed: str) -> str:
        return (
            f"not counted: {placed} is {self.how} from {self.path} ({self.installer}): "
            "the package's own installed bytes, not bytes from the network"
        )


class Provenance:
    """Asked once per run by exec-written-file, for the few files a hook wrote and ran; the
    record's links, renames and hashes are indexed on the first question."""

    def __init__(self, context: RuleContext) -> None:
        self._context = context
        self._moves: dict[str, list[tuple[int, FileOp, str]]] | None = None
        self._hashes: list[tuple[int, FileHash]] | None = None

    def installed_origin(self, path: str, run_seq: int) -> Origin | None:
        """The installed file whose bytes ``path`` holds when run at ``run_seq``, or None when
        the bytes may have come from anywhere else."""
        how = ""
        current = path
        for _ in range(_MAX_HOPS):
            writes = [seq for seq, _ in self._context.written_by_hooks.get(current, []) if seq < run_seq]
            if not writes:
                installer = self._installer(current, run_seq)
                return Origin(current, how, installer) if installer and current != path else None
            move = self._move_into(current, writes[-1])
            if move is None:  # the hook wrote the bytes itself: a copy, or not from the package
                return self._copied(path, writes[-1], run_seq) if current == path else None
            op, source = move
            how = "hard-linked" if op is FileOp.LINK else "renamed"
            current = source
        return None

    def installed_in_run(self, path: str, before_seq: int) -> str | None:
        """Who put ``path``'s bytes there in this run, before ``before_seq`` (package managers,
        named: "installed by dpkg"); None when a writer is not a package manager's process, or
        when nothing wrote it in this run (a file on disk before the run may be anything)."""
        installer = self._installer(path, before_seq)
        return None if installer == _BEFORE_THE_RUN else installer

    def _move_into(self, path: str, seq: int) -> tuple[FileOp, str] | None:
        """The link or rename that the hook write at ``seq`` was, when it made ``path``."""
        if self._moves is None:
            self._moves = {}
            for m_seq, event in self._context.record.events.file_writes({FileOp.LINK, FileOp.RENAME}):
                if event.target:
                    self._moves.setdefault(event.target, []).append((m_seq, event.op, event.path))
        return next(((op, source) for m_seq, op, source in self._moves.get(path, []) if m_seq == seq), None)

    def _copied(self, path: str, written_seq: int, run_seq: int) -> Origin | None:
        if self._hashes is None:
            self._hashes = list(self._context.record.events.of(FileHash))
        # The digest taken as it ran (the tracer hashes a written file when it is executed).
        ran = next((h for seq, h in self._hashes if h.path == path and seq > written_seq), None)
        if ran is None:
            return None
        for _, candidate in self._hashes:
            if candidate.sha256 != ran.sha256 or candidate.path == path:
                continue
            if candidate.path in self._context.written_by_hooks:
                continue
            installer = self._installer(candidate.path, run_seq)
            if installer and installer != _BEFORE_THE_RUN:
                return Origin(candidate.path, "copied", installer)
        return None

    def _installer(self, path: str, before_seq: int) -> str | None:
        """Who wrote ``path`` (no hook did): package managers, named; None when any writer is
        not part of a package manager."""
        names = self._installers(path, before_seq, _MAX_HOPS)
        if names is None:
            return None
        return ", ".join(f"installed by {name}" for name in sorted(names)) if names else _BEFORE_THE_RUN

    def _installers(self, path: str, before_seq: int, hops: int) -> set[str] | None:
        """The package managers that wrote ``path`` before ``before_seq``: the file itself, or
        a directory above it moved into place (pnpm unpacks into ``<name>_tmp_<pid>`` and
        renames the directory); empty when nothing did; None when a writer is no package
        manager's."""
        names: set[str] = set()

        def touching(candidate: str) -> bool:
            return candidate == path or path.startswith(candidate + "/")

        for seq, event in self._context.record.events.file_writes(_WRITING, touching=touching):
            if seq >= before_seq:
                break
            moved = event.op in (FileOp.LINK, FileOp.RENAME)
            made = event.target if moved else event.path
            if made is None or not touching(made):
                continue
            node = self._context.tree.node_at(seq)
            name = _package_manager(node) if node is not None and node.hook is None else None
            if name is None:
                return None
            names.add(name)
            if made != path:
                if not moved or hops == 0:
                    continue  # a write to a directory above it (a chmod): not the file's bytes
                inner = self._installers(event.path + path[len(made) :], seq, hops - 1)
                if inner is None:
                    return None
                names |= inner
        return names


_BEFORE_THE_RUN = "already on disk before the run"


def _package_manager(node: ProcessNode) -> str | None:
    """The package manager this process is, or runs under."""
    for candidate in [node, *reversed(node.ancestors())]:
        if candidate.execs and (name := package_manager_name(candidate.argv)) is not None:
            return name
    return None
