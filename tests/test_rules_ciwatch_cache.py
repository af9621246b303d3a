"""persistence-write judges writes into ciwatch's own cache and state: the registry discovery
cache is a later run's allowlist, so a hook that plants an entry there allows its own host."""

from __future__ import annotations

from pathlib import Path

import pytest

from ciwatch.facts.paths import CIWATCH_CACHE_SUBDIR
from ciwatch.record.vocabulary import FileOp
from ciwatch.registries.cache import cache_dir
from tests.test_rules import HOME, PROJECT, Build, found, only

ENTRY = "0" * 64 + ".json"


@pytest.fixture
def build(tmp_path: Path) -> Build:
    return Build(tmp_path)


PLANTED = {
    "user cache": f"{HOME}/.cache/ciwatch/{CIWATCH_CACHE_SUBDIR}/{ENTRY}",
    "XDG_CACHE_HOME elsewhere": f"/srv/ci-cache/ciwatch/{CIWATCH_CACHE_SUBDIR}/{ENTRY}",
    "root's cache": f"/var/cache/ciwatch/{CIWATCH_CACHE_SUBDIR}/{ENTRY}",
    "state": f"{HOME}/.local/state/ciwatch/anything",
}


def test_the_cache_directory_is_in_the_class() -> None:
    """Where the cache really is (this machine's user) matches the rule's patterns."""
    assert str(cache_dir()).endswith(f"/ciwatch/{CIWATCH_CACHE_SUBDIR}")


@pytest.mark.parametrize("path", PLANTED.values(), ids=PLANTED.keys())
def test_a_hook_writing_ciwatchs_cache_is_persistence(build: Build, path: str) -> None:
    write = build.hook().spawn(["node", "install.js"]).write(path)
    finding = only(build.judge(), "persistence-write")
    assert finding.evidence == (write,) and "ciwatch's own cache" in finding.message
    assert finding.excepted is None


def test_a_hook_renaming_an_entry_into_the_cache_is_persistence(build: Build) -> None:
    node = build.hook().spawn(["node", "install.js"])
    node.write("/tmp/entry.json")
    node.write("/tmp/entry.json", FileOp.RENAME, target=PLANTED["user cache"])
    assert only(build.judge(), "persistence-write").message.endswith(PLANTED["user cache"])


def test_an_ordinary_install_passes(build: Build) -> None:
    hook = build.hook(package="esbuild").spawn(["node", "install.js"])
    hook.write(f"{PROJECT}/node_modules/esbuild/bin/esbuild")
    hook.write(f"{HOME}/.cache/esbuild/bin/esbuild")  # a tool's own cache, not ciwatch's
    assert found(build.judge(), "persistence-write") == []
