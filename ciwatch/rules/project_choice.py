"""What the project itself chose: its own lifecycle scripts, and the packages it approved.

Two borderline classes of hook writes are the user's choice, not a package's initiative:

- **the project's own install-time script** (``"prepare": "husky"``): the package manager the
  user ran starts it in the project's root (or a workspace's), as the project's package, outside
  any package's hook. What it writes into the project's tree, its repository's hooks and git configuration
  included, is what the user's own script was written to do. The same script started from
  inside a dependency's hook (a postinstall that runs ``npm run prepare``) is that hook's doing.
- **a git-hook manager the project approved** (lefthook, simple-git-hooks): a dependency whose
  install hook writes the project's ``.git/hooks`` is persistence (the next ``git commit`` or
  ``git push`` in this checkout runs it), so it counts unless the project named the package in
  its own list of packages allowed to run install hooks (npm/LavaMoat ``allowScripts``, pnpm
  ``onlyBuiltDependencies``/``allowBuilds``, recorded as ``hooks-allowed``) and the policy
  imports that list. Only the repository the project is in: never the home directory's git
  configuration or another repository's hooks.

Such findings stay in the verdict with the reason they are not counted (``excepted``)."""

from __future__ import annotations

import fnmatch
import os

from ciwatch.analysis.tree import ProcessNode
from ciwatch.facts.paths import is_install_output
from ciwatch.policy.model import PackageSpec
from ciwatch.record.events import HooksAllowed
from ciwatch.rules.base import RuleContext

#: The files of a repository that make git run code or change what it runs.
_GIT_HOOK_FILES = ("hooks/*", "config")


def hook_start(node: ProcessNode) -> ProcessNode:
    """The process at the boundary of the hook ``node`` runs in."""
    while node.parent is not None and not node.starts_hook:
        node = node.parent
    return node


def in_project_tree(cwd: str, project: str) -> bool:
    """``cwd`` is the project or one of its workspaces (``packages/lib``), not what a package
    manager installed there (``node_modules/...``, ``.yarn/unplugged/...``)."""
    cwd = os.path.normpath(cwd)
    if cwd != project and not cwd.startswith(project.rstrip("/") + "/"):
        return False
    return not is_install_output(cwd[len(project) :])


def is_project_script(node: ProcessNode, project: str) -> bool:
    """``node`` runs in one of the project's own install-time scripts (its root's or a
    workspace's), started by the package manager the user ran, not from inside any package's
    hook (where its identity would be the package's choice, not the user's)."""
    start = hook_start(node)
    if not start.starts_hook or not start.execs or not in_project_tree(start.execs[0][1].cwd, project):
        return False
    return all(ancestor.hook is None for ancestor in start.ancestors())


def project_repository_file(path: str, project: str) -> bool:
    """``path`` is a hook or the configuration of the git repository the project is in (its own
    ``.git``, or that of a directory above it: a project in a monorepo's folder)."""
    parts = path.split("/")
    if ".git" not in parts:
        return False
    index = parts.index(".git")
    repository = "/".join(parts[:index]) or "/"
    if repository == "/" or not (project == repository or project.startswith(repository + "/")):
        return False
    inside = "/".join(parts[index + 1 :])
    return any(fnmatch.fnmatchcase(inside, pattern) for pattern in _GIT_HOOK_FILES)


def project_approval(context: RuleContext, node: ProcessNode) -> str | None:
    """Where the project approved the install hooks of ``node``'s package, when it did (and the
    policy takes the project's approvals)."""
    hook = hook_start(node).hook
    if hook is None or not context.policy.hooks_import:
        return None
    for _, approval in context.record.events.of(HooksAllowed):
        specs = [PackageSpec.parse(text) for text in approval.packages]
        if any(spec.matches(hook.ecosystem, hook.package, hook.version) for spec in specs):
            return approval.source
    return None


def chosen_by_project(context: RuleContext, node: ProcessNode, path: str, *, git_only: bool) -> str | None:
    """Why the write of ``path`` by ``node`` is the project's choice, or None when it isn't:
    the project's own script writing into the project (``git_only``: only into its repository's
    hooks and configuration), or an approved package writing its repository's git hooks."""
    project = os.path.normpath(context.record.header.cwd)
    in_repository = project_repository_file(path, project)
    if is_project_script(node, project):
        inside = path.startswith(project.rstrip("/") + "/")
        if in_repository or (inside and not git_only):
            label = hook_start(node).hook
            name = label.label if label is not None else "the project's script"
            return f"not counted: written by {name}, the project's own script run by the package manager in the project"
    if in_repository and (source := project_approval(context, node)) is not None:
        return (
            f"not counted: the project approves this package's install hooks ({source}), and it wrote "
            "the hooks or configuration of the project's own git repository (a git-hook manager)"
        )
    return None
