"""``registries: auto``: the job's registries, asked of its package managers when the build
first runs one (before its release in block mode), added to the allowlist (and the record) once
known and once the build runs one of those package managers."""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ciwatch.facts.commandline import commands
from ciwatch.facts.ecosystems import Ecosystem
from ciwatch.facts.programs import package_manager_of
from ciwatch.gate.allowlist import RuntimeAllowlist
from ciwatch.record.events import AllowlistLearned, Event, ProcessExec, RegistryAllowed

if TYPE_CHECKING:
    from ciwatch.registries import RegistrySource

log = logging.getLogger(__name__)


class RegistryDiscovery:
    """Asks the package managers for their registries on a thread, once :meth:`start` is called.

    Its inputs are taken when it is made, before the build is released; the asking waits
    until the answer can matter: the build's first run of a package manager (only the
    families it runs are allowed their registries: :class:`JobRegistries`), or the allowlist
    needed whole (block mode, processes left running). A build that runs no package manager
    (``make``, a test suite, ``true``) then costs no package manager's start-up (npm's is a
    node start: seconds of CPU when the cache can't answer)."""

    def __init__(
        self, project_dir: Path, env: Mapping[str, str], command: Sequence[str] = (), *, use_cache: bool = True
    ) -> None:
        self._found: list[Any] = []
        self._use_cache = use_cache
        # What the job's files say before the build is released; what it writes later is its own.
        self._changed_from_ns = time.time_ns()
        # Read now, before the build is released: a script the build could rewrite is read as
        # the job wrote it, never as a hook left it.
        args = (project_dir, dict(env), commands(command, project_dir))
        self._thread = threading.Thread(target=self._discover, args=args, daemon=True)
        self._started = False

    @property
    def started(self) -> bool:
        return self._started

    def start(self) -> None:
        """Begin asking, alongside the build (once; later calls do nothing)."""
        if not self._started:
            self._started = True
            self._thread.start()

    def _discover(self, project_dir: Path, env: dict[str, str], commands: list[list[str]]) -> None:
        # The package managers asked (npm is a node start-up) compete with the build for the
        # CPU: this thread, and the processes it starts, yield to it.
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
        try:
            from ciwatch.registries import discover_registries
            from ciwatch.registries.cache import cache_dir

            # The cache is ciwatch's own: its environment's and user's, which the build can't change.
            cache = cache_dir() if self._use_cache else None
            self._found = discover_registries(
                project_dir, env, commands=commands, cache_directory=cache, changed_from_ns=self._changed_from_ns
            )
        except Exception:
            log.warning("could not discover the job's registries", exc_info=True)

    def result(self) -> list[Any]:
        self.start()
        self._thread.join(timeout=30)
        return list(self._found)


class JobRegistries:
    """The registries of the package managers this build runs, and only theirs.

    Discovery asks every package manager on the machine (and reads every lockfile); a job that
    runs npm alone must not be allowed the Rust, Maven or Debian hosts because those tools are
    installed. A family of ecosystems (by the packages they install: npm with yarn, pnpm and
    bun; pip with uv and poetry; dpkg with apt) is allowed its registries when the build
    first execs one of its package managers, which is before that process can make a request.
    """

    def __init__(self, sink: Callable[[Event], None]) -> None:
        self._sink = sink
        self._sources: dict[Ecosystem, list[RegistrySource]] | None = None
        self._used: dict[Ecosystem, str] = {}
        """Family -> the first process of the build that ran one of its package managers."""
        self._allowed: set[Ecosystem] = set()
        self._discovery: RegistryDiscovery | None = None

    def discover_when_used(self, discovery: RegistryDiscovery) -> None:
        """Start ``discovery`` at the build's first run of a package manager."""
        self._discovery = discovery

    def add_sources(self, found: list[RegistrySource]) -> None:
        """Discovery's answer: allowed at once for the families the build has run already."""
        sources: dict[Ecosystem, list[RegistrySource]] = {}
        for source in found:
            ecosystem = Ecosystem.named(source.ecosystem)
            if ecosystem is not None:
                sources.setdefault(ecosystem.packages, []).append(source)
        self._sources = sources
        for family in list(self._used):
            self._allow(family)

    @property
    def used_any(self) -> bool:
        """The build has run a package manager (whose registries discovery must tell)."""
        return bool(self._used)

    def saw_exec(self, event: ProcessExec) -> None:
        manager = package_manager_of(event.argv)
        if manager is None or manager.packages in self._used:
            return
        self._used[manager.packages] = f"{manager} (pid {event.pid})"
        if self._discovery is not None:
            self._discovery.start()
        self._allow(manager.packages)

    def _allow(self, family: Ecosystem) -> None:
        if self._sources is None or family in self._allowed:
            return
        self._allowed.add(family)
        for found in self._sources.get(family, []):
            source = f"{found.source}; the build ran {self._used[family]}"
            self._sink(RegistryAllowed(host=found.host, ecosystem=found.ecosystem, source=source))


def settle_registries(
    discovery: RegistryDiscovery | None,
    registries: JobRegistries,
    allowlist: RuntimeAllowlist,
    sink: Callable[[Event], None],
) -> None:
    """Discovery's answer into the allowlist (None: not waited for, as nothing needs it)."""
    if discovery is not None:
        registries.add_sources(discovery.result())
    for learned_from, host, url in allowlist.settle_registries():
        sink(AllowlistLearned(host=host, learned_from=learned_from, url=url))
