"""The npm rows of the real-world corpus: real installs, from the registry npm (pnpm, yarn) is
configured for, of popular packages that run install hooks or builds, judged by the default
policy in the default mode. One project carries most of them (one install), so the file runs
in minutes; esbuild is installed again under pnpm (its build allowed) and yarn classic, and the
git-hook managers under pnpm, where the project names the packages allowed to build."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import require
from tests.corpus.support import CORPUS_MARKS, Unreachable, assert_judged_ordinary, watch

pytestmark = [*CORPUS_MARKS, pytest.mark.npm]

#: package -> version range, for one `npm install`. Where the newest release dropped its install
#: hook, the range names the most installed line that still runs it (the one projects use).
NPM_PROJECT: dict[str, str] = {
    "esbuild": "*",
    "@swc/core": "*",
    "sharp": "0.34.5",
    "@parcel/watcher": "*",
    "core-js": "*",
    "core-js-pure": "*",
    "nx": "*",
    "protobufjs": "7.5.4",
    "@apollo/protobufjs": "*",
    "bufferutil": "*",
    "utf-8-validate": "*",
    "es5-ext": "*",
    "@biomejs/biome": "1.9.4",
    "unrs-resolver": "1.11.1",
    "msgpackr-extract": "*",
    "lmdb": "*",
    "@sentry/cli": "*",
    "msw": "2.7.0",
    "spawn-sync": "1.0.15",
    "vue-demi": "*",
    "@tailwindcss/oxide": "4.1.11",
    "yarn": "1.22.22",
    "bcrypt": "*",
    "husky": "*",
}
# Left out for run time, not for findings: ssh2 and its optional cpu-features build from source
# here (node-gyp, with the headers Node.js ships) and passed with no finding when run once
# (2026-12), but their two compiles added 70 s to the install on this 2-core machine.

#: The packages of NPM_PROJECT whose own hooks must be seen running (the rest of the hooks
#: come with them: @esbuild/*, @swc/* platform packages run none).
NPM_HOOKED = set(NPM_PROJECT) - {"husky"}

#: Popular packages with install hooks that can't install here: the hook needs a host that is
#: not a registry. Each was run once under ciwatch (2026-12) and this is what it reached.
UNREACHABLE = [
    Unreachable("puppeteer", "postinstall downloads Chrome for Testing from Google's storage (install fails)"),
    Unreachable("cypress", "postinstall downloads the Cypress binary from Cypress's download host (install fails)"),
    Unreachable("electron", "postinstall downloads the Electron release from GitHub (install fails)"),
    Unreachable(
        "@prisma/engines",
        "postinstall downloads the query engines from Prisma's binaries host (the install goes on without them)",
    ),
    Unreachable(
        "better-sqlite3",
        "prebuild-install asks GitHub releases for a prebuilt binary before node-gyp builds SQLite from source",
    ),
]


def _project(path: Path, manifest: dict[str, Any]) -> Path:
    path.mkdir()
    (path / "package.json").write_text(json.dumps({"name": path.name, "version": "1.0.0", "private": True, **manifest}))
    # A checkout, as CI has: husky and the git-hook managers set themselves up in the repository.
    subprocess.run(["git", "init", "-q", str(path)], check=True)
    return path


def test_unreachable_list_is_reported() -> None:
    """Nothing is left out silently: the packages that can't install here, and why."""
    for item in UNREACHABLE:
        print(f"unreachable: {item.package}: {item.reason}")
    assert len({item.package for item in UNREACHABLE}) == len(UNREACHABLE)


def test_npm_popular_hooked_packages(tmp_path: Path) -> None:
    require("npm")
    project = _project(
        tmp_path / "app",
        {"scripts": {"prepare": "husky"}, "dependencies": NPM_PROJECT},
    )
    corpus = watch(["npm", "install", "--no-audit", "--no-fund"], project, tmp_path / "out")
    assert_judged_ordinary(corpus, NPM_HOOKED | {"app"})
    assert (project / ".husky" / "_").is_dir(), "husky's prepare did not set up the hooks"
    # What husky wrote is kept in the verdict, with why it was not counted.
    assert {"persistence-write", "executable-write"} <= {
        f["rule"] for f in corpus.not_counted if f["package"] == "app@1.0.0"
    }


def test_pnpm_esbuild_and_git_hook_managers(tmp_path: Path) -> None:
    """pnpm runs a dependency's build only when the project names it: the project approves
    esbuild and its git-hook managers, which then write the project's .git/hooks."""
    require("pnpm")
    allowed = ["esbuild", "lefthook", "simple-git-hooks"]
    project = _project(
        tmp_path / "app",
        {
            "devDependencies": {"esbuild": "*", "lefthook": "*", "simple-git-hooks": "*"},
            "pnpm": {"onlyBuiltDependencies": allowed},
            "simple-git-hooks": {"pre-push": "npm test"},
        },
    )
    (project / "lefthook.yml").write_text("pre-commit:\n  commands:\n    lint:\n      run: npm test\n")
    # pnpm keeps a build's outcome in its store and skips a build it has seen (its side-effects
    # cache): a hook that writes only outside its package (simple-git-hooks) would run once per
    # machine. A CI runner's store is fresh; so is what this test asks for.
    command = ["pnpm", "install", "--reporter=append-only", "--config.side-effects-cache=false"]
    # lefthook sets itself up nowhere CI is set (as in .ci/run) unless LEFTHOOK says so.
    corpus = watch(command, project, tmp_path / "out", env={"LEFTHOOK": "1"})
    assert_judged_ordinary(corpus, allowed)
    assert (project / ".git" / "hooks" / "pre-push").is_file(), "simple-git-hooks did not install its hook"
    # Both wrote the project's hooks (simple-git-hooks then removes the hooks its configuration
    # doesn't name, lefthook's pre-commit among them): reported, with why they don't count.
    writers = {f["package"].split("@")[0] for f in corpus.not_counted if f["rule"] == "persistence-write"}
    assert writers == {"lefthook", "simple-git-hooks"}, corpus.not_counted


def test_yarn_classic_esbuild(tmp_path: Path) -> None:
    require("yarn")
    project = _project(tmp_path / "app", {"dependencies": {"esbuild": "*"}})
    corpus = watch(["yarn", "install", "--non-interactive", "--no-progress"], project, tmp_path / "out")
    assert_judged_ordinary(corpus, ["esbuild"])


def test_bun_trusted_dependencies(tmp_path: Path) -> None:
    """bun runs a dependency's scripts only when ``trustedDependencies`` names it, and installs
    esbuild's and sharp's platform packages without running their scripts at all (its own
    optimisation): those two are installed, the other four run their hooks."""
    require("bun")
    hooked = {"@parcel/watcher": "*", "core-js": "*", "es5-ext": "*", "protobufjs": NPM_PROJECT["protobufjs"]}
    dependencies = {**hooked, "esbuild": "*", "sharp": NPM_PROJECT["sharp"]}
    project = _project(tmp_path / "app", {"dependencies": dependencies, "trustedDependencies": sorted(dependencies)})
    corpus = watch(["bun", "install", "--no-progress"], project, tmp_path / "out")
    assert_judged_ordinary(corpus, hooked)
    assert (project / "node_modules" / "esbuild" / "bin" / "esbuild").exists()


#: Where .ci/run puts yarn berry's release bundle (@yarnpkg/cli-dist, apart from yarn classic).
YARN_BERRY = Path("/usr/local/lib/yarn-berry/node_modules/@yarnpkg/cli-dist/bin/yarn.js")


def test_yarn_berry_esbuild_through_yarn_path(tmp_path: Path) -> None:
    """Berry as projects pin it: the release checked in and named by ``yarnPath``."""
    require("yarn")
    if not YARN_BERRY.is_file():
        pytest.fail(f"{YARN_BERRY} is missing; .ci/run installs @yarnpkg/cli-dist there")
    project = _project(tmp_path / "app", {"dependencies": {"esbuild": "*"}})
    release = project / ".yarn" / "releases" / "yarn-berry.cjs"
    release.parent.mkdir(parents=True)
    release.write_bytes(YARN_BERRY.read_bytes())
    (project / ".yarnrc.yml").write_text(
        f"yarnPath: .yarn/releases/{release.name}\n"
        "nodeLinker: node-modules\n"
        "enableTelemetry: false\n"
        "enableGlobalCache: false\n"
        # Berry 4.18 runs no dependency's build script unless the project lets it.
        "enableScripts: true\n"
        # CI=true makes every berry install --immutable; this one writes its first lockfile.
        "enableImmutableInstalls: false\n"
    )
    corpus = watch(["yarn", "install"], project, tmp_path / "out")
    assert_judged_ordinary(corpus, ["esbuild"])
