"""The registry discovery cache: a hit gives exactly what a fresh discovery gives, and any
change to what the answer depends on (a config file the tool reads, a variable, the tool) is a
miss. Real npm, pip and yarn, each alone on PATH; every host is made up (``*.example.internal``).
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from pathlib import Path

import pytest

from ciwatch.registries import RegistrySource, cache, discover_registries
from ciwatch.registries._base import Inputs
from ciwatch.registries.cache import ENV_PREFIXES
from tests.conftest import require


def tools_only(tmp_path: Path, *tools: str) -> dict[str, str]:
    """A fresh HOME and a PATH holding only ``tools`` (and node, which npm and yarn run on)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for tool in tools:
        (bin_dir / tool).symlink_to(require(tool))
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    return {"HOME": str(home), "PATH": str(bin_dir)}


def project(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    root.mkdir(exist_ok=True)
    (root / "package.json").write_text('{"name": "app", "version": "1.0.0"}')
    return root


class Cached:
    """Discovery through a cache of its own, telling whether each answer came from it."""

    def __init__(self, tmp_path: Path) -> None:
        self.directory = tmp_path / "cache" / "ciwatch" / "registries-v1"

    def hit(self, root: Path, env: dict[str, str]) -> bool:
        return cache.load(self.directory, cache.make_key(root.resolve(), env, ()), env) is not None

    def discover(self, root: Path, env: dict[str, str]) -> list[RegistrySource]:
        found = discover_registries(root, env, cache_directory=self.directory)
        assert found == discover_registries(root, env), "the cache's answer is not what a fresh discovery gives"
        return found


def hosts(found: list[RegistrySource], ecosystem: str) -> set[str]:
    return {s.host for s in found if s.ecosystem == ecosystem}


@pytest.mark.npm
def test_npm_hit_then_miss_on_each_npmrc_and_variable(tmp_path: Path) -> None:
    env = tools_only(tmp_path, "npm", "node")
    root, cached = project(tmp_path), Cached(tmp_path)
    first = cached.discover(root, env)
    assert hosts(first, "npm")  # npm's own default, as npm reports it
    assert cached.hit(root, env)
    # A project .npmrc that appears (npm reads it; discovery only sees npm's answer)
    (root / ".npmrc").write_text("@acme:registry=https://scope.example.internal/\n")
    assert not cached.hit(root, env)
    assert "scope.example.internal" in hosts(cached.discover(root, env), "npm")
    assert cached.hit(root, env)
    # The user's .npmrc changes
    (Path(env["HOME"]) / ".npmrc").write_text("registry=https://user.example.internal/\n")
    assert not cached.hit(root, env)
    assert "user.example.internal" in hosts(cached.discover(root, env), "npm")
    # A variable npm reads
    env["npm_config_@other:registry"] = "https://env.example.internal/"
    assert not cached.hit(root, env)
    assert "env.example.internal" in hosts(cached.discover(root, env), "npm")
    # The tool itself: npm gone (its built-in default goes with it)
    (tmp_path / "bin" / "npm").unlink()
    assert not cached.hit(root, env)
    assert hosts(cached.discover(root, env), "npm") == {
        "user.example.internal",
        "scope.example.internal",
        "env.example.internal",
    }


@pytest.mark.pip
def test_pip_hit_then_miss_on_its_config_files_and_variables(tmp_path: Path) -> None:
    env = tools_only(tmp_path, "pip")
    env["PATH"] += os.pathsep + os.path.dirname(sys.executable)  # the python pip runs on
    root, cached = project(tmp_path), Cached(tmp_path)
    cached.discover(root, env)
    assert cached.hit(root, env)
    # The user's pip.conf: read by pip alone (discovery runs `pip config list`)
    config = Path(env["HOME"]) / ".config" / "pip" / "pip.conf"
    config.parent.mkdir(parents=True)
    config.write_text("[global]\nindex-url = https://pip-user.example.internal/simple\n")
    assert not cached.hit(root, env)
    assert "pip-user.example.internal" in hosts(cached.discover(root, env), "pip")
    assert cached.hit(root, env)
    config.write_text("[global]\nindex-url = https://pip-changed.example.internal/simple\n")
    assert not cached.hit(root, env)
    assert "pip-changed.example.internal" in hosts(cached.discover(root, env), "pip")
    env["PIP_EXTRA_INDEX_URL"] = "https://pip-env.example.internal/simple"
    assert not cached.hit(root, env)
    assert "pip-env.example.internal" in hosts(cached.discover(root, env), "pip")
    other = tmp_path / "other.conf"
    other.write_text("[global]\nindex-url = https://pip-file.example.internal/simple\n")
    env["PIP_CONFIG_FILE"] = str(other)
    assert "pip-file.example.internal" in hosts(cached.discover(root, env), "pip")
    other.write_text("[global]\nindex-url = https://pip-file2.example.internal/simple\n")
    assert not cached.hit(root, env)
    assert "pip-file2.example.internal" in hosts(cached.discover(root, env), "pip")


@pytest.mark.npm
def test_yarn_hit_then_miss_on_yarnrc(tmp_path: Path) -> None:
    env = tools_only(tmp_path, "yarn", "node")
    root, cached = project(tmp_path), Cached(tmp_path)
    cached.discover(root, env)
    assert cached.hit(root, env)
    (Path(env["HOME"]) / ".yarnrc").write_text('registry "https://yarn-user.example.internal/"\n')
    assert not cached.hit(root, env)
    assert "yarn-user.example.internal" in hosts(cached.discover(root, env), "yarn")
    assert cached.hit(root, env)


def test_lockfile_appearing_is_a_miss(tmp_path: Path) -> None:
    env = tools_only(tmp_path)
    root, cached = project(tmp_path), Cached(tmp_path)
    assert cached.discover(root, env) == []
    assert cached.hit(root, env)
    (root / "requirements-dev.txt").write_text("--index-url https://req.example.internal/simple\nx==1\n")
    assert not cached.hit(root, env)
    assert hosts(cached.discover(root, env), "pip") == {"req.example.internal"}


def entry_of(cached: Cached) -> Path:
    (entry,) = cached.directory.glob("*.json")
    return entry


def test_entries_are_private_and_an_entry_not_ours_alone_is_ignored(tmp_path: Path) -> None:
    env = tools_only(tmp_path)
    root, cached = project(tmp_path), Cached(tmp_path)
    (root / "requirements.txt").write_text("--index-url https://req.example.internal/simple\nx==1\n")
    cached.discover(root, env)
    entry = entry_of(cached)
    assert entry.stat().st_mode & 0o777 == 0o600
    assert cached.directory.stat().st_mode & 0o777 == 0o700
    assert [p.name for p in cached.directory.iterdir()] == [entry.name]  # no temporary left
    assert cached.hit(root, env)
    entry.chmod(0o644)
    assert not cached.hit(root, env)  # readable (so perhaps written) by others
    entry.chmod(0o600)
    cached.directory.chmod(0o777)
    assert not cached.hit(root, env)  # anyone could have replaced it
    cached.directory.chmod(0o700)
    assert cached.hit(root, env)


def test_an_entry_answers_only_for_the_key_it_was_made_for(tmp_path: Path) -> None:
    """A planted entry under the right name but made for other inputs gives nothing."""
    env = tools_only(tmp_path)
    root, cached = project(tmp_path), Cached(tmp_path)
    cached.discover(root, env)
    entry = entry_of(cached)
    data = json.loads(entry.read_text())
    data["key"]["project"] = "/elsewhere"
    data["sources"] = [{"host": "evil.example.internal", "ecosystem": "npm", "source": "x", "url": None}]
    entry.write_text(json.dumps(data))
    assert not cached.hit(root, env)
    assert cached.discover(root, env) == []


def test_an_answer_cut_short_by_the_time_budget_is_not_kept(tmp_path: Path) -> None:
    env = tools_only(tmp_path)
    bin_dir = Path(env["PATH"])
    (bin_dir / "gem").write_text("#!/bin/sh\nexec /bin/sleep 30\n")
    (bin_dir / "gem").chmod(0o755)
    root, cached = project(tmp_path), Cached(tmp_path)
    discover_registries(root, env, timeout_s=0.5, cache_directory=cached.directory)
    assert not cached.hit(root, env)


def test_root_keeps_its_cache_where_no_other_user_can_write(monkeypatch: pytest.MonkeyPatch) -> None:
    """Under sudo, XDG_CACHE_HOME and HOME may still be the calling user's."""
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    assert cache.cache_dir({"XDG_CACHE_HOME": "/home/someone/.cache", "HOME": "/home/someone"}) == Path(
        "/var/cache/ciwatch/registries-v1"
    )
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert cache.cache_dir({"XDG_CACHE_HOME": "/home/someone/.cache"}) == Path(
        "/home/someone/.cache/ciwatch/registries-v1"
    )


def test_every_variable_discovery_reads_is_in_the_key() -> None:
    """A variable that discovery reads but the key leaves out would let a stale answer through."""
    sources = Path(cache.__file__).parent.glob("*.py")
    pattern = re.compile(r"""(?:env(?:_get)?\(|env\.get\(|env\[)\s*["']([A-Za-z_][A-Za-z0-9_@:]*)["']""")
    names = {name for path in sources for name in pattern.findall(path.read_text())}
    assert {"HOME", "PATH", "PIP_NO_INDEX", "npm_config_userconfig"} <= names  # the scan finds them
    missing = sorted(name for name in names if not name.lower().startswith(ENV_PREFIXES))
    assert missing == []


def test_cli_uses_the_cache_unless_told_not_to(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    from ciwatch.cli import main

    directory = tmp_path / "c" / "registries-v1"
    monkeypatch.setattr(cache, "cache_dir", lambda env=None: directory)
    root = project(tmp_path)
    (root / "requirements.txt").write_text("--index-url https://req.example.internal/simple\nx==1\n")
    env = tools_only(tmp_path)
    done = CliRunner().invoke(main, ["registries", "--no-discovery-cache", str(root)], env=env)
    assert done.exit_code == 0, done.output
    assert "req.example.internal" in done.output
    assert not directory.exists()
    done = CliRunner().invoke(main, ["registries", str(root)], env=env)
    assert "req.example.internal" in done.output
    assert len(list(directory.glob("*.json"))) == 1


def test_no_secret_lands_in_the_cache(tmp_path: Path) -> None:
    """Variables and commands hold tokens: the entry keeps them as hashes only."""
    env = tools_only(tmp_path)
    env.update(NPM_TOKEN="s3cret-token", PIP_INDEX_URL="https://u:s3cret-pw@x.example.internal/simple")
    commands = [["npm", "config", "set", "//h.example.internal/:_authToken=s3cret-cmd"]]
    root, cached = project(tmp_path), Cached(tmp_path)
    found = discover_registries(root, env, commands=commands, cache_directory=cached.directory)
    assert "x.example.internal" in hosts(found, "pip")
    assert "s3cret" not in entry_of(cached).read_text()

    def hit() -> bool:
        return cache.load(cached.directory, cache.make_key(root.resolve(), env, commands), env) is not None

    assert hit()
    env["NPM_TOKEN"] = "another"
    assert not hit()  # still in the key, as a hash


def test_only_the_newest_entries_are_kept(tmp_path: Path) -> None:
    """One entry a project and command line: a runner building many projects keeps the latest."""
    directory = tmp_path / "cache"
    inputs = Inputs()
    for number in range(5):
        cache.store(directory, {"project": f"/p{number}"}, inputs, [])
        entry = cache._entry_path(directory, {"project": f"/p{number}"})
        os.utime(entry, (1_000_000 + number, 1_000_000 + number))
    cache._keep_newest(directory, kept=2)
    left = {json.loads(path.read_text())["key"]["project"] for path in directory.glob("*.json")}
    assert left == {"/p3", "/p4"}


def test_a_file_the_build_changed_teaches_nothing(tmp_path: Path) -> None:
    """Discovery runs alongside the build: a project file changed after the build was released
    (a hook writing .npmrc or a lockfile) is not read, and that answer is not kept."""
    env = tools_only(tmp_path)
    root = project(tmp_path)
    npmrc = root / ".npmrc"
    npmrc.write_text("registry=https://before.example.internal/\n")
    released = time.time_ns()
    time.sleep(0.05)
    npmrc.write_text("registry=https://evil.example.internal/\n")
    hosts = {s.host for s in discover_registries(root, env, changed_from_ns=released)}
    assert "evil.example.internal" not in hosts
    assert "before.example.internal" not in hosts  # its content now is the build's: not read at all
    directory = tmp_path / "fresh-cache"
    discover_registries(root, env, cache_directory=directory, changed_from_ns=released)
    assert not list(directory.glob("*.json")), "an answer that skipped a file is not kept"
    os.utime(npmrc)  # (ctime moves on with any change: the file is the build's in any case)
    assert "evil.example.internal" in {s.host for s in discover_registries(root, env)}
