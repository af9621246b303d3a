"""Registries named on the build's own command line: ``gem install --source URL``, ``npm
install --registry URL``, ``pip install --index-url URL``, ``cargo install --index URL``.

A package manager's configuration is not only in its files: the command a CI job runs may name
the registry itself, and then no tool's configuration knows it. The command ciwatch was given
is the job's own word, as its configuration files are (whoever writes it writes the CI
configuration), so the registries it names are the job's. The commands of a shell it runs
with ``-c`` (``sh -c "apt-get update && apt-get install -y x"``) or of the script it is given
(a CI step's script, ``bash -eo pipefail step.sh``: the job's words, written before the build
starts) are its words too.

Only that command: what runs under it (a hook's ``npm install --registry https://evil``) was
written by no one the job trusts, and is judged, never learned from. apt's ``-o``/``-c``
options change where apt reads its sources from; apt.py asks ``apt-get indextargets`` with them
(``apt_options``).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from ciwatch.facts.commandline import commands
from ciwatch.facts.ecosystems import Ecosystem
from ciwatch.facts.programs import package_manager_name
from ciwatch.registries._base import Context, RegistrySource, source_for

__all__ = ["apt_options", "commands", "discover", "option_values"]

_PIP_INDEX_OPTIONS = frozenset({"-i", "--index-url", "--extra-index-url", "-f", "--find-links"})

#: The options of each package manager (as people name it) whose value is a registry's URL.
_URL_OPTIONS: dict[str, tuple[Ecosystem, frozenset[str]]] = {
    "gem": (Ecosystem.GEM, frozenset({"--source", "-s"})),
    "npm": (Ecosystem.NPM, frozenset({"--registry"})),
    "npx": (Ecosystem.NPM, frozenset({"--registry"})),
    "yarn": (Ecosystem.YARN, frozenset({"--registry"})),
    "pnpm": (Ecosystem.PNPM, frozenset({"--registry"})),
    "bun": (Ecosystem.BUN, frozenset({"--registry"})),
    "pip": (Ecosystem.PIP, _PIP_INDEX_OPTIONS),
    "uv": (Ecosystem.UV, _PIP_INDEX_OPTIONS | {"--index", "--default-index"}),
    "cargo": (Ecosystem.CARGO, frozenset({"--index"})),
}
_APT_TOOLS = frozenset({"apt-get", "apt", "apt-cache"})

#: apt's options that change its configuration (and so its sources): ``-o Key=Value`` and
#: ``-c file``.
_APT_CONFIG_OPTIONS = frozenset({"-o", "--option", "-c", "--config-file"})


def option_values(argv: Sequence[str], names: frozenset[str]) -> Iterator[tuple[str, str]]:
    """``(option, value)`` for each of ``names`` in ``argv``: ``--name value``, ``--name=value``
    and, for a one-letter option, ``-nvalue``; nothing after ``--``."""
    for index, arg in enumerate(argv[1:], start=1):
        if arg == "--":
            return
        following = argv[index + 1] if index + 1 < len(argv) else None
        if arg in names and following is not None:
            yield arg, following
        elif arg.startswith("--") and arg.partition("=")[0] in names:
            yield arg.partition("=")[0], arg.partition("=")[2]
        elif len(arg) > 2 and not arg.startswith("--") and arg[:2] in names:
            yield arg[:2], arg[2:]


def _url_of(value: str) -> str:
    """uv's ``--index name=URL`` names its index: the URL is after the ``=``."""
    name, equals, rest = value.partition("=")
    return rest if equals and "://" not in name and "://" in rest else value


def discover(ctx: Context) -> list[RegistrySource]:
    found: list[RegistrySource | None] = []
    for argv in ctx.commands:
        tool = package_manager_name(list(argv))
        if tool not in _URL_OPTIONS:
            continue
        ecosystem, names = _URL_OPTIONS[tool]
        for option, value in option_values(argv, names):
            found.append(source_for(ecosystem, f"the build's command line ({tool} {option})", _url_of(value)))
    return [source for source in found if source is not None]


def apt_options(ctx: Context) -> list[str]:
    """The configuration options the build's apt commands are given, in order, each as
    ``-o``/``-c`` and its value: apt asked with them lists the sources the build will use."""
    options: list[str] = []
    for argv in ctx.commands:
        if package_manager_name(list(argv)) not in _APT_TOOLS:
            continue
        for option, value in option_values(argv, _APT_CONFIG_OPTIONS):
            options += ["-c" if option in ("-c", "--config-file") else "-o", value]
    return options
