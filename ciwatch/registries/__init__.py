"""Registry discovery: the hosts a job's package managers may reach, learned at run time.

``registries: auto`` in a policy allows these hosts. They come from the package managers
themselves (their effective configuration and the defaults only they know), from the
project's lockfiles and from the job's environment; no registry is named in ciwatch. One
module per ecosystem; each asks its tool only when the tool is on the job's PATH, and reads
its files only when they exist.

Call :func:`discover_registries` before the build starts (the tracer reaps every child of
the ciwatch process) or from another process.
"""

from __future__ import annotations

import contextvars
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ciwatch.facts.ecosystems import Ecosystem
from ciwatch.registries._base import Context, Inputs, RegistrySource, recording

__all__ = ["ECOSYSTEMS", "RegistrySource", "discover_registries", "render_registries"]

log = logging.getLogger(__name__)

#: The ecosystems, in the order reports list them.
ECOSYSTEMS: tuple[str, ...] = tuple(Ecosystem)


def _discoverers() -> tuple[Callable[[Context], list[RegistrySource]], ...]:
    """The ecosystem modules' ``discover``, imported when the tools are asked (a cache hit
    needs none of them)."""
    from ciwatch.registries import (
        apt,
        bun,
        cargo,
        command_line,
        gem,
        go,
        gradle,
        lockfiles,
        maven,
        npm,
        pip,
        pnpm,
        poetry,
        uv,
        yarn,
    )

    return (
        # The slowest queries first, so that they start first.
        apt.discover,
        npm.discover,
        gem.discover,
        gradle.discover,
        pip.discover,
        yarn.discover,
        pnpm.discover,
        go.discover,
        cargo.discover,
        uv.discover,
        poetry.discover,
        bun.discover,
        maven.discover,
        lockfiles.discover,
        command_line.discover,
    )


#: The scratch directory's name: ``ciwatch-registries-<pid>-<random>``, so that one left by a
#: process that was killed (or left with ``os._exit``, as the tracer process does, while
#: discovery still ran on its thread) is recognised and removed by the next discovery.
SCRATCH_PREFIX = "ciwatch-registries-"
#: A scratch directory without a pid in its name (made by an older ciwatch) is removed once
#: it is this old.
_LEGACY_AGE_S = 3600.0


def sweep_stale_scratch(base: str | None = None) -> None:
    """Remove the scratch directories of discoveries whose process is gone."""
    base = base or tempfile.gettempdir()
    try:
        entries = list(os.scandir(base))
    except OSError:
        return
    for entry in entries:
        if not entry.name.startswith(SCRATCH_PREFIX):
            continue
        try:
            info = entry.stat(follow_symlinks=False)
        except OSError:
            continue
        if not entry.is_dir(follow_symlinks=False) or info.st_uid != os.geteuid():
            continue  # another user's, or not a directory of ours: not ours to remove
        pid = entry.name[len(SCRATCH_PREFIX) :].split("-", 1)[0]
        gone = not os.path.exists(f"/proc/{pid}") if pid.isdigit() else time.time() - info.st_mtime > _LEGACY_AGE_S
        if gone:
            shutil.rmtree(entry.path, ignore_errors=True)


def discover_registries(
    project_dir: Path,
    env: Mapping[str, str],
    *,
    timeout_s: float = 10.0,
    commands: Sequence[Sequence[str]] = (),
    cache_directory: Path | None = None,
    changed_from_ns: int | None = None,
) -> list[RegistrySource]:
    """The registries the job in ``project_dir`` with environment ``env`` may use, running
    ``commands`` (the build's command and the commands of its shell code, as
    ``command_line.commands`` reads them: the registries their options name are the job's).

    The tools are asked concurrently, each in a subprocess that gets ``env`` (so the job's
    ``PATH``, ``HOME`` and ``npm_config_*``/``PIP_*``/… apply) and ends by the time budget
    ``timeout_s``. A tool that is missing, fails or runs out of time is skipped (logged at
    debug level). The result is sorted by ecosystem, host and source, one entry per
    (host, ecosystem, source).

    With ``cache_directory`` (``cache.cache_dir()``), an answer made from the same inputs is
    given back from there instead (:mod:`ciwatch.registries.cache`), and a fresh one is kept.
    With ``changed_from_ns`` (when the build was released), files changed since are not read.
    """
    started = time.monotonic()
    project_dir = project_dir.resolve()
    if cache_directory is None:
        return _discover(project_dir, env, timeout_s, commands, Inputs(changed_from_ns=changed_from_ns))
    from ciwatch.registries import cache

    directory, key = cache_directory, cache.make_key(project_dir, env, commands)
    cached = cache.load(directory, key, env)
    if cached is not None:
        log.debug("%d registry sources from the cache in %.3f s", len(cached), time.monotonic() - started)
        return cached
    inputs = Inputs(changed_from_ns=changed_from_ns)
    found = _discover(project_dir, env, timeout_s, commands, inputs)
    cache.finish_inputs(inputs, project_dir, env)
    cache.store(directory, key, inputs, found)
    return found


def _discover(
    project_dir: Path, env: Mapping[str, str], timeout_s: float, commands: Sequence[Sequence[str]], inputs: Inputs
) -> list[RegistrySource]:
    started = time.monotonic()
    token = recording.set(inputs)
    sweep_stale_scratch()
    scratch = tempfile.mkdtemp(prefix=f"{SCRATCH_PREFIX}{os.getpid()}-")
    found: list[RegistrySource] = []
    try:
        ctx = Context(
            project_dir=project_dir, env=env, deadline=started + timeout_s, scratch=Path(scratch), commands=commands
        )
        discoverers = _discoverers()
        with ThreadPoolExecutor(max_workers=len(discoverers), thread_name_prefix="registries") as pool:
            # Each in a copy of this context: they record their inputs into ``inputs``.
            futures = [(d, pool.submit(contextvars.copy_context().run, d, ctx)) for d in discoverers]
            for discoverer, future in futures:
                try:
                    found += future.result()
                except Exception:  # one ecosystem's surprise must not hide the others
                    inputs.complete = False
                    log.debug("%s failed", discoverer.__module__, exc_info=True)
    finally:
        # ignore_errors: a tool's leftover child may still write into it; what stays is swept
        # by the next discovery once this process is gone.
        shutil.rmtree(scratch, ignore_errors=True)
        recording.reset(token)
    unique: dict[tuple[str, str, str], RegistrySource] = {}
    for source in found:
        unique.setdefault((source.host, source.ecosystem, source.source), source)
    log.debug("%d registry sources in %.2f s", len(unique), time.monotonic() - started)
    return sorted(unique.values(), key=_order)


def _order(source: RegistrySource) -> tuple[int, str, str, str]:
    rank = ECOSYSTEMS.index(source.ecosystem) if source.ecosystem in ECOSYSTEMS else len(ECOSYSTEMS)
    return rank, source.ecosystem, source.host, source.source


def render_registries(sources: list[RegistrySource]) -> str:
    """What ``ciwatch registries`` prints: per ecosystem, one line per host with its sources.

    ::

        npm
          registry.example.internal  npm config list (registry); package-lock.json (resolved)
        pip
          pypi.example.internal      pip config (global.index-url)
    """
    if not sources:
        return "No registries found.\n"
    by_ecosystem: dict[str, dict[str, list[str]]] = {}
    for source in sorted(set(sources), key=_order):
        hosts = by_ecosystem.setdefault(source.ecosystem, {})
        where = hosts.setdefault(source.host, [])
        if source.source not in where:
            where.append(source.source)
    width = max(len(host) for hosts in by_ecosystem.values() for host in hosts)
    lines = []
    for ecosystem, hosts in by_ecosystem.items():
        lines.append(ecosystem)
        lines += [f"  {host.ljust(width)}  {'; '.join(where)}" for host, where in hosts.items()]
    return "\n".join(lines) + "\n"
