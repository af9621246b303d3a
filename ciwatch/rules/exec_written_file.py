"""exec-written-file: a process runs a file that a hook wrote earlier in the same run: the
write-then-run chain of AN0022, whichever way the file is run: as the program itself, as the
script of an interpreter or shell (``sh x``, ``python x.py``, ``node x.js``, ``perl x``,
``busybox sh x``: no execute bit needed), or through the dynamic loader (``ld-linux-x86-64.so.2
FILE``, its ``--preload``). Code run from memory (a memfd) or by a file descriptor
(``/proc/self/fd/N``, ``/dev/fd/N``: a memfd, a pipe or a deleted file) counts too. A file
whose bytes are an installed file's (linked, renamed or copied into place by the hook: esbuild's
platform binary) is reported with the reason it is not counted (``provenance.py``), and so is
a program the build linked here and ran while no hook had reached the network (meson's and
configure's compiler checks: ``compiled_here.py``)."""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Iterator

from ciwatch.analysis.tree import ProcessNode
from ciwatch.facts.paths import is_fd_alias, proc_alias
from ciwatch.facts.programs import SHELLS, inline_code
from ciwatch.policy.model import Severity
from ciwatch.record.events import Anomaly, ProcessExec
from ciwatch.record.vocabulary import AnomalyKind, FileOp
from ciwatch.rules.base import Finding, RuleContext, RuleInfo
from ciwatch.rules.compiled_here import linked_here
from ciwatch.rules.provenance import Provenance

INFO = RuleInfo(
    id="exec-written-file",
    summary="A file written by an install hook was executed in the same run",
    default_severity=Severity.HIGH,
    hint="Code that a hook fetched or generated and then ran was never reviewed; find where it came from "
    "(the write's lineage) before excepting the package.",
)

_VERSION = re.compile(r"[\d.]+$")
#: Per interpreter: options whose next argument is a value (not the script), and options whose
#: value is itself a file that runs (node's preloads, ruby's -r, the loader's --preload).
_VALUES: dict[str, frozenset[str]] = {
    "python": frozenset({"-W", "-X", "-Q", "--check-hash-based-pycs"}),
    "node": frozenset(
        {"--input-type", "--title", "--inspect-port", "-C", "--conditions", "--env-file", "--stack-size"}
    ),
    "perl": frozenset(),
    "ruby": frozenset({"-I", "-C", "-E", "--encoding"}),
    "php": frozenset({"-d", "-c", "-z"}),
    "lua": frozenset({"-l"}),
    "ld.so": frozenset({"--library-path", "--inhibit-rpath", "--argv0"}),
}
_RUN_FILES: dict[str, frozenset[str]] = {
    "node": frozenset({"-r", "--require", "--import", "--loader", "--experimental-loader"}),
    "ruby": frozenset({"-r"}),
    "php": frozenset({"-f"}),
    "ld.so": frozenset({"--preload", "--audit"}),
}
#: Options after which there is no script file: inline code, a module, stdin.
_NO_SCRIPT: dict[str, frozenset[str]] = {
    "python": frozenset({"-c", "-m", "-"}),
    "node": frozenset({"-e", "--eval", "-p", "--print", "-"}),
    "perl": frozenset({"-e", "-E", "-"}),
    "ruby": frozenset({"-e", "-"}),
    "php": frozenset({"-r", "-"}),
    "lua": frozenset({"-e", "-"}),
}
_FAMILY = {
    **dict.fromkeys(("python", "python2", "python3", "pypy", "pypy3"), "python"),
    **dict.fromkeys(("node", "nodejs", "bun", "deno"), "node"),
    "perl": "perl",
    "ruby": "ruby",
    "php": "php",
    **dict.fromkeys(("lua", "luajit"), "lua"),
}


def _family(name: str) -> str | None:
    if name.startswith(("ld-linux", "ld.so", "ld-musl", "ld64.so")):
        return "ld.so"
    if name in SHELLS or _VERSION.sub("", name) in SHELLS:
        return "sh"
    return _FAMILY.get(name) or _FAMILY.get(_VERSION.sub("", name))


def script_operands(argv: list[str], exe: str) -> list[str]:
    """The files an interpreter, shell or the dynamic loader is asked to run, by how each reads
    its command line: options that take a value are skipped, ``python -m`` names a module and
    ``node -e`` code (no file), preloads are files that run too. Known by the binary the kernel
    ran (``exe``), since ``argv[0]`` is whatever the caller chose; busybox by its applet."""
    name = os.path.basename(exe.removesuffix(" (deleted)")) or (os.path.basename(argv[0]) if argv else "")
    if name == "busybox" or (argv and os.path.basename(argv[0]) == "busybox"):
        applet = os.path.basename(argv[0]) if argv else ""
        argv = argv[1:] if applet == "busybox" else argv
        name = os.path.basename(argv[0]) if argv else ""
    family = _family(name)
    if family is None or not argv:
        return []
    args = argv[1:]
    if family == "node" and args[:1] in (["run"], ["x"]):  # deno run x.ts, bun run x.js
        args = args[1:]
    if family == "sh":
        if inline_code(["sh", *args]) is not None:  # argv[0] is the caller's choice
            return []
        rcfiles = [args[i + 1] for i, a in enumerate(args[:-1]) if a in ("--rcfile", "--init-file")]
        return [*rcfiles, _first_shell_operand(args)]
    found: list[str] = []
    values, runs, stops = (
        _VALUES.get(family, frozenset()),
        _RUN_FILES.get(family, frozenset()),
        _NO_SCRIPT.get(family, frozenset()),
    )
    index = 0
    while index < len(args):
        arg = args[index]
        option, equals, value = arg.partition("=")
        if arg in stops or (family in ("python", "perl", "ruby", "lua") and _clustered_stop(arg, stops)):
            return found
        if arg == "--":
            return found + args[index + 1 : index + 2]
        if arg in runs or arg in values:
            if arg in runs and index + 1 < len(args):
                found.append(args[index + 1])
            index += 2
            continue
        if equals and option in runs:
            found.append(value)
        elif arg.startswith("-") and len(arg) > 1:
            pass  # a flag, or an option with its value attached (-Wignore, --max-old-space-size=8)
        else:
            return [*found, arg]
        index += 1
    return found


def _clustered_stop(arg: str, stops: frozenset[str]) -> bool:
    """``python3 -Ic``, ``perl -le``: a cluster of short flags ending in a code option."""
    return len(arg) > 2 and arg[0] == "-" and arg[1] != "-" and f"-{arg[-1]}" in stops


def _first_shell_operand(args: list[str]) -> str:
    skip = False
    for arg in args:
        if skip:
            skip = False
        elif arg in ("--rcfile", "--init-file") or (
            len(arg) > 1 and arg[0] in "-+" and not arg.startswith("--") and arg[-1] in "oO"
        ):
            skip = True
        elif arg == "--" or (len(arg) > 1 and arg[0] in "-+"):
            continue
        else:
            return arg
    return ""


#: The merged-/usr links every current distribution has: /bin/x is /usr/bin/x.
_MERGED_USR = {"/bin": "/usr/bin", "/sbin": "/usr/sbin", "/lib": "/usr/lib", "/lib64": "/usr/lib64"}


def _run_files(event: ProcessExec, links: dict[str, str]) -> list[str]:
    """Every file this exec runs: the program, the binary the kernel loaded, the scripts and
    preloads its command line names (resolved against its cwd, /proc spellings undone, and
    through the symlinks made during the run: the exec's path is as the caller spelled it,
    while the writes are canonical)."""
    files = [event.path]
    if event.exe and not event.exe.startswith("/memfd:"):
        files.append(event.exe)
    for operand in script_operands(event.argv, event.exe):
        if not operand:
            continue
        path = operand if operand.startswith("/") else os.path.join(event.cwd, operand)
        files.append(os.path.normpath(proc_alias(path, event.pid, event.cwd)))
    return [*files, *(_through(path, links) for path in files)]


def _through(path: str, links: dict[str, str]) -> str:
    """``path`` with its directories replaced by what the run's symlinks (and merged /usr)
    point at, a few hops deep."""
    for _ in range(8):
        parts = path.split("/")
        for index in range(len(parts), 1, -1):
            prefix = "/".join(parts[:index])
            target = links.get(prefix) or _MERGED_USR.get(prefix)
            if target is not None:
                path = os.path.normpath("/".join([target, *parts[index:]]))
                break
        else:
            return path
    return path


def _links_made(context: RuleContext) -> dict[str, str]:
    links: dict[str, str] = {}
    for _, event in context.record.events.file_writes({FileOp.SYMLINK}):
        if event.target:
            base = os.path.dirname(event.path)
            links[event.path] = os.path.normpath(os.path.join(base, event.target))
    return links


class ExecWrittenFile:
    info = INFO

    def check(self, context: RuleContext) -> Iterator[Finding]:
        links = _links_made(context)
        provenance = Provenance(context)
        for node in context.tree.nodes:
            for seq, event in node.execs:
                yield from self._exec(context, node, seq, event, links, provenance)
        for seq, anomaly in context.record.events.of(Anomaly):
            if anomaly.anomaly is AnomalyKind.MEMFD_EXEC:
                runner = context.tree.node_at(seq)
                yield context.finding(INFO, f"code was run from memory ({anomaly.detail})", runner, [seq])

    def _exec(
        self,
        context: RuleContext,
        node: ProcessNode,
        seq: int,
        event: ProcessExec,
        links: dict[str, str],
        provenance: Provenance,
    ) -> Iterator[Finding]:
        files = _run_files(event, links)
        for path in dict.fromkeys(files):
            writes = context.written_by_hooks.get(path)
            earlier = [(w_seq, writer) for w_seq, writer in (writes or []) if w_seq < seq]
            if earlier:
                w_seq, writer = earlier[-1]
                assert writer.hook is not None
                how = "was executed" if path in (event.path, event.exe) else f"was run by {node.name}"
                finding = context.finding(INFO, f"{path}, written by {writer.hook.label}, {how}", writer, [w_seq, seq])
                origin = provenance.installed_origin(path, seq)
                why = origin.reason(path) if origin is not None else linked_here(context, path, seq)
                # Reported all the same, with the reason it is not counted, for a reviewer to audit.
                yield finding if why is None else dataclasses.replace(finding, excepted=why)
                return
        if node.hook is not None and not event.exe.startswith("/memfd:"):
            by_fd = next((path for path in files if is_fd_alias(path) and path != "/dev/stdin"), None)
            if by_fd is not None:
                message = f"{node.hook.label} ran code by its file descriptor ({by_fd}: a memfd, pipe or deleted file)"
                yield context.finding(INFO, message, node, [seq])
