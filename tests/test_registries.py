"""Registry discovery: lockfiles, config files and the package managers' own answers.

Every host in this file is made up (``*.example.internal``). Where a real tool's default is
checked, the test asks the tool itself and compares hosts it parsed from the answer, so no
real registry is ever written down.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from ciwatch.registries import RegistrySource, discover_registries, render_registries
from ciwatch.registries._base import host_of, public_url
from ciwatch.registries.cargo import parse_probe
from tests.conftest import require

# -- helpers ----------------------------------------------------------------------------------


def isolated_env(tmp_path: Path, *bin_dirs: Path) -> dict[str, str]:
    """An environment with a fresh HOME and only ``bin_dirs`` on PATH: no real tool answers."""
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    empty = tmp_path / "empty-bin"
    empty.mkdir(exist_ok=True)
    return {"HOME": str(home), "PATH": os.pathsep.join(str(d) for d in (*bin_dirs, empty))}


def project(tmp_path: Path, files: dict[str, str]) -> Path:
    root = tmp_path / "project"
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"))
    root.mkdir(exist_ok=True)
    return root


def fake_tool(bin_dir: Path, name: str, script: str) -> None:
    """A stand-in for a package manager that is not installed: a shell script with canned answers."""
    bin_dir.mkdir(exist_ok=True)
    path = bin_dir / name
    path.write_text("#!/bin/sh\n" + textwrap.dedent(script).lstrip("\n"))
    path.chmod(0o755)


def of(found: list[RegistrySource], ecosystem: str) -> list[RegistrySource]:
    return [s for s in found if s.ecosystem == ecosystem]


def hosts(found: list[RegistrySource], ecosystem: str) -> set[str]:
    return {s.host for s in of(found, ecosystem)}


def host_of_url(url: str) -> str:
    parts = urlsplit(url.strip())
    assert parts.hostname, url
    default = {"http": 80, "https": 443}.get(parts.scheme)
    return parts.hostname if parts.port in (None, default) else f"{parts.hostname}:{parts.port}"


def only_lockfiles(tmp_path: Path, files: dict[str, str]) -> list[RegistrySource]:
    return discover_registries(project(tmp_path, files), isolated_env(tmp_path))


# -- URLs -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "host"),
    [
        ("https://Registry.Example.Internal/npm/", "registry.example.internal"),
        ("https://registry.example.internal:443/", "registry.example.internal"),
        ("http://registry.example.internal:8080/simple", "registry.example.internal:8080"),
        ("sparse+https://cargo.example.internal/index/", "cargo.example.internal"),
        ("registry+https://cargo.example.internal/index", "cargo.example.internal"),
        ("git+ssh://git@git.example.internal/team/repo.git#abc", "git.example.internal"),
        ("git@git.example.internal:team/repo.git", "git.example.internal"),
        ("//npm.example.internal/:_authToken", "npm.example.internal"),
        ("https://user:secret@pypi.example.internal/simple", "pypi.example.internal"),
        ("http://[::1]:8000/simple", "[::1]:8000"),
        ("file:///opt/wheels", None),
        ("/opt/wheels", None),
        ("https://${PRIVATE_HOST}/simple", None),
        ("", None),
    ],
)
def test_host_of(url: str, host: str | None) -> None:
    assert host_of(url) == host


def test_public_url_drops_credentials_query_and_fragment() -> None:
    url = "https://user:secret@pypi.example.internal/simple/?token=abc#frag"
    assert public_url(url) == "https://pypi.example.internal/simple/"


# -- lockfiles --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["package-lock.json", "npm-shrinkwrap.json"])
def test_package_lock_v1_v2_v3(tmp_path: Path, name: str) -> None:
    lock = {
        "lockfileVersion": 2,
        "packages": {
            "": {"name": "app"},
            "node_modules/a": {"resolved": "https://npm-v2.example.internal/a/-/a-1.0.0.tgz"},
            "node_modules/local": {"resolved": "file:../local"},
            "node_modules/g": {"resolved": "git+ssh://git@git.example.internal/team/g.git#0123abcd"},
        },
        "dependencies": {
            "b": {
                "resolved": "https://npm-v1.example.internal/b/-/b-1.0.0.tgz",
                "dependencies": {"c": {"resolved": "https://npm-nested.example.internal/c/-/c-2.0.0.tgz"}},
            }
        },
    }
    found = only_lockfiles(tmp_path, {name: json.dumps(lock)})
    assert hosts(found, "npm") == {
        "npm-v2.example.internal",
        "npm-v1.example.internal",
        "npm-nested.example.internal",
        "git.example.internal",
    }
    assert {s.source for s in of(found, "npm")} == {f"{name} (resolved)"}
    tarball = next(s for s in found if s.host == "npm-v2.example.internal")
    assert tarball.url == "https://npm-v2.example.internal/a/-/a-1.0.0.tgz"


def test_package_lock_without_resolved_gives_nothing(tmp_path: Path) -> None:
    """``omit-lockfile-registry-resolved`` writes lockfiles without ``resolved``."""
    lock = {"lockfileVersion": 3, "packages": {"": {}, "node_modules/a": {"version": "1.0.0"}}}
    assert only_lockfiles(tmp_path, {"package-lock.json": json.dumps(lock)}) == []


def test_yarn_lock_v1(tmp_path: Path) -> None:
    found = only_lockfiles(
        tmp_path,
        {
            "yarn.lock": """
            # THIS IS AN AUTOGENERATED FILE. DO NOT EDIT THIS FILE DIRECTLY.
            # yarn lockfile v1


            left-pad@^1.3.0:
              version "1.3.0"
              resolved "https://yarn-v1.example.internal/left-pad/-/left-pad-1.3.0.tgz#5b8a3a7765dfe001261dde915589e782f8c94d1e"
              integrity sha512-abc

            right-pad@^1.0.0:
              version "1.0.1"
              resolved "https://yarn-v1.example.internal/right-pad/-/right-pad-1.0.1.tgz#8ca08c2cbb5b55e74dafa96bf7fd1a27d568c07b"
            """
        },
    )
    assert found == [
        RegistrySource(
            host="yarn-v1.example.internal",
            ecosystem="yarn",
            source="yarn.lock:7 (resolved)",
            url="https://yarn-v1.example.internal/left-pad/-/left-pad-1.3.0.tgz",
        )
    ]


def test_yarn_lock_berry(tmp_path: Path) -> None:
    found = only_lockfiles(
        tmp_path,
        {
            "yarn.lock": """
            # This file is generated by running "yarn install" inside your project.

            __metadata:
              version: 8
              cacheKey: 10c0

            "left-pad@npm:^1.3.0":
              version: 1.3.0
              resolution: "left-pad@npm:1.3.0"
              checksum: 10c0/abc
              languageName: node
              linkType: hard

            "tarball@https://berry-tarball.example.internal/tarball-1.0.0.tgz":
              version: 1.0.0
              resolution: "tarball@https://berry-tarball.example.internal/tarball-1.0.0.tgz"
              checksum: 10c0/def
              languageName: node
              linkType: hard

            "gitdep@git+https://git.example.internal/team/gitdep.git#commit=0123abcd":
              version: 2.0.0
              resolution: "gitdep@git+https://git.example.internal/team/gitdep.git#commit=0123abcd"
            """
        },
    )
    assert {(s.host, s.source) for s in found} == {
        ("berry-tarball.example.internal", "yarn.lock:16 (resolution)"),
        ("git.example.internal", "yarn.lock:23 (resolution)"),
    }


def test_pnpm_lock(tmp_path: Path) -> None:
    found = only_lockfiles(
        tmp_path,
        {
            "pnpm-lock.yaml": """
            lockfileVersion: '9.0'

            packages:

              left-pad@1.3.0:
                resolution: {integrity: sha512-abc, tarball: https://pnpm-mirror.example.internal/left-pad/-/left-pad-1.3.0.tgz}

              right-pad@1.0.1:
                resolution:
                  integrity: sha512-def
                  tarball: https://pnpm-other.example.internal/right-pad-1.0.1.tgz

              gitdep@https://codeload.example.internal/team/gitdep/tar.gz/0123abcd:
                resolution: {commit: 0123abcd, repo: https://git.example.internal/team/gitdep.git, type: git}
            """
        },
    )
    assert {(s.host, s.source) for s in of(found, "pnpm")} == {
        ("pnpm-mirror.example.internal", "pnpm-lock.yaml:6 (tarball)"),
        ("pnpm-other.example.internal", "pnpm-lock.yaml:11 (tarball)"),
        ("git.example.internal", "pnpm-lock.yaml:14 (repo)"),
    }


def test_poetry_lock(tmp_path: Path) -> None:
    found = only_lockfiles(
        tmp_path,
        {
            "poetry.lock": """
            [[package]]
            name = "requests"
            version = "2.31.0"
            files = [
                {file = "requests-2.31.0.tar.gz", hash = "sha256:abc"},
            ]

            [package.source]
            type = "legacy"
            url = "https://poetry-mirror.example.internal/simple"
            reference = "corp"

            [[package]]
            name = "local"
            version = "0.1.0"

            [package.source]
            type = "directory"
            url = "../local"

            [metadata]
            lock-version = "2.0"
            """
        },
    )
    assert [(s.host, s.ecosystem, s.source) for s in found] == [
        ("poetry-mirror.example.internal", "poetry", "poetry.lock:10 (package.source)")
    ]


def test_uv_lock(tmp_path: Path) -> None:
    found = only_lockfiles(
        tmp_path,
        {
            "uv.lock": """
            version = 1
            requires-python = ">=3.11"

            [[package]]
            name = "idna"
            version = "3.7"
            source = { registry = "https://uv-index.example.internal/simple" }
            sdist = { url = "https://uv-files.example.internal/packages/idna-3.7.tar.gz", hash = "sha256:a", size = 1 }
            wheels = [
                { url = "https://uv-files.example.internal/packages/idna-3.7-py3-none-any.whl", hash = "sha256:b" },
            ]

            [[package]]
            name = "tool"
            version = "1.0"
            source = { git = "https://git.example.internal/team/tool?rev=main#0123abcd" }

            [[package]]
            name = "app"
            version = "0.1.0"
            source = { editable = "." }
            """
        },
    )
    assert {(s.host, s.source) for s in of(found, "uv")} == {
        ("uv-index.example.internal", "uv.lock:7 (source registry)"),
        ("uv-files.example.internal", "uv.lock:8 (url)"),
        ("git.example.internal", "uv.lock:16 (source git)"),
    }


def test_pipfile_lock(tmp_path: Path) -> None:
    lock = {
        "_meta": {
            "sources": [{"name": "corp", "url": "https://pipenv-index.example.internal/simple", "verify_ssl": True}]
        },
        "default": {"tool": {"git": "https://git.example.internal/team/tool.git", "ref": "abc"}},
        "develop": {},
    }
    found = only_lockfiles(tmp_path, {"Pipfile.lock": json.dumps(lock)})
    assert {(s.host, s.ecosystem, s.source) for s in found} == {
        ("pipenv-index.example.internal", "pip", "Pipfile.lock (source corp)"),
        ("git.example.internal", "pip", "Pipfile.lock (git)"),
    }


def test_requirements_files_with_includes(tmp_path: Path) -> None:
    env = isolated_env(tmp_path)
    env["PRIVATE_INDEX_HOST"] = "expanded.example.internal"
    root = project(
        tmp_path,
        {
            "requirements.txt": """
            # the index for everything
            -i https://req-index.example.internal/simple
            --extra-index-url=https://req-extra.example.internal/simple  # a comment
            --find-links https://req-links.example.internal/wheels/
            -r requirements/base.txt
            requests==2.31.0 \\
                --hash=sha256:abc
            tool @ https://req-direct.example.internal/tool-1.0.tar.gz
            -e git+https://git.example.internal/team/lib.git#egg=lib
            """,
            "requirements/base.txt": """
            --extra-index-url https://${PRIVATE_INDEX_HOST}/simple
            -c ../constraints.txt
            """,
            "constraints.txt": """
            --index-url http://constraint.example.internal:8080/simple
            """,
            "dev-requirements.txt": "-f ./wheels\n",
        },
    )
    found = discover_registries(root, env)
    assert {(s.host, s.source) for s in of(found, "pip")} == {
        ("req-index.example.internal", "requirements.txt:2 (--index-url)"),
        ("req-extra.example.internal", "requirements.txt:3 (--extra-index-url)"),
        ("req-links.example.internal", "requirements.txt:4 (--find-links)"),
        ("req-direct.example.internal", "requirements.txt:8 (direct url)"),
        ("git.example.internal", "requirements.txt:9 (direct url)"),
        ("expanded.example.internal", "requirements/base.txt:1 (--extra-index-url)"),
        ("constraint.example.internal:8080", "constraints.txt:1 (--index-url)"),
    }


def test_requirements_include_cycle_ends(tmp_path: Path) -> None:
    found = only_lockfiles(
        tmp_path,
        {
            "requirements.txt": "-i https://cycle.example.internal/simple\n-r requirements-b.txt\n",
            "requirements-b.txt": "-r requirements.txt\n",
        },
    )
    assert [s.host for s in found] == ["cycle.example.internal"]


def test_cargo_lock(tmp_path: Path) -> None:
    found = only_lockfiles(
        tmp_path,
        {
            "Cargo.lock": """
            # This file is automatically @generated by Cargo.
            version = 4

            [[package]]
            name = "app"
            version = "0.1.0"

            [[package]]
            name = "a"
            version = "1.0.0"
            source = "registry+https://cargo-git-index.example.internal/index"
            checksum = "abc"

            [[package]]
            name = "b"
            version = "1.0.0"
            source = "sparse+https://cargo-sparse.example.internal/api/v1/crates/"

            [[package]]
            name = "c"
            version = "0.3.0"
            source = "git+https://git.example.internal/team/c?branch=main#0123abcd"
            """
        },
    )
    assert found == [
        RegistrySource(
            "cargo-git-index.example.internal",
            "cargo",
            "Cargo.lock:11 (registry)",
            "registry+https://cargo-git-index.example.internal/index",
        ),
        RegistrySource(
            "cargo-sparse.example.internal",
            "cargo",
            "Cargo.lock:17 (sparse)",
            "sparse+https://cargo-sparse.example.internal/api/v1/crates/",
        ),
        RegistrySource(
            "git.example.internal", "cargo", "Cargo.lock:22 (git)", "git+https://git.example.internal/team/c"
        ),
    ]


def test_gemfile_lock_and_gemfile(tmp_path: Path) -> None:
    found = only_lockfiles(
        tmp_path,
        {
            "Gemfile.lock": """
            GIT
              remote: https://git.example.internal/team/tool.git
              revision: 0123abcd
              specs:
                tool (1.0)

            GEM
              remote: https://gems.example.internal/
              specs:
                rake (13.0.6)

            PATH
              remote: .
              specs:
                app (0.1.0)
            """,
            "Gemfile": """
            source "https://gems.example.internal"
            gem "tool", git: "https://git.example.internal/team/tool.git"
            """,
        },
    )
    assert {(s.host, s.source) for s in of(found, "gem")} == {
        ("git.example.internal", "Gemfile.lock:2 (remote)"),
        ("gems.example.internal", "Gemfile.lock:8 (remote)"),
        ("gems.example.internal", "Gemfile:1 (source)"),
        ("git.example.internal", "Gemfile:2 (git)"),
    }


def test_broken_lockfile_is_skipped(tmp_path: Path) -> None:
    found = only_lockfiles(
        tmp_path,
        {"package-lock.json": "{ not json", "Cargo.lock": 'source = "sparse+https://still.example.internal/"\n'},
    )
    assert [s.host for s in found] == ["still.example.internal"]


# -- config files, read without the tools -----------------------------------------------------


def test_npmrc_and_env_without_npm(tmp_path: Path) -> None:
    env = isolated_env(tmp_path)
    env["npm_config_@env:registry"] = "https://npm-env.example.internal/"
    env["CORP_NPM_HOST"] = "npm-expanded.example.internal"
    Path(env["HOME"], ".npmrc").write_text("registry=https://npm-user.example.internal/\n")
    root = project(tmp_path, {".npmrc": "@corp:registry=https://${CORP_NPM_HOST}/\n; a comment\n"})
    found = discover_registries(root, env)
    assert {(s.host, s.source) for s in of(found, "npm")} == {
        ("npm-expanded.example.internal", ".npmrc (@corp:registry)"),
        ("npm-user.example.internal", f"{env['HOME']}/.npmrc (registry)"),
        ("npm-env.example.internal", "npm_config_@env:registry (@env:registry)"),
    }


def test_pip_env_variables_without_pip(tmp_path: Path) -> None:
    env = isolated_env(tmp_path)
    env["PIP_INDEX_URL"] = "https://user:token@pip-env.example.internal/simple"
    env["PIP_EXTRA_INDEX_URL"] = (
        "https://pip-extra-a.example.internal/simple https://pip-extra-b.example.internal/simple"
    )
    env["PIP_FIND_LINKS"] = "/opt/wheels"
    found = discover_registries(project(tmp_path, {}), env)
    assert {(s.host, s.source) for s in of(found, "pip")} == {
        ("pip-env.example.internal", "PIP_INDEX_URL"),
        ("pip-extra-a.example.internal", "PIP_EXTRA_INDEX_URL"),
        ("pip-extra-b.example.internal", "PIP_EXTRA_INDEX_URL"),
    }
    assert (
        next(s for s in found if s.host == "pip-env.example.internal").url == "https://pip-env.example.internal/simple"
    )


def test_cargo_config_up_the_tree_and_env(tmp_path: Path) -> None:
    env = isolated_env(tmp_path)
    env["CARGO_REGISTRIES_CORP_INDEX"] = "sparse+https://cargo-env.example.internal/index/"
    root = project(
        tmp_path,
        {
            "app/Cargo.toml": '[package]\nname = "app"\nversion = "0.1.0"\n',
            ".cargo/config.toml": """
            [source.crates-io]
            replace-with = "mirror"

            [source.mirror]
            registry = "sparse+https://cargo-mirror.example.internal/index/"

            [source.vendored]
            directory = "vendor"
            """,
        },
    )
    home_config = Path(env["HOME"], ".cargo", "config.toml")
    home_config.parent.mkdir()
    home_config.write_text('[registries.team]\nindex = "https://cargo-team.example.internal/git/index"\n')
    found = discover_registries(root / "app", env)
    assert {(s.host, s.source) for s in of(found, "cargo")} == {
        ("cargo-mirror.example.internal", f"{root}/.cargo/config.toml (source.mirror.registry)"),
        ("cargo-team.example.internal", f"{home_config} (registries.team.index)"),
        ("cargo-env.example.internal", "CARGO_REGISTRIES_CORP_INDEX"),
    }


def test_cargo_probe_log_parsing() -> None:
    log = (
        "0.05s DEBUG cargo::sources::registry::http_remote: invalidated index cache\n"
        "0.05s DEBUG cargo::sources::registry::index::cache: cache missing: No such file or directory "
        '(os error 2) cache_path="/tmp/x/cargo-home/registry/index/idx.example.internal-0123456789abcdef'
        '/.cache/ci/wa/p"\n'
        "error: could not find `p` in registry `https://canonical.example.internal/team/index`\n"
    )
    assert parse_probe(log, "cargo 1.95.0") == [
        RegistrySource("idx.example.internal", "cargo", "cargo default index (sparse, cargo 1.95.0)")
    ]
    assert parse_probe("error: no such command: `info`", "cargo 1.60.0") == []


def test_cargo_download_host_from_cached_index_config(tmp_path: Path) -> None:
    env = isolated_env(tmp_path)
    cargo_home = Path(env["HOME"], ".cargo")
    index_dir = cargo_home / "registry" / "index" / "cargo-mirror.example.internal-0123456789abcdef"
    index_dir.mkdir(parents=True)
    (index_dir / "config.json").write_text(json.dumps({"dl": "https://cargo-dl.example.internal/crates"}))
    (cargo_home / "config.toml").write_text('[registries.m]\nindex = "sparse+https://cargo-mirror.example.internal/"\n')
    found = discover_registries(project(tmp_path, {}), env)
    assert ("cargo-dl.example.internal", "cargo index config.json (dl of cargo-mirror.example.internal)") in {
        (s.host, s.source) for s in found
    }


def test_uv_and_poetry_config(tmp_path: Path) -> None:
    env = isolated_env(tmp_path)
    env["UV_INDEX"] = "team=https://uv-env.example.internal/simple"
    env["POETRY_REPOSITORIES_CORP_URL"] = "https://poetry-env.example.internal/simple"
    root = project(
        tmp_path,
        {
            "pyproject.toml": """
            [project]
            name = "app"

            [[tool.uv.index]]
            name = "corp"
            url = "https://uv-index.example.internal/simple"
            default = true

            [tool.uv.sources]
            tool = { git = "https://git.example.internal/team/tool" }

            [[tool.poetry.source]]
            name = "corp"
            url = "https://poetry-index.example.internal/simple"
            priority = "primary"
            """
        },
    )
    found = discover_registries(root, env)
    assert {(s.host, s.source) for s in of(found, "uv")} == {
        ("uv-index.example.internal", "pyproject.toml (index corp)"),
        ("git.example.internal", "pyproject.toml (sources.tool.git)"),
        ("uv-env.example.internal", "UV_INDEX"),
    }
    assert {(s.host, s.source) for s in of(found, "poetry")} == {
        ("poetry-index.example.internal", "pyproject.toml (tool.poetry.source corp)"),
        ("poetry-env.example.internal", "POETRY_REPOSITORIES_CORP_URL"),
    }


def test_bunfig(tmp_path: Path) -> None:
    root = project(
        tmp_path,
        {
            "bunfig.toml": """
            [install]
            registry = "https://bun-registry.example.internal/"

            [install.scopes]
            corp = { url = "https://bun-scope.example.internal/", token = "secret" }
            """
        },
    )
    found = discover_registries(root, isolated_env(tmp_path))
    assert {(s.host, s.source) for s in of(found, "bun")} == {
        ("bun-registry.example.internal", "bunfig.toml (install.registry)"),
        ("bun-scope.example.internal", "bunfig.toml (install.scopes.corp)"),
    }


def test_bun_reads_npmrc_and_learns_its_default_from_npm(tmp_path: Path) -> None:
    """bun's default is npm's: npm is asked with no config file read (none exists where it is
    pointed, and its working directory is empty), so a project's .npmrc can't pose as it."""
    bin_dir = tmp_path / "bin"
    fake_tool(bin_dir, "bun", "exit 0\n")
    fake_tool(
        bin_dir,
        "npm",
        """
        case "$*" in
        "config get registry")
            [ -e "$npm_config_userconfig" ] || [ -e "$npm_config_globalconfig" ] || [ -n "$(ls -A .)" ] &&
                echo https://npm-saw-config.example.internal/ || echo https://npm-default.example.internal/ ;;
        "config list --json") echo '{}' ;;
        esac
        """,
    )
    root = project(tmp_path, {".npmrc": "registry=https://project-npmrc.example.internal/\n"})
    found = discover_registries(root, isolated_env(tmp_path, bin_dir))
    assert {(s.host, s.source) for s in of(found, "bun")} == {
        ("project-npmrc.example.internal", ".npmrc (registry)"),
        ("npm-default.example.internal", "bun's default registry, as npm knows it"),
    }


def test_bun_not_installed_asks_npm_nothing(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    fake_tool(bin_dir, "npm", 'echo https://npm-default.example.internal/; echo "$*" >> "$HOME/asked"\n')
    found = discover_registries(project(tmp_path, {}), isolated_env(tmp_path, bin_dir))
    assert of(found, "bun") == []


def test_maven_settings_mirror_and_pom(tmp_path: Path) -> None:
    env = isolated_env(tmp_path)
    settings = Path(env["HOME"], ".m2", "settings.xml")
    settings.parent.mkdir()
    settings.write_text(
        """<settings xmlns="urn:example:settings">
          <mirrors>
            <mirror><id>corp</id><mirrorOf>*</mirrorOf><url>https://maven-mirror.example.internal/repo</url></mirror>
            <mirror><id>block</id><mirrorOf>external:http:*</mirrorOf><url>http://0.0.0.0/</url>
              <blocked>true</blocked></mirror>
          </mirrors>
        </settings>"""
    )
    root = project(
        tmp_path,
        {
            "pom.xml": """
            <project xmlns="urn:example:pom">
              <repositories>
                <repository><id>extra</id><url>https://maven-extra.example.internal/m2</url></repository>
                <repository><id>templated</id><url>${repo.url}</url></repository>
              </repositories>
              <pluginRepositories>
                <pluginRepository><id>plugins</id><url>https://maven-plugins.example.internal/m2</url></pluginRepository>
              </pluginRepositories>
            </project>
            """
        },
    )
    found = discover_registries(root, env)
    assert {(s.host, s.source) for s in of(found, "maven")} == {
        ("maven-mirror.example.internal", f"{settings} (mirror corp of *)"),
        ("maven-extra.example.internal", "pom.xml (repository extra)"),
        ("maven-plugins.example.internal", "pom.xml (pluginRepository plugins)"),
    }


def test_gradle_wrapper_and_build_script_without_gradle(tmp_path: Path) -> None:
    root = project(
        tmp_path,
        {
            "gradle/wrapper/gradle-wrapper.properties": (
                "distributionUrl=https\\://gradle-dist.example.internal/gradle-8.7-bin.zip\n"
            ),
            "settings.gradle.kts": """
            dependencyResolutionManagement {
                repositories {
                    maven { url = uri("https://gradle-repo.example.internal/m2") }
                    maven("https://gradle-kts.example.internal/m2")
                }
            }
            """,
        },
    )
    found = discover_registries(root, isolated_env(tmp_path))
    assert {(s.host, s.source) for s in of(found, "gradle")} == {
        ("gradle-dist.example.internal", "gradle-wrapper.properties (distributionUrl)"),
        ("gradle-repo.example.internal", "settings.gradle.kts:3 (repository url)"),
        ("gradle-kts.example.internal", "settings.gradle.kts:4 (repository url)"),
    }


# -- tools that are not installed here: stand-ins with their output formats --------------------


def test_yarn1_config(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    yarn_config = {
        "registry": "https://yarn-default.example.internal/",
        "@corp:registry": "https://yarn-corp.example.internal/",
    }
    npm_config = {"registry": "https://npm-via-yarn.example.internal/"}
    fake_tool(
        bin_dir,
        "yarn",
        f"""
        case "$*" in
          --version) echo 1.22.22 ;;
          "config list --json")
            echo '{{"type":"info","data":"yarn config"}}'
            echo '{{"type":"inspect","data":{json.dumps(yarn_config)}}}'
            echo '{{"type":"info","data":"npm config"}}'
            echo '{{"type":"inspect","data":{json.dumps(npm_config)}}}' ;;
          *) exit 1 ;;
        esac
        """,
    )
    found = discover_registries(project(tmp_path, {}), isolated_env(tmp_path, bin_dir))
    assert {(s.host, s.source) for s in of(found, "yarn")} == {
        ("yarn-default.example.internal", "yarn config list (registry, yarn 1.22.22)"),
        ("yarn-corp.example.internal", "yarn config list (@corp:registry, yarn 1.22.22)"),
        ("npm-via-yarn.example.internal", "yarn config list, npm part (registry, yarn 1.22.22)"),
    }


def test_yarn_berry_config(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    lines = [
        {"key": "enableScripts", "effective": False, "source": "<default>"},
        {"key": "npmRegistryServer", "effective": "https://berry-default.example.internal", "source": "<default>"},
        {
            "key": "npmScopes",
            "effective": {"corp": {"npmRegistryServer": "https://berry-corp.example.internal"}},
            "source": "/p/.yarnrc.yml",
        },
    ]
    answer = tmp_path / "berry-config.ndjson"
    answer.write_text("".join(json.dumps(line) + "\n" for line in lines))
    fake_tool(
        bin_dir,
        "yarn",
        f"""
        case "$*" in
          --version) echo 4.5.0 ;;
          "config --json") /bin/cat '{answer}' ;;
          *) exit 1 ;;
        esac
        """,
    )
    found = discover_registries(project(tmp_path, {}), isolated_env(tmp_path, bin_dir))
    assert {(s.host, s.source) for s in of(found, "yarn")} == {
        ("berry-default.example.internal", "yarn config (npmRegistryServer, from <default>, yarn 4.5.0)"),
        (
            "berry-corp.example.internal",
            "yarn config (npmScopes.corp.npmRegistryServer, from /p/.yarnrc.yml, yarn 4.5.0)",
        ),
    }


def test_yarnrc_files_without_yarn(tmp_path: Path) -> None:
    root = project(
        tmp_path,
        {
            ".yarnrc.yml": 'npmRegistryServer: "https://berry-file.example.internal"\n'
            "npmScopes:\n  corp:\n    npmRegistryServer: https://berry-file-corp.example.internal\n",
            ".yarnrc": 'registry "https://yarn1-file.example.internal/"\n',
        },
    )
    found = discover_registries(root, isolated_env(tmp_path))
    assert {(s.host, s.source) for s in of(found, "yarn")} == {
        ("berry-file.example.internal", ".yarnrc.yml (npmRegistryServer)"),
        ("berry-file-corp.example.internal", ".yarnrc.yml (npmScopes.corp.npmRegistryServer)"),
        ("yarn1-file.example.internal", ".yarnrc (registry)"),
    }


def test_pnpm_config(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    config = {
        "registry": "https://pnpm-default.example.internal/",
        "@jsr:registry": "https://pnpm-jsr.example.internal/",
    }
    fake_tool(bin_dir, "pnpm", f"""[ "$*" = "config list --json" ] && echo '{json.dumps(config)}'\n""")
    found = discover_registries(project(tmp_path, {}), isolated_env(tmp_path, bin_dir))
    assert {(s.host, s.source) for s in of(found, "pnpm")} == {
        ("pnpm-default.example.internal", "pnpm config list (registry)"),
        ("pnpm-jsr.example.internal", "pnpm config list (@jsr:registry)"),
    }


def test_go_env(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    answer = {
        "GOVERSION": "go1.22.5",
        "GOPROXY": "https://goproxy.example.internal,https://goproxy-2.example.internal|direct",
        "GOSUMDB": "sum.example.internal",
        "GOPRIVATE": "git.example.internal/team/*,*.corp.example.internal",
        "GONOPROXY": "",
    }
    fake_tool(bin_dir, "go", f"""[ "$1 $2" = "env -json" ] && echo '{json.dumps(answer)}'\n""")
    found = discover_registries(project(tmp_path, {}), isolated_env(tmp_path, bin_dir))
    assert {(s.host, s.source) for s in of(found, "go")} == {
        ("goproxy.example.internal", "go env GOPROXY (go1.22.5)"),
        ("goproxy-2.example.internal", "go env GOPROXY (go1.22.5)"),
        ("sum.example.internal", "go env GOSUMDB (go1.22.5)"),
        ("git.example.internal", "go env GOPRIVATE (go1.22.5), fetched directly"),
    }


def test_go_env_variables_without_go(tmp_path: Path) -> None:
    env = isolated_env(tmp_path)
    env["GOPROXY"] = "https://goproxy.example.internal,https://goproxy.example.internal/second|direct"
    env["GOSUMDB"] = "sumdb.example.internal+abcdef https://sumdb-mirror.example.internal"
    found = discover_registries(project(tmp_path, {}), env)
    assert [(s.host, s.source, s.url) for s in of(found, "go")] == [
        ("goproxy.example.internal", "GOPROXY", "https://goproxy.example.internal"),
        ("sumdb-mirror.example.internal", "GOSUMDB", "https://sumdb-mirror.example.internal"),
    ]


def test_gem_sources_and_bundler_mirror(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    fake_tool(
        bin_dir,
        "gem",
        """
        [ "$*" = "sources --list" ] || exit 1
        printf '*** CURRENT SOURCES ***\\n\\nhttps://gem-default.example.internal/\\n'
        """,
    )
    env = isolated_env(tmp_path, bin_dir)
    env["BUNDLE_MIRROR__GEMS__EXAMPLE__INTERNAL"] = "https://gem-mirror.example.internal/"
    found = discover_registries(project(tmp_path, {}), env)
    assert {(s.host, s.source) for s in of(found, "gem")} == {
        ("gem-default.example.internal", "gem sources --list"),
        ("gem-mirror.example.internal", "BUNDLE_MIRROR__GEMS__EXAMPLE__INTERNAL"),
    }


def test_a_failing_or_hanging_tool_is_skipped(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    fake_tool(bin_dir, "pnpm", "echo 'not json'; exit 3\n")
    fake_tool(bin_dir, "gem", "/bin/sleep 30 &\n/bin/sleep 30\n")  # a child that would keep the pipes open
    root = project(tmp_path, {"Cargo.lock": 'source = "sparse+https://still.example.internal/"\n'})
    found = discover_registries(root, isolated_env(tmp_path, bin_dir), timeout_s=1.0)
    assert [s.host for s in found] == ["still.example.internal"]


# -- the real tools of this machine -----------------------------------------------------------


@pytest.mark.npm
def test_npm_registry_is_what_npm_reports(tmp_path: Path) -> None:
    npm = require("npm")
    root = project(tmp_path, {"package.json": '{"name": "app", "version": "1.0.0"}'})
    env = dict(os.environ)
    reported = subprocess.run(
        [npm, "config", "get", "registry"], cwd=root, env=env, capture_output=True, text=True, check=True
    ).stdout
    found = discover_registries(root, env)
    assert host_of_url(reported) in hosts(found, "npm")
    assert any(s.source.startswith("npm config list (registry") for s in of(found, "npm"))


@pytest.mark.npm
def test_npm_scoped_registry_from_project_npmrc_and_env(tmp_path: Path) -> None:
    require("npm")
    root = project(
        tmp_path,
        {
            "package.json": '{"name": "app", "version": "1.0.0"}',
            ".npmrc": "@acme:registry=https://npm-scope.example.internal/\n",
        },
    )
    env = dict(os.environ)
    env["npm_config_@envscope:registry"] = "https://npm-env-scope.example.internal/"
    found = discover_registries(root, env)
    assert (
        RegistrySource(
            "npm-scope.example.internal",
            "npm",
            "npm config list (@acme:registry)",
            "https://npm-scope.example.internal/",
        )
        in found
    )
    assert (
        "npm-env-scope.example.internal",
        "npm config list (@envscope:registry, from npm_config_@envscope:registry)",
    ) in {(s.host, s.source) for s in found}


def pip_reported_index_hosts(tmp_path: Path) -> set[str]:
    """The index hosts pip names itself: with ``--no-index`` it logs the ones it ignores.
    Nothing is fetched."""
    pip = require("pip")
    done = subprocess.run(
        [pip, "download", "--no-index", "-vv", "-d", str(tmp_path / "dl"), "ciwatch-no-such-package"],
        capture_output=True,
        text=True,
        check=False,
    )
    ignoring = re.search(r"Ignoring indexes: (\S+)", done.stdout + done.stderr)
    assert ignoring, done.stdout + done.stderr
    return {host_of_url(u) for u in ignoring.group(1).split(",") if u.startswith(("http://", "https://"))}


@pytest.mark.pip
def test_pip_default_index_is_what_pip_reports(tmp_path: Path) -> None:
    reported = pip_reported_index_hosts(tmp_path)
    assert reported, "pip reported no remote index"
    found = discover_registries(project(tmp_path, {}), dict(os.environ))
    assert reported <= hosts(found, "pip")
    version = subprocess.run([require("pip"), "--version"], capture_output=True, text=True, check=True).stdout.split()[
        1
    ]
    if "PIP_INDEX_URL" not in os.environ:
        defaults = [s for s in of(found, "pip") if s.source.startswith("pip default index")]
        assert [s.source for s in defaults] == [f"pip default index (pip {version})"]
        assert {s.host for s in defaults} <= reported
        assert any(s.source == f"pip default file host (pip {version})" for s in of(found, "pip"))


@pytest.mark.pip
def test_pip_index_url_env_replaces_the_default(tmp_path: Path) -> None:
    env = dict(os.environ)
    env["PIP_INDEX_URL"] = "https://pip-env-index.example.internal/simple"
    found = discover_registries(project(tmp_path, {}), env)
    assert ("pip-env-index.example.internal", "PIP_INDEX_URL") in {(s.host, s.source) for s in of(found, "pip")}
    assert not [s for s in of(found, "pip") if s.source.startswith("pip default")]


@pytest.mark.pip
def test_uv_default_is_pips_default(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "UV_"))}
    root = project(tmp_path, {"uv.lock": "version = 1\n"})
    found = discover_registries(root, env)
    pip_defaults = {s.host for s in of(found, "pip") if s.source.startswith("pip default")}
    uv_defaults = {s.host for s in of(found, "uv") if s.source.startswith("uv default")}
    assert pip_defaults and uv_defaults == pip_defaults


def test_apt_sites_are_what_apt_reports(tmp_path: Path) -> None:
    apt_get = shutil.which("apt-get")
    if apt_get is None:
        pytest.skip("apt-get is not installed")
    reported: set[str] = set()
    for extra in ([], ["--no-release-info"]):
        out = subprocess.run(
            [apt_get, "indextargets", *extra, "--format", "$(SITE)"], capture_output=True, text=True, check=True
        ).stdout
        reported |= {host_of_url(line) for line in out.split() if line.startswith(("http://", "https://"))}
    found = discover_registries(project(tmp_path, {}), dict(os.environ))
    assert hosts(found, "apt") == reported
    assert all(re.fullmatch(r"apt-get indextargets \(.+:\d+\)", s.source) for s in of(found, "apt"))


def test_cargo_default_index_comes_from_cargo(tmp_path: Path) -> None:
    if shutil.which("cargo") is None:
        pytest.skip("cargo is not installed")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CARGO_REGISTRIES_")}
    found = discover_registries(project(tmp_path, {}), env)
    defaults = [s for s in of(found, "cargo") if s.source.startswith("cargo default index")]
    assert len(defaults) == 1 and "." in defaults[0].host


def test_maven_central_comes_from_the_super_pom(tmp_path: Path) -> None:
    mvn = shutil.which("mvn")
    if mvn is None:
        pytest.skip("mvn is not installed")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "mvn").symlink_to(mvn)
    found = discover_registries(project(tmp_path, {}), isolated_env(tmp_path, bin_dir))
    central = [s for s in of(found, "maven") if s.source.startswith("Maven super-POM")]
    assert {s.source.rsplit("(", 1)[1] for s in central} == {"repository central)", "pluginRepository central)"}
    assert len({s.host for s in central}) == 1


# -- the whole, and its rendering -------------------------------------------------------------


def test_deduplicated_and_sorted(tmp_path: Path) -> None:
    lock = {
        "packages": {f"node_modules/p{i}": {"resolved": f"https://dup.example.internal/p{i}.tgz"} for i in range(5)}
    }
    root = project(
        tmp_path,
        {"package-lock.json": json.dumps(lock), "Cargo.lock": 'source = "sparse+https://a.example.internal/"\n'},
    )
    found = discover_registries(root, isolated_env(tmp_path))
    assert [(s.ecosystem, s.host) for s in found] == [("npm", "dup.example.internal"), ("cargo", "a.example.internal")]


def test_render_registries() -> None:
    sources = [
        RegistrySource("pypi.example.internal", "pip", "pip config (global.index-url)"),
        RegistrySource("npm.example.internal", "npm", "package-lock.json (resolved)"),
        RegistrySource("npm.example.internal", "npm", "npm config list (registry)"),
        RegistrySource("npm.example.internal", "npm", "npm config list (registry)"),
        RegistrySource("scoped.example.internal", "npm", "npm config list (@corp:registry)"),
        RegistrySource("deb.example.internal", "apt", "apt-get indextargets (/etc/apt/sources.list:1)"),
    ]
    assert render_registries(sources) == (
        "npm\n"
        "  npm.example.internal     npm config list (registry); package-lock.json (resolved)\n"
        "  scoped.example.internal  npm config list (@corp:registry)\n"
        "pip\n"
        "  pypi.example.internal    pip config (global.index-url)\n"
        "apt\n"
        "  deb.example.internal     apt-get indextargets (/etc/apt/sources.list:1)\n"
    )
    assert render_registries([]) == "No registries found.\n"


# -- the scratch directory -------------------------------------------------------------------

_EXIT_DURING_DISCOVERY = """
import os, sys, threading, time
from pathlib import Path
from ciwatch.registries import discover_registries
env = {"HOME": sys.argv[2], "PATH": sys.argv[3]}
threading.Thread(target=discover_registries, args=(Path(sys.argv[1]), env), daemon=True).start()
time.sleep(1.0)
os._exit(0)  # as the tracer process ends, while discovery still runs on its thread
"""


def _scratch_dirs(base: Path) -> list[Path]:
    return sorted(base.glob("ciwatch-registries-*"))


def test_discovery_leaves_no_scratch_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    scratch_base = tmp_path / "tmp"
    scratch_base.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch_base))
    bin_dir = tmp_path / "bin"
    fake_tool(bin_dir, "npm", 'echo "registry = https://npm.example.internal/"')
    discover_registries(project(tmp_path, {}), isolated_env(tmp_path, bin_dir), timeout_s=5)
    assert _scratch_dirs(scratch_base) == []


def test_a_scratch_directory_left_by_a_process_that_ended_mid_discovery_is_swept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    scratch_base = tmp_path / "tmp"
    scratch_base.mkdir()
    bin_dir = tmp_path / "bin"
    fake_tool(bin_dir, "npm", "exec /bin/sleep 5")  # still asking npm when the process ends
    env = isolated_env(tmp_path, bin_dir)
    root = project(tmp_path, {})
    subprocess.run(
        [sys.executable, "-c", _EXIT_DURING_DISCOVERY, str(root), env["HOME"], env["PATH"]],
        env={**os.environ, "TMPDIR": str(scratch_base)},
        check=True,
        timeout=60,
    )
    assert _scratch_dirs(scratch_base), "expected the ended process to leave its scratch directory"
    monkeypatch.setattr(tempfile, "tempdir", str(scratch_base))
    fake_tool(bin_dir, "npm", "exit 1")
    discover_registries(root, env, timeout_s=5)
    assert _scratch_dirs(scratch_base) == []
