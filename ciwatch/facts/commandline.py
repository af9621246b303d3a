"""The commands a build's command line runs: the command itself, and each command of the shell
code it runs (its ``-c`` code, or the script file it is given: a CI step's script). Read before
the build is released (the build could rewrite its own script), without what uses them:
registry discovery (``ciwatch.registries.command_line``) takes the registries they name as the
job's, and is imported only when the build runs a package manager."""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Sequence
from pathlib import Path

from ciwatch.facts.programs import inline_code, is_shell, shell_script

#: The words that end one command of a shell line and start the next.
_SEPARATORS = frozenset({"&&", "||", ";", "|", "&", "(", ")", ";;", "|&"})
#: Words before a command that run it: ``time npm ci``, ``exec gem install``...
_PLAIN_PREFIXES = frozenset({"time", "exec", "command", "nohup", "then", "do", "else", "!", "{"})
#: ... and those with options of their own (the options that take a value).
_OPTION_PREFIXES: dict[str, frozenset[str]] = {
    "sudo": frozenset({"-u", "-g", "-C", "-D", "-h", "-p", "-R", "-r", "-t", "-U", "-T"}),
    "env": frozenset({"-u", "-C", "-S"}),
    "nice": frozenset({"-n"}),
}
_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
#: More than any CI step's script; what is beyond is not read (it is read before the build
#: starts: the build waits for it).
_MAX_SCRIPT = 256 * 1024
#: A line that may run a package manager whose options name registries or sources (the tools of
#: ``ciwatch.registries.command_line``; their names, as words or in a path).
_NAMES_A_TOOL = re.compile(r"\b(?:gem|npm|yarn|pnpm|bun|pip|uv|cargo|apt)")


def commands(argv: Sequence[str], cwd: Path) -> list[list[str]]:
    """The command itself, then each command of the shell code it runs: its ``-c`` code or its
    script file (a CI step's script: ``bash -eo pipefail step.sh``), split the way the shell
    would split words. Lines that can't be split (a quote left open) name nothing."""
    found = [_without_prefixes(list(argv))]
    for line in _code_lines(list(argv), cwd):
        if not _NAMES_A_TOOL.search(line):
            continue  # splitting is slow; most lines of a long script run nothing of ours
        try:
            lexer = shlex.shlex(line, posix=True, punctuation_chars=";&|()")
            lexer.whitespace_split = True
            words = list(lexer)
        except ValueError:
            continue
        current: list[str] = []
        for word in [*words, ";"]:
            if word in _SEPARATORS:
                found.append(_without_prefixes(current))
                current = []
            else:
                current.append(word)
    return [command for command in found if command]


def _code_lines(argv: list[str], cwd: Path) -> list[str]:
    """The lines of the shell code ``argv`` runs, a backslash-newline joining two."""
    if not argv or not is_shell(argv):
        return []
    code = inline_code(argv)
    script = shell_script(argv) if code is None else None
    if script is not None:
        code = _read_script(cwd / script)
    return (code or "").replace("\\\n", " ").splitlines()


def _read_script(path: Path) -> str | None:
    try:
        with path.open("rb") as handle:
            return handle.read(_MAX_SCRIPT).decode("utf-8", "replace")
    except OSError:
        return None


def _without_prefixes(argv: list[str]) -> list[str]:
    """The command that ``sudo -E``, ``env -i X=1``, ``time``, ``exec`` or a leading
    ``VAR=value`` run."""
    words = list(argv)
    while words:
        name = os.path.basename(words[0])
        if _ASSIGNMENT.match(words[0]) or name in _PLAIN_PREFIXES:
            words = words[1:]
        elif name in _OPTION_PREFIXES:
            words = words[1:]
            while words and (words[0].startswith("-") or _ASSIGNMENT.match(words[0])):
                takes_value = words[0] in _OPTION_PREFIXES[name]
                words = words[2:] if takes_value else words[1:]
        else:
            break
    return words
