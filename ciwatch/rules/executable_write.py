"""executable-write: a hook writes an executable or script into a PATH directory, the user's
home, or the project, outside the package manager's own install output."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator

from ciwatch.analysis.tree import ProcessNode
from ciwatch.facts.paths import INSTALL_OUTPUT_DIRS, is_install_output
from ciwatch.policy.model import Severity
from ciwatch.record.events import FileHash
from ciwatch.record.vocabulary import FileOp
from ciwatch.rules.base import Finding, RuleContext, RuleInfo
from ciwatch.rules.maintainer_scripts import genuine_maintainer_script
from ciwatch.rules.project_choice import chosen_by_project
from ciwatch.rules.provenance import Provenance

__all__ = ["INFO", "INSTALL_OUTPUT_DIRS", "ExecutableWrite", "is_install_output", "own_directory"]

INFO = RuleInfo(
    id="executable-write",
    summary="An install hook wrote an executable or script into PATH, the home directory or the project",
    default_severity=Severity.MEDIUM,
    hint="A package's hook should only write inside its own install directory; review the file (its SHA-256 "
    "is in the record) and except the package if it is expected.",
)


def own_directory(node: ProcessNode, project: str, home: str = "") -> str | None:
    """The directory of the hook's own package (where its first exec ran), unless that is the
    project itself (the project's own scripts writing its .git/hooks is still persistence) or
    holds the home directory (no package lives there: what the hook writes under it is not its
    own)."""
    start = node
    while start.parent is not None and not start.starts_hook:
        start = start.parent
    if not start.execs:
        return None
    cwd = os.path.normpath(start.execs[0][1].cwd)
    if cwd == project or project.startswith(cwd.rstrip("/") + "/") or cwd == "/":
        return None
    if home and (cwd == os.path.normpath(home) or home.startswith(cwd.rstrip("/") + "/")):
        return None
    if project and cwd.startswith(project + "/") and not is_install_output(cwd[len(project) :]):
        return None  # a workspace of the project
    return cwd


def _under(path: str, directory: str | None) -> bool:
    if directory is None:
        return False
    directory = directory.rstrip("/")
    return bool(directory) and (path == directory or path.startswith(directory + "/"))


class ExecutableWrite:
    info = INFO

    def check(self, context: RuleContext) -> Iterator[Finding]:
        header = context.record.header
        hashed = {event.path: (seq, event.file_type) for seq, event in context.record.events.of(FileHash)}
        # Only what the kernel can run: an ELF or a `#!` script. A LICENSE or a .d.ts that kept a
        # tarball's 0755 is neither (the record keeps its hash all the same).
        executables = {path: seq for path, (seq, kind) in hashed.items() if kind != "executable"}
        inert = {path for path, (_, kind) in hashed.items() if kind == "executable"}
        chmod_x: set[str] = set()
        chmod_seqs: set[int] = set()
        for seq, event in context.record.events.file_writes({FileOp.CHMOD}):
            chmod_seqs.add(seq)
            if (event.flags or 0) & 0o111:
                chmod_x.add(event.path)
        provenance = Provenance(context)
        path_dirs = [os.path.normpath(d) for d in header.path_dirs]
        project = os.path.normpath(header.cwd)
        reported: set[str] = set()
        for path in context.written_by_hooks:
            if path in reported or path in inert or (path not in executables and path not in chmod_x):
                continue
            writes = context.written_by_hooks[path]  # (made only for the paths that qualify)
            _, node = writes[-1]
            assert node.hook is not None
            where = None
            if _under(path, own_directory(node, project, header.home)) and os.path.dirname(path) not in path_dirs:
                # The package's own folder, wherever it is installed (a global install puts it
                # under /usr/local/lib/node_modules): its hook building or placing its own
                # binaries is the install's output, not a dropper.
                continue
            if os.path.dirname(path) in path_dirs:
                where = f"into {os.path.dirname(path)}, which is on PATH"
            elif _under(path, header.cwd) and not is_install_output(path[len(header.cwd) :]):
                where = "into the project"
            elif header.home and _under(path, header.home) and not is_install_output(path):
                where = "into the home directory"
            elif _under(path, "/usr") or _under(path, "/etc") or _under(path, "/opt"):
                where = "into the system"
            if where is None:
                continue
            reported.add(path)
            evidence = [s for s, _ in writes] + ([executables[path]] if path in executables else [])
            finding = context.finding(INFO, f"{node.hook.label} wrote the executable {path} {where}", node, evidence)
            # A maintainer script's mode change of its package's file; the project's own script
            # building into its tree (husky's .husky/_), an approved git-hook manager writing
            # the project's .git/hooks: kept, with why, for audit.
            reason = _mode_change_reason(context, provenance, path, writes, chmod_seqs) or chosen_by_project(
                context, node, path, git_only=False
            )
            yield finding if reason is None else dataclasses.replace(finding, excepted=reason)


def _mode_change_reason(
    context: RuleContext,
    provenance: Provenance,
    path: str,
    writes: list[tuple[int, ProcessNode]],
    chmod_seqs: set[int],
) -> str | None:
    """Why a maintainer script's mode change is not counted: dpkg's maintainer scripts set the
    mode of their package's files (``dpkg-statoverride --update`` makes ``crontab`` setgid),
    and no new bytes are written. Only when every hook write was a chmod by a genuine
    maintainer script and a package manager installed the bytes in this run (a file that was
    on disk before, ``/bin/bash`` made setuid, is not the package's own)."""
    if not all(seq in chmod_seqs and genuine_maintainer_script(context, node) for seq, node in writes):
        return None
    installer = provenance.installed_in_run(path, writes[0][0])
    if installer is None:
        return None
    labels = ", ".join(sorted({node.hook.label for _, node in writes if node.hook is not None}))
    return (
        f"not counted: dpkg maintainer script ({labels}) changed the mode of {path}, {installer} "
        "in this run: a mode change of the package's own file, not new bytes"
    )
