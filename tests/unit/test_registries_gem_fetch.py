"""gem and bundler fetch some sources' indexes from another host than the source's
(ciwatch/registries/gem.py asks bundler's fetcher which): that host is the job's registry too."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

from ciwatch.registries import gem
from ciwatch.registries._base import Context, RegistrySource
from tests.conftest import require


def test_parse_fetch_uris_keeps_only_other_hosts() -> None:
    origin = RegistrySource("gems.example", "gem", "gem sources --list", "https://gems.example/")
    other = RegistrySource("same.example", "gem", "Gemfile:1 (source)", "https://same.example/")
    text = (
        "https://gems.example/\thttps://index.gems.example/\n"
        "https://same.example/\thttps://same.example/\n"
        "https://unknown.example/\thttps://evil.example/\n"  # not a source we asked about
        "garbage\n"
    )
    (found,) = gem.parse_fetch_uris(text, {origin.url or "": origin, other.url or "": other})
    assert (found.host, found.ecosystem) == ("index.gems.example", "gem")
    assert found.source.startswith("gem sources --list")


def test_the_default_sources_fetch_hosts_as_bundler_names_them(tmp_path: Path) -> None:
    """With gem's default sources (a home without .gemrc), discovery allows every host that
    bundler's fetcher fetches them from, as bundler itself answers (never a name written here)."""
    require("gem")
    ruby = require("ruby")
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path)}
    listed = subprocess.run(["gem", "sources", "--list"], env=env, capture_output=True, text=True, check=True).stdout
    urls = [line.strip() for line in listed.splitlines() if "://" in line]
    asked = subprocess.run(
        [ruby, "-e", gem.FETCH_URI_SCRIPT, *urls], env=env, cwd=tmp_path, capture_output=True, text=True, check=True
    ).stdout
    expected = {line.split("\t")[1].split("/")[2] for line in asked.splitlines()}
    ctx = Context(project_dir=tmp_path, env=env, deadline=time.monotonic() + 20, scratch=tmp_path)
    assert expected and expected <= {source.host for source in gem.discover(ctx)}
