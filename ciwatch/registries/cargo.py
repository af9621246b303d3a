"""cargo: ``.cargo/config.toml`` from the project up to ``/`` and in ``CARGO_HOME`` (source
replacement, ``[registries]``), ``CARGO_REGISTRIES_<NAME>_INDEX``, and cargo's implicit
default index, learned from cargo itself.

cargo has no command that prints its default index, and the config files never name it.
ciwatch asks cargo to look up a crate that can't exist, offline, in a throwaway CARGO_HOME
and a neutral directory, with registry debug logging on: cargo names the index directory it
would cache the answer in (``registry/index/<index host>-<hash>``, the host of the index it
would fetch, sparse or git) and the registry it searched (its canonical id, the URL that
Cargo.lock records). Nothing is fetched. The download host of an index is the ``dl`` field of
its ``config.json``; cargo keeps that file in ``CARGO_HOME/registry/index/<dir>/`` once it has
used a sparse index, and ciwatch reads it from there when it exists.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ciwatch.registries._base import (
    Context,
    RegistrySource,
    ancestors,
    display_path,
    host_of,
    host_source,
    is_file,
    load_toml,
    log,
    note_file,
    read_text,
    source_for,
)

ECOSYSTEM = "cargo"

#: The crate the probe looks up. It is looked up offline in an empty CARGO_HOME, so it is
#: never found, whatever the name; the lookup only makes cargo name its index.
PROBE_CRATE = "ciwatch-registry-probe"

_CACHE_DIR = re.compile(r"registry[/\\]index[/\\]([A-Za-z0-9.\[\]:_-]+?)-[0-9a-f]{16}(?:[/\\\"]|$)")
_SEARCHED = re.compile(r"in registry `([^`]+)`")
_REGISTRY_ENV = re.compile(r"^CARGO_REGISTRIES_([A-Z0-9_]+)_INDEX$")

#: The default registry's name in cargo's configuration.
DEFAULT_NAME = "crates-io"


def discover(ctx: Context) -> list[RegistrySource]:
    found: list[RegistrySource | None] = []
    default_replaced = False
    default_protocol: str | None = None
    for path in config_files(ctx):
        config = load_toml(path)
        if not config:
            continue
        shown = display_path(path, ctx.project_dir)
        found += [source_for(ECOSYSTEM, f"{shown} ({setting})", url) for setting, url in config_urls(config)]
        sources = config.get("source")
        if isinstance(sources, dict) and isinstance(sources.get(DEFAULT_NAME), dict):
            default_replaced |= bool(sources[DEFAULT_NAME].get("replace-with"))
        registries = config.get("registries")
        if isinstance(registries, dict) and isinstance(registries.get(DEFAULT_NAME), dict):
            protocol = registries[DEFAULT_NAME].get("protocol")
            if isinstance(protocol, str) and default_protocol is None:
                default_protocol = protocol
    for variable, value in ctx.env.items():
        if value and (_REGISTRY_ENV.match(variable) or variable == "CARGO_REGISTRY_INDEX"):
            found.append(source_for(ECOSYSTEM, variable, value))
    cargo = ctx.which("cargo")
    if cargo is not None and not default_replaced:
        found += default_index(ctx, cargo, default_protocol)
    known = [s for s in found if s is not None]
    return known + download_hosts(ctx, {s.host for s in known})


def cargo_home(ctx: Context) -> Path | None:
    explicit = ctx.env.get("CARGO_HOME")
    if explicit:
        return Path(explicit)
    home = ctx.home()
    return home / ".cargo" if home is not None else None


def config_files(ctx: Context) -> list[Path]:
    """cargo's config files, in its order: the project's directory up to ``/``, then CARGO_HOME."""
    directories = [d / ".cargo" for d in ancestors(ctx.project_dir)]
    home = cargo_home(ctx)
    if home is not None and home not in directories:
        directories.append(home)
    files = []
    for directory in directories:
        for name in ("config.toml", "config"):
            if is_file(directory / name):
                files.append(directory / name)
                break  # cargo reads config.toml when both exist
    return files


def config_urls(config: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """``(setting, url)`` for the registries and sources a cargo config names."""
    sources = config.get("source")
    if isinstance(sources, dict):
        for name, source in sources.items():
            if isinstance(source, dict):
                for key in ("registry", "git"):
                    if isinstance(source.get(key), str):
                        yield f"source.{name}.{key}", source[key]
    registries = config.get("registries")
    if isinstance(registries, dict):
        for name, registry in registries.items():
            if isinstance(registry, dict) and isinstance(registry.get("index"), str):
                yield f"registries.{name}.index", registry["index"]
    registry = config.get("registry")
    if isinstance(registry, dict) and isinstance(registry.get("index"), str):
        yield "registry.index", registry["index"]


def default_index(ctx: Context, cargo: str, protocol: str | None) -> list[RegistrySource]:
    """The index cargo uses when nothing replaces its default, as cargo itself names it."""
    home = ctx.scratch / "cargo-home"
    home.mkdir(exist_ok=True)
    env = {
        "CARGO_HOME": str(home),
        "CARGO_LOG": "cargo::sources::registry=debug",
        "CARGO_TERM_COLOR": "never",
        "RUSTUP_AUTO_INSTALL": "0",
    }
    if protocol and not ctx.env.get("CARGO_REGISTRIES_CRATES_IO_PROTOCOL"):
        env["CARGO_REGISTRIES_CRATES_IO_PROTOCOL"] = protocol
    version_out = ctx.output([cargo, "-V"], cwd=ctx.scratch, env=env)
    version = " ".join(version_out.split()[:2]) if version_out else "cargo"
    done = ctx.run([cargo, "info", PROBE_CRATE, "--offline"], cwd=ctx.scratch, env=env)
    text = done.stderr + done.stdout if done is not None else ""
    if done is not None and not _CACHE_DIR.search(text):
        text += _metadata_probe(ctx, cargo, env)  # cargo before 1.82 has no `cargo info`
    return parse_probe(text, version)


def _metadata_probe(ctx: Context, cargo: str, env: dict[str, str]) -> str:
    project = ctx.scratch / "cargo-probe"
    (project / "src").mkdir(parents=True, exist_ok=True)
    (project / "src" / "lib.rs").write_text("")
    (project / "Cargo.toml").write_text(
        f'[package]\nname = "probe"\nversion = "0.0.0"\n\n[dependencies]\n"{PROBE_CRATE}" = "1"\n'
    )
    manifest = str(project / "Cargo.toml")
    done = ctx.run([cargo, "metadata", "--offline", "--format-version", "1", "--manifest-path", manifest], env=env)
    return done.stderr if done is not None else ""


def parse_probe(text: str, version: str) -> list[RegistrySource]:
    """The default index from the probe's log: the cache directory names the host cargo
    would fetch the index from; the error names the registry's canonical id."""
    cache = _CACHE_DIR.search(text)
    searched = _SEARCHED.search(text)
    canonical = searched.group(1) if searched else None
    if cache is None:
        log.debug("cargo: the probe named no index directory; cargo's default index stays unknown")
        return []
    protocol = "sparse" if "http_remote" in text else "git"
    source = host_source(ECOSYSTEM, f"cargo default index ({protocol}, {version})", cache.group(1))
    if source is None:
        return []
    if canonical and host_of(canonical) == source.host:
        source = RegistrySource(source.host, source.ecosystem, source.source, canonical)
    return [source]


def download_hosts(ctx: Context, index_hosts: set[str]) -> list[RegistrySource]:
    """The ``dl`` host of each index that cargo has cached a config.json for."""
    home = cargo_home(ctx)
    if home is None or not index_hosts:
        return []
    index_root = home / "registry" / "index"
    note_file(index_root)
    try:
        directories = sorted(os.listdir(index_root))
    except OSError:
        return []
    found: list[RegistrySource | None] = []
    for directory in directories:
        match = re.match(r"^(.+)-[0-9a-f]{16}$", directory)
        if match is None or match.group(1).lower() not in index_hosts:
            continue
        text = read_text(index_root / directory / "config.json")
        if text is None:
            continue
        try:
            dl = json.loads(text).get("dl")
        except (json.JSONDecodeError, AttributeError):
            continue
        if isinstance(dl, str):
            found.append(source_for(ECOSYSTEM, f"cargo index config.json (dl of {match.group(1)})", dl))
    return [s for s in found if s is not None]
