"""``registries: auto``: the job's registries, asked of its package managers while the
proxy starts, added to the allowlist (and the record) once known."""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from ciwatch.gate.allowlist import RuntimeAllowlist
from ciwatch.record.events import AllowlistLearned, Event, RegistryAllowed

log = logging.getLogger(__name__)


class RegistryDiscovery:
    """Asks the package managers for their registries on a thread, while the proxy starts."""

    def __init__(self, project_dir: Path, env: Mapping[str, str]) -> None:
        self._found: list[Any] = []
        self._thread = threading.Thread(target=self._discover, args=(project_dir, dict(env)), daemon=True)
        self._thread.start()

    def _discover(self, project_dir: Path, env: dict[str, str]) -> None:
        # The package managers asked (npm is a node start-up) compete with the build for the
        # CPU: this thread, and the processes it starts, yield to it.
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
        try:
            from ciwatch.registries import discover_registries

            self._found = discover_registries(project_dir, env)
        except Exception:
            log.warning("could not discover the job's registries", exc_info=True)

    def result(self) -> list[Any]:
        self._thread.join(timeout=30)
        return list(self._found)


def settle_registries(discovery: RegistryDiscovery, allowlist: RuntimeAllowlist, sink: Callable[[Event], None]) -> None:
    for found in discovery.result():
        sink(RegistryAllowed(host=found.host, ecosystem=found.ecosystem, source=found.source))
    for learned_from, host, url in allowlist.settle_registries():
        sink(AllowlistLearned(host=host, learned_from=learned_from, url=url))
