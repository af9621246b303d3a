"""Long-lived local build servers (a Gradle daemon, a compiler cache's server...): what they
are from their argv, and how a build avoids handing them its work. A build server started
before ``ciwatch run`` is outside the traced tree: the client the build runs connects to it
and the server compiles, runs and fetches for it, unseen (``daemon-outside-trace``)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable

from ciwatch.dataclass import dataclass
from ciwatch.facts.programs import SCRIPT_RUNNERS, program_name


@dataclass(frozen=True)
class KnownServer:
    name: str
    """What a person calls it: ``Gradle daemon``."""
    avoid: str
    """How a build runs without handing work to a server started earlier."""
    matches: Callable[[list[str]], bool]


def _any_argument(test: Callable[[str], bool]) -> Callable[[list[str]], bool]:
    return lambda argv: any(test(argument) for argument in argv)


def _program(*names: str, argument: str | None = None) -> Callable[[list[str]], bool]:
    """The program (or the script an interpreter runs) is one of ``names``, with ``argument``
    among its arguments when given (``turbo daemon``)."""

    def matches(argv: list[str]) -> bool:
        return bool(set(_programs(argv)) & set(names)) and (argument is None or argument in argv[1:])

    return matches


KNOWN_SERVERS: tuple[KnownServer, ...] = (
    KnownServer(
        "Gradle daemon",
        "run Gradle with --no-daemon (or set org.gradle.daemon=false in gradle.properties), "
        "or stop the daemon before the step with `gradle --stop`",
        _any_argument(lambda a: a.startswith("org.gradle.launcher.daemon.")),
    ),
    KnownServer(
        "Kotlin compile daemon",
        "set kotlin.compiler.execution.strategy=in-process (gradle.properties or "
        "-Pkotlin.compiler.execution.strategy=in-process), or stop the daemon before the step",
        _any_argument(lambda a: a.endswith("KotlinCompileDaemon")),
    ),
    KnownServer(
        "Bazel server",
        "run `bazel --batch ...`, or `bazel shutdown` before the step so the build starts its own server",
        lambda argv: (bool(argv) and argv[0].startswith("bazel(")) or any(a.endswith("/A-server.jar") for a in argv),
    ),
    KnownServer(
        "Maven daemon (mvnd)",
        "run `mvnd --stop` before the step, or build with mvn",
        _any_argument(lambda a: a.startswith("org.mvndaemon.mvnd.")),
    ),
    KnownServer(
        "sccache server",
        "stop it before the step (`sccache --stop-server`) so the build starts its own, traced, "
        "and stop that one at the end of the step (or set RUSTC_WRAPPER/CC without sccache)",
        _program("sccache"),
    ),
    KnownServer(
        "turbo daemon",
        "run `turbo daemon stop` before the step and pass --no-daemon to turbo",
        _program("turbo", argument="daemon"),
    ),
    KnownServer(
        "Nx daemon",
        "set NX_DAEMON=false for the step (or `nx daemon --stop` before it)",
        _any_argument(lambda a: "/nx/src/daemon/server/" in a),
    ),
    KnownServer(
        "buck2 daemon",
        "run `buck2 kill` before the step so the build starts its own daemon",
        lambda argv: _program("buck2d")(argv) or _program("buck2", argument="daemon")(argv),
    ),
)

#: Programs that compile or build: a local server that runs them for the build does build work.
#: Not ``java`` or an interpreter: every kind of service runs those.
BUILD_TOOLS = frozenset(
    {
        "cc", "c++", "gcc", "g++", "clang", "clang++", "cc1", "cc1plus", "cpp", "as", "ld", "ld.lld",
        "ld.gold", "rustc", "javac", "kotlinc", "scalac", "go", "gccgo", "make", "gmake",
        "ninja", "cmake", "msbuild", "dotnet", "swiftc", "zig", "tsc", "esbuild", "swc",
    }
)  # fmt: skip


def _programs(argv: list[str]) -> list[str]:
    """The program's name and, for an interpreter, its script's (``python3 x/sccache``)."""
    if not argv:
        return []
    names = [program_name(argv), os.path.basename(argv[0])]
    if names[0] in SCRIPT_RUNNERS:
        script = next((a for a in argv[1:] if not a.startswith("-")), None)
        if script is not None:
            names.append(os.path.basename(script))
    return names


def known_server(argv: list[str]) -> KnownServer | None:
    """The known build server ``argv`` is, or None."""
    return next((server for server in KNOWN_SERVERS if server.matches(argv)), None)


#: Processes that adopt orphans (and service managers that start anything): a compiler among
#: their children says nothing about what they are (a build step's orphaned ``make``).
ADOPTERS = frozenset(
    {
        "systemd", "init", "tini", "dumb-init", "docker-init", "catatonit", "s6-svscan", "runsvdir",
        "supervisord", "containerd-shim", "containerd-shim-runc-v2", "conmon",
    }
)  # fmt: skip


def adopts_orphans(argv: list[str]) -> bool:
    return bool(set(_programs(argv)[:2]) & ADOPTERS)


def build_tool_among(argvs: Iterable[list[str]]) -> str | None:
    """The first of ``argvs`` (a server's children) that is a compiler or build tool, by name."""
    for argv in argvs:
        for name in _programs(argv)[:2]:
            if name in BUILD_TOOLS:
                return name
    return None
