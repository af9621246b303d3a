"""The rule changes the npm corpus asked for, on records built by hand (tests/test_rules.py's
``Build``): what the project itself chose is reported but not counted, with the reason; the same
writes made on a package's own initiative still count.

- husky as the project's ``prepare``: the project's own script writes the repository's git
  configuration and executables into the project;
- lefthook or simple-git-hooks, approved by the project (``hooks-allowed``), write the
  repository's ``.git/hooks``; unapproved, the same write is persistence."""

from __future__ import annotations

from pathlib import Path

import pytest

from ciwatch.record.events import FileHash, HooksAllowed
from tests.test_rules import HOME, PROJECT, Build, Proc, found

GIT_CONFIG = f"{PROJECT}/.git/config"
PRE_COMMIT = f"{PROJECT}/.git/hooks/pre-commit"
HUSKY_HOOK = f"{PROJECT}/.husky/_/pre-commit"


@pytest.fixture
def build(tmp_path: Path) -> Build:
    return Build(tmp_path)


def _executable(build: Build, writer: Proc, path: str) -> None:
    writer.write(path)
    build.add(FileHash(path=path, sha256="ab" * 32, size=40, mode=0o755, file_type="script", written_by=writer.pid))


def _husky_prepare(build: Build, parent: Proc | None = None) -> Proc:
    """``"prepare": "husky"``: npm starts it in the project's root, named after the project."""
    hook = build.hook("app", "1.0.0", "prepare", "husky", cwd=PROJECT, parent=parent)
    return hook.spawn(["node", f"{PROJECT}/node_modules/.bin/husky"], cwd=PROJECT)


def _counted(build: Build, rule: str) -> list[str]:
    return [f.message for f in found(build.judge(), rule) if f.excepted is None]


def test_the_projects_own_prepare_setting_up_husky_is_reported_not_counted(build: Build) -> None:
    husky = _husky_prepare(build)
    husky.write(GIT_CONFIG)
    _executable(build, husky, HUSKY_HOOK)
    verdict = build.judge()
    kept = [f for f in verdict.findings if f.rule in ("persistence-write", "executable-write")]
    assert {f.rule for f in kept} == {"persistence-write", "executable-write"}
    assert all(f.excepted and "the project's own script" in f.excepted for f in kept)
    assert verdict.verdict.value == "pass"


def test_a_dependency_running_the_projects_prepare_from_its_hook_still_counts(build: Build) -> None:
    """A postinstall that runs ``npm run prepare`` in the project starts a hook named after the
    project, in its root: it is the dependency's doing all the same."""
    evil = build.hook("evil", "1.0.0", "postinstall", "cd $INIT_CWD && npm run prepare")
    npm = evil.spawn(["node", "/usr/lib/node_modules/npm/bin/npm-cli.js", "run", "prepare"], cwd=PROJECT)
    husky = _husky_prepare(build, parent=npm)
    husky.write(GIT_CONFIG)
    _executable(build, husky, HUSKY_HOOK)
    assert _counted(build, "persistence-write")
    assert _counted(build, "executable-write")


def test_the_projects_own_script_writing_outside_its_repository_still_counts(build: Build) -> None:
    prepare = _husky_prepare(build)
    prepare.write(f"{HOME}/.gitconfig")
    prepare.write(f"{HOME}/.bashrc")
    prepare.write(f"{PROJECT}/.github/workflows/ci.yml")
    assert len(_counted(build, "persistence-write")) == 3


def test_an_approved_git_hook_manager_writing_the_projects_hooks_is_reported_not_counted(build: Build) -> None:
    build.add(HooksAllowed(packages=["lefthook", "esbuild"], source="package.json pnpm.onlyBuiltDependencies"))
    lefthook = build.hook("lefthook", "2.2.2", script="node postinstall.js")
    writer = lefthook.spawn(["node", "postinstall.js"], cwd=f"{PROJECT}/node_modules/lefthook")
    _executable(build, writer, PRE_COMMIT)
    kept = [f for f in build.judge().findings if f.rule in ("persistence-write", "executable-write")]
    assert kept and all(f.excepted and "pnpm.onlyBuiltDependencies" in f.excepted for f in kept)


def test_an_unapproved_package_writing_the_projects_git_hooks_counts(build: Build) -> None:
    build.add(HooksAllowed(packages=["esbuild"], source="package.json pnpm.onlyBuiltDependencies"))
    evil = build.hook("lefthook-helper", "1.0.0").spawn(["node", "postinstall.js"])
    _executable(build, evil, PRE_COMMIT)
    assert _counted(build, "persistence-write")
    assert _counted(build, "executable-write")


def test_without_any_approval_a_git_hook_manager_counts(build: Build) -> None:
    """A plain npm project runs every dependency's hooks without being asked: no choice was made."""
    writer = build.hook("simple-git-hooks", "2.14.0").spawn(["node", "postinstall.js"])
    _executable(build, writer, PRE_COMMIT)
    assert _counted(build, "persistence-write")


def test_an_approved_package_still_counts_outside_the_projects_repository(build: Build) -> None:
    build.add(HooksAllowed(packages=["lefthook"], source="package.json allowScripts"))
    writer = build.hook("lefthook", "2.2.2").spawn(["node", "postinstall.js"])
    writer.write(f"{HOME}/.gitconfig")
    writer.write("/work/other/.git/hooks/pre-commit")
    writer.write(f"{HOME}/.bashrc")
    assert len(_counted(build, "persistence-write")) == 3


def test_a_policy_that_ignores_the_projects_approvals_counts_them(build: Build) -> None:
    build.add(HooksAllowed(packages=["lefthook"], source="package.json allowScripts"))
    writer = build.hook("lefthook", "2.2.2").spawn(["node", "postinstall.js"])
    writer.write(PRE_COMMIT)
    policy = "version: 1\nhooks:\n  import: none\n"
    verdict = build.judge(policy)
    assert [f for f in found(verdict, "persistence-write") if f.excepted is None]


def test_a_workspaces_own_prepare_building_its_cli_is_reported_not_counted(build: Build) -> None:
    workspace = f"{PROJECT}/packages/cli"
    prepare = build.hook("@app/cli", "1.0.0", "prepare", "tsc && chmod +x dist/cli.js", cwd=workspace)
    _executable(build, prepare, f"{workspace}/dist/cli.js")
    kept = found(build.judge(), "executable-write")
    assert kept and all(f.excepted and "the project's own script" in f.excepted for f in kept)


def test_a_dependency_placing_an_executable_in_the_project_still_counts(build: Build) -> None:
    """The same write from a dependency's hook (its own folder is node_modules/evil)."""
    writer = build.hook("evil", "1.0.0").spawn(["node", "install.js"])
    _executable(build, writer, f"{PROJECT}/packages/cli/dist/cli.js")
    assert _counted(build, "executable-write")
