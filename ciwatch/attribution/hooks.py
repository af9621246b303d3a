"""Recognising package managers and the lifecycle hooks they run.

The identity of each hook comes from what the package manager itself sets up at the
boundary (docs/architecture.md, "Where a hook begins"):

- npm, yarn, pnpm, bun: ``npm_package_name``, ``npm_package_version`` and an install-time
  ``npm_lifecycle_event`` on the first exec under the package manager's node process (a
  script the user runs by name, ``npm test``, is the user's command, not a hook);
- pip (PEP 517): ``_in_process.py <hook>``, name and version from PKG-INFO in its cwd; legacy
  ``setup.py``; uv: ``python -c`` code that imports the backend ``as backend`` and calls the hook;
- cargo: ``build-script-build`` with ``CARGO_PKG_NAME`` and ``CARGO_PKG_VERSION``;
- dpkg: ``DPKG_MAINTSCRIPT_PACKAGE`` and ``DPKG_MAINTSCRIPT_NAME``;
- gem: ``extconf.rb`` run in ``gems/<name>-<version>/ext/...``.
"""

from __future__ import annotations

import os
import re

from ciwatch.dataclass import dataclass
from ciwatch.facts.ecosystems import Ecosystem
from ciwatch.facts.programs import package_manager_of
from ciwatch.record.events import ProcessExec

#: The lifecycle scripts the npm family (npm, yarn, pnpm, bun) runs because a package is being
#: installed: a dependency's, or the project's own install-time ones (named as the project's).
#: Every other script (``test``, ``build``, ``start``, a custom one) runs because the user
#: asked for it by name (``npm test``, ``yarn build``, ``pnpm run x``): the user's own command,
#: traced as the build, not a package's hook. ``dependencies`` is npm 7+'s, run after
#: node_modules changed; ``prepublish`` ran on install before npm 7.
INSTALL_LIFECYCLE = frozenset(
    {"preinstall", "install", "postinstall", "preprepare", "prepare", "postprepare", "prepublish", "dependencies"}
)

_GEM_DIR = re.compile(r"/gems/(?P<name>[^/]+?)-(?P<version>\d[^/]*)/ext(?:/|$)")
_PIP_BUILD_DIR = re.compile(r"/pip-install-[^/]+/(?P<name>[^/]+?)_[0-9a-f]{32}$")
#: uv unpacks an sdist under its cache as ``sdists-vN/pypi/<name>/<version>/...`` (another
#: index: ``sdists-vN/index/<digest>/<name>/<version>/...``).
_UV_BUILD_DIR = re.compile(r"/sdists-v\d+/(?:index/[^/]+|[^/]+)/(?P<name>[^/]+)/(?P<version>\d[^/]*)/")
_BACKEND_IMPORT = re.compile(r"^\s*(?:from\s+[\w.]+\s+)?import\s+[\w.]+\s+as\s+backend\s*$", re.MULTILINE)
_BACKEND_HOOK = re.compile(
    r"""getattr\(\s*backend\s*,\s*["']((?:get_requires_for|prepare_metadata_for|build)_\w+)["']"""
    r"""|\bbackend\.((?:get_requires_for|prepare_metadata_for|build)_\w+)\s*\("""
)


@dataclass(frozen=True)
class HookAttribution:
    ecosystem: Ecosystem
    """A package ecosystem (records carry its value: npm, yarn, pnpm, bun, pip, cargo, dpkg, gem)."""
    package: str
    version: str
    hook: str
    pid: int
    """The process at the hook's boundary."""
    seq: int
    """The sequence number of the exec that started it."""

    @property
    def package_ref(self) -> str:
        return f"{self.package}@{self.version}" if self.version else self.package

    @property
    def label(self) -> str:
        return f"{self.hook} of {self.package_ref}"


def _npm_family(event: ProcessExec, parent_ecosystem: Ecosystem | None) -> HookAttribution | None:
    env = event.env
    if parent_ecosystem is None or not parent_ecosystem.npm_family:
        return None
    name, lifecycle = env.get("npm_package_name"), env.get("npm_lifecycle_event")
    if not name or lifecycle not in INSTALL_LIFECYCLE:
        return None
    return HookAttribution(parent_ecosystem, name, env.get("npm_package_version", ""), lifecycle, event.pid, 0)


def pip_build_hook(argv: list[str]) -> str | None:
    """The build hook a Python process runs for pip (or uv): the PEP 517 hook name
    (``python _in_process.py <hook> <dir>``, or uv's ``python -c <import the backend; call
    the hook>``), ``setup.py`` for the legacy build, or None."""
    for index, arg in enumerate(argv[:4]):
        if arg.endswith("_in_process.py") and index + 1 < len(argv):
            return argv[index + 1]
    if argv[1:2] == ["-c"] and len(argv) > 2:
        hook = _inline_backend_hook(argv[2])
        if hook is not None:
            return hook
    # Legacy: ``python setup.py ...`` or pip's shim ``python [-u] -c <code naming setup.py> ...``;
    # pip adds -u for bdist_wheel, which puts the shim third.
    if any("setup.py" in arg for arg in argv[1:4]):
        return "setup.py"
    return None


def _inline_backend_hook(code: str) -> str | None:
    """The PEP 517 hook that inline code imports a build backend to call, the way uv runs each
    hook: ``import flit_core.buildapi as backend`` (or ``from x import y as backend``), then
    ``getattr(backend, "get_requires_for_build_wheel", None)`` or ``backend.build_wheel(...)``."""
    if _BACKEND_IMPORT.search(code) is None:
        return None
    called = _BACKEND_HOOK.search(code)
    if called is None:
        return None
    return called.group(1) or called.group(2)


def _pip(event: ProcessExec) -> HookAttribution | None:
    hook = pip_build_hook(event.argv)
    if hook is None:
        return None
    name = event.package.get("name", "")
    version = event.package.get("version", "")
    if not name:
        uv_match = _UV_BUILD_DIR.search(event.cwd + "/")
        match = _PIP_BUILD_DIR.search(event.cwd)
        if uv_match is not None:
            name, version = uv_match.group("name"), version or uv_match.group("version")
        else:
            name = match.group("name") if match else os.path.basename(event.cwd)
    return HookAttribution(Ecosystem.PIP, name, version, hook, event.pid, 0)


def _cargo(event: ProcessExec) -> HookAttribution | None:
    if not os.path.basename(event.path).startswith("build-script-"):
        return None
    name = event.env.get("CARGO_PKG_NAME")
    if not name:
        return None
    return HookAttribution(Ecosystem.CARGO, name, event.env.get("CARGO_PKG_VERSION", ""), "build.rs", event.pid, 0)


def _dpkg(event: ProcessExec) -> HookAttribution | None:
    package, script = event.env.get("DPKG_MAINTSCRIPT_PACKAGE"), event.env.get("DPKG_MAINTSCRIPT_NAME")
    if not package or not script:
        return None
    return HookAttribution(Ecosystem.DPKG, package, event.package.get("version", ""), script, event.pid, 0)


def _gem(event: ProcessExec) -> HookAttribution | None:
    if not any(arg.endswith("extconf.rb") for arg in event.argv[1:]):
        return None
    match = _GEM_DIR.search(event.cwd)
    if match is None:
        return None
    return HookAttribution(Ecosystem.GEM, match.group("name"), match.group("version"), "extconf.rb", event.pid, 0)


def detect_hook(event: ProcessExec, parent: ProcessExec | None, pid: int, seq: int) -> HookAttribution | None:
    """The hook this exec starts, if it is the boundary of one. ``parent`` is the parent
    process's latest exec: a hook's boundary must sit directly under a package manager."""
    parent_ecosystem = package_manager_of(parent.argv) if parent else None
    if parent_ecosystem is None:
        return None
    found = _npm_family(event, parent_ecosystem) or _cargo(event)
    if found is None and parent_ecosystem is Ecosystem.PIP:
        found = _pip(event)
    if found is None and parent_ecosystem is Ecosystem.DPKG:
        found = _dpkg(event)
    if found is None and parent_ecosystem is Ecosystem.GEM:
        found = _gem(event)
    if found is None:
        return None
    return HookAttribution(found.ecosystem, found.package, found.version, found.hook, pid, seq)
