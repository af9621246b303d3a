"""The process tree of a record, and which package-manager hook each process belongs to.

A hook is found where it starts: the first exec, under a package manager, that carries the
hook's identity (see ``ciwatch.attribution.hooks``). Every descendant inherits it; identity
variables further down are not trusted, since a hook can give its children any environment.
"""

from __future__ import annotations

import os

from ciwatch.attribution.hooks import HookAttribution, detect_hook
from ciwatch.dataclass import dataclass, field
from ciwatch.facts.programs import SCRIPT_RUNNERS, package_manager_of
from ciwatch.record.events import ProcessExec, ProcessExit, ProcessStart
from ciwatch.record.reader import Record


def short_command(argv: list[str], limit: int = 3) -> str:
    """A few words that say what a process is: ``npm ci``, ``curl``, ``sh -c``."""
    if not argv:
        return "?"
    words = [os.path.basename(argv[0])]
    rest = argv[1:]
    if words[0].rstrip("0123456789.") in SCRIPT_RUNNERS and rest:
        if rest[0] == "-m" and len(rest) > 1:  # python -m pip install: the module is the program
            words = [rest[1]]
            rest = rest[2:]
        elif not rest[0].startswith("-"):
            words = [os.path.basename(rest[0]).removesuffix(".js").removesuffix("-cli")]
            rest = rest[1:]
    if package_manager_of(argv) is not None:
        words += [arg for arg in rest[:2] if not arg.startswith("-")][: limit - 1]
    elif rest and rest[0].startswith("-") and len(rest[0]) <= 3:
        words.append(rest[0])
    return " ".join(words)


@dataclass
class ProcessNode:
    pid: int
    ppid: int
    start_seq: int
    parent: ProcessNode | None = None
    children: list[ProcessNode] = field(default_factory=list)
    execs: list[tuple[int, ProcessExec]] = field(default_factory=list)
    """(sequence number, exec) in order."""
    exit: ProcessExit | None = None
    hook: HookAttribution | None = None
    """The hook this process runs in (its own, or inherited from an ancestor)."""
    starts_hook: bool = False

    @property
    def argv(self) -> list[str]:
        return self.execs[-1][1].argv if self.execs else (self.parent.argv if self.parent else [])

    @property
    def name(self) -> str:
        return short_command(self.argv)

    def ancestors(self) -> list[ProcessNode]:
        """From the root down to this node's parent."""
        chain = []
        node = self.parent
        while node is not None:
            chain.append(node)
            node = node.parent
        return list(reversed(chain))


class _NodesBySeq:
    """Sequence number -> the process of that event, for every event of a record (a million in
    a long build): a list indexed by the sequence number, 8 bytes an event where a dictionary
    takes about 40. Lines without a process (framing, DNS answers, registries) leave holes,
    filled while the list stays under twice the events it holds; a number beyond that or out of
    order (a record put together by hand) goes to a dictionary, so no numbering makes the
    list grow faster than the record."""

    _SLACK = 64

    def __init__(self) -> None:
        self._first = 0
        self._count = 0
        self._nodes: list[ProcessNode | None] = []
        self._others: dict[int, ProcessNode] = {}

    def put(self, seq: int, node: ProcessNode) -> None:
        if not self._nodes:
            self._first = seq
        self._count += 1
        offset = seq - self._first
        if 0 <= offset < len(self._nodes):
            self._nodes[offset] = node
        elif len(self._nodes) <= offset < 2 * self._count + self._SLACK:
            self._nodes.extend([None] * (offset - len(self._nodes)))
            self._nodes.append(node)
        else:
            self._others[seq] = node

    def get(self, seq: int) -> ProcessNode | None:
        offset = seq - self._first
        node = self._nodes[offset] if 0 <= offset < len(self._nodes) else None
        return node if node is not None else self._others.get(seq)


class ProcessTree:
    def __init__(self, record: Record) -> None:
        self.record = record
        self.nodes: list[ProcessNode] = []
        self.roots: list[ProcessNode] = []
        self.hooks: list[HookAttribution] = []
        self._current: dict[int, ProcessNode] = {}
        self._by_seq = _NodesBySeq()
        # A file write's pid is all the tree needs of it: the log gives that without the event.
        for seq, pid, event in record.events.pids():
            if event is not None:
                if isinstance(event, ProcessStart):
                    self._start(seq, event)
                elif isinstance(event, ProcessExec):
                    self._exec(seq, event)
                elif isinstance(event, ProcessExit):
                    node = self._current.get(event.pid)
                    if node is not None:
                        node.exit = event
                pid = getattr(event, "pid", None)
            if pid is not None and pid in self._current:
                self._by_seq.put(seq, self._current[pid])

    def _start(self, seq: int, event: ProcessStart) -> None:
        parent = self._current.get(event.ppid)
        node = ProcessNode(event.pid, event.ppid, seq, parent=parent, hook=parent.hook if parent else None)
        if parent is None:
            self.roots.append(node)
        else:
            parent.children.append(node)
        self.nodes.append(node)
        self._current[event.pid] = node  # a reused pid names the newer process from now on

    def _exec(self, seq: int, event: ProcessExec) -> None:
        node = self._current.get(event.pid)
        if node is None:
            self._start(seq, ProcessStart(pid=event.pid, ppid=0))
            node = self._current[event.pid]
        node.execs.append((seq, event))
        if node.starts_hook:
            return  # the hook's own process exec'ing again (sh -c exec curl) stays that hook
        parent_exec = node.parent.execs[-1][1] if node.parent and node.parent.execs else None
        hook = detect_hook(event, parent_exec, node.pid, seq)
        if hook is not None:
            node.hook = hook
            node.starts_hook = True
            self.hooks.append(hook)
            for child in node.children:  # forked before the exec that revealed the hook
                self._inherit(child, hook)

    def _inherit(self, node: ProcessNode, hook: HookAttribution) -> None:
        if not node.starts_hook:
            node.hook = hook
            for child in node.children:
                self._inherit(child, hook)

    def node_at(self, seq: int) -> ProcessNode | None:
        """The process an event (by sequence number) came from."""
        return self._by_seq.get(seq)

    def lineage(self, node: ProcessNode) -> str:
        """``npm ci > postinstall of pkg@1.2.3 > sh > curl``: the path from the build's root
        to this process, with each hook named and processes that never exec'd left out."""
        parts: list[str] = []
        for step in [*node.ancestors(), node]:
            if step.starts_hook and step.hook is not None:
                label = step.hook.label
            elif step.execs or step.parent is None:
                label = step.name
            else:
                continue  # a fork that didn't exec (a subshell) adds nothing to read
            if not parts or parts[-1] != label:
                parts.append(label)
        return " > ".join(parts)

    def lineage_at(self, seq: int) -> str:
        node = self.node_at(seq)
        return self.lineage(node) if node else "?"
