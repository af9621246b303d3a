"""credential-read: a hook reads secrets it has no business with: package-manager and cloud
credential files, SSH keys, another process's memory or environment; or runs a tool that
prints tokens (``gh auth token``) or hunts for them (trufflehog, gitleaks)."""

from __future__ import annotations

import fnmatch
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import replace

from ciwatch.analysis.tree import ProcessNode
from ciwatch.facts.paths import is_credential_path, proc_alias
from ciwatch.facts.programs import package_manager_of, program_name
from ciwatch.policy.model import Severity
from ciwatch.record.events import Anomaly, FileRead
from ciwatch.record.vocabulary import AnomalyKind, ReadHow
from ciwatch.rules.base import Finding, RuleContext, RuleInfo
from ciwatch.rules.exec_written_file import script_operands
from ciwatch.rules.maintainer_scripts import account_read_reason

INFO = RuleInfo(
    id="credential-read",
    summary="An install hook read credentials, another process's memory, or ran a token-dumping tool",
    default_severity=Severity.HIGH,
    hint="Rotate the credentials the job had, then remove the package: no install hook needs them.",
)

_TOKEN_TOOLS = frozenset({"trufflehog", "gitleaks", "detect-secrets", "noseyparker"})
#: The credential files each package manager reads as its own configuration, whoever starts it: a
#: hook that runs ``npm run build`` (a prepare script, a git dependency) has npm read ~/.npmrc as
#: it always does. Asked for its configuration or a token (``npm config get //host/:_authToken``),
#: it hands the secret over: that still counts.
_OWN_CONFIG: dict[str, tuple[str, ...]] = {
    **dict.fromkeys(("npm", "yarn", "pnpm", "bun"), ("~/.npmrc", "~/.yarnrc", "~/.yarnrc.yml")),
    "pip": ("~/.netrc",),
    "cargo": ("~/.cargo/credentials*",),
    "maven": ("~/.m2/settings*.xml",),
    "gradle": ("~/.gradle/gradle.properties",),
}
#: Build tools that read a credential file as their own configuration, to authenticate their own
#: downloads: meson loads ~/.netrc whenever it sets up a project (its wrap resolver, for the
#: subprojects it may download), so every meson-python sdist build reads it. Known by the script
#: or binary that runs (not argv[0], the caller's choice), which must not be a file a hook wrote.
#: Such a read is kept in the verdict, not counted: meson's ``fs.read()`` in a meson.build reads
#: in the same process, and a reviewer can tell the two apart only from the package's sources.
TOOL_CONFIG: dict[str, tuple[str, ...]] = {"meson": ("~/.netrc",)}
_PRINTS_CONFIG = frozenset({"config", "c", "get", "token", "whoami", "auth"})
#: What separates the words of a command line, or of the code a shell runs (``cat ~/.npmrc | curl ...``).
_WORD_SEPARATORS = re.compile(r"[\s'\"|;&<>()`,]+")
_HOME_PREFIXES = ("~/", "$HOME/", "${HOME}/")


def _reads_own_config(node: ProcessNode, path: str, home: str) -> bool:
    ecosystem = package_manager_of(node.argv)
    if ecosystem is None or not home or _PRINTS_CONFIG & set(node.argv[1:]):
        return False
    own = (home.rstrip("/") + pattern[1:] for pattern in _OWN_CONFIG.get(ecosystem, ()))
    return any(fnmatch.fnmatchcase(path, pattern) for pattern in own)


def _tool_reading_own_config(node: ProcessNode, path: str, home: str, written: Mapping[str, object]) -> str | None:
    """The build tool (``TOOL_CONFIG``) reading ``path`` as its own configuration, if that is what runs."""
    if not node.execs or not home:
        return None
    event = node.execs[-1][1]
    candidates = [event.path, *script_operands(event.argv, event.exe)[:1]]
    for program in candidates:
        name = os.path.basename(program)
        patterns = (home.rstrip("/") + pattern[1:] for pattern in TOOL_CONFIG.get(name, ()))
        if program.startswith("/") and program not in written and any(fnmatch.fnmatchcase(path, p) for p in patterns):
            return name
    return None


def _mentioned_credential(argv: list[str], home: str) -> str | None:
    """A credential file or directory that a command line names: as an argument, inside the code of
    ``sh -c``, after an option's ``=`` or curl's ``@``, with ``~`` or ``$HOME`` or spelled out."""
    for arg in argv[1:]:
        for word in _WORD_SEPARATORS.split(arg):
            for text in (word, word.partition("=")[2], word.removeprefix("@")):
                prefix = next((p for p in _HOME_PREFIXES if text.startswith(p)), None)
                if prefix is not None and home:
                    text = home.rstrip("/") + "/" + text[len(prefix) :]
                if not text.startswith("/"):
                    continue
                path = os.path.normpath(text)
                # a directory of credentials counts as much as a file in it (tar czf - ~/.ssh)
                if is_credential_path(path, home) or is_credential_path(path + "/x", home):
                    return path
    return None


def _invoked(argv: list[str], path: str, exe: str) -> list[str]:
    """The command line as the hook invoked it. When the file run is a script (``path`` is not
    the ``exe`` the kernel ran), the kernel's argv starts with the ``#!`` interpreter and its
    optional argument (``/usr/bin/python3 /usr/local/bin/detect-secrets scan``); a tool is
    known by its own name whether it is a binary or a script, so that prefix is dropped."""
    if not path or path == exe:
        return argv
    name = os.path.basename(path)
    for index in (1, 2):
        if index < len(argv) and os.path.basename(argv[index]) == name:
            return argv[index:]
    return argv


def _token_command(argv: list[str]) -> str | None:
    name = program_name(argv)
    if name in _TOKEN_TOOLS:
        return name
    words = [arg for arg in argv[1:] if not arg.startswith("-")]
    if name == "gh" and words[:2] == ["auth", "token"]:
        return "gh auth token"
    if name == "gh" and words[:2] == ["auth", "status"] and ("-t" in argv or "--show-token" in argv):
        return "gh auth status --show-token"
    if name == "git" and words[:2] == ["credential", "fill"]:
        return "git credential fill"
    if name == "aws" and words[:2] == ["configure", "export-credentials"]:
        return "aws configure export-credentials"
    return None


class CredentialRead:
    info = INFO

    def check(self, context: RuleContext) -> Iterator[Finding]:
        home = context.record.header.home
        seen: set[tuple[str, int]] = set()
        tool_reads: set[tuple[str, int]] = set()
        for seq, event in context.record.events.of(FileRead, Anomaly):
            node = context.tree.node_at(seq)
            if node is None or node.hook is None:
                continue
            message = None
            target = ""
            if isinstance(event, FileRead):
                # Records made before the tracer canonicalised paths: undo what /proc spells.
                event = replace(event, path=os.path.normpath(proc_alias(event.path, event.pid, "")))
                if event.how == ReadHow.OPEN and not is_credential_path(event.path, home, event.pid):
                    continue
                if event.how == ReadHow.OPEN and _reads_own_config(node, event.path, home):
                    continue
                target = event.path
                message = f"{node.hook.label} read {event.path}" + (f" ({event.how})" if event.how != "open" else "")
                tool = _tool_reading_own_config(node, event.path, home, context.written_by_hooks)
                if event.how == ReadHow.OPEN and tool is not None:
                    # Kept apart from ``seen``: the hook's own read of the same file still counts.
                    if (target, node.pid) not in tool_reads:
                        tool_reads.add((target, node.pid))
                        why = f"not counted: {tool} reads {event.path} as its own configuration (for its downloads)"
                        yield replace(context.finding(INFO, message, node, [seq]), excepted=why)
                    continue
            elif isinstance(event, Anomaly) and event.anomaly is AnomalyKind.PTRACE:
                target = event.detail
                message = f"{node.hook.label} used ptrace on another process: {event.detail}"
            if message is None:
                continue
            reason = account_read_reason(context, target, node) if isinstance(event, FileRead) else None
            # One finding per file and hook; a read that is not counted (adduser's) never hides a
            # later one that is (the same script's ``cat /etc/shadow``).
            key = (target, node.hook.pid) if reason is None else (f"{target}\0{reason}", node.hook.pid)
            if key in seen:
                continue
            seen.add(key)
            finding = context.finding(INFO, message, node, [seq])
            yield finding if reason is None else replace(finding, excepted=reason)
        for node in context.tree.nodes:
            if node.hook is None:
                continue
            for seq, event in node.execs:
                tool = _token_command(_invoked(event.argv, event.path, event.exe))
                mentioned = _mentioned_credential(event.argv, home)
                if tool is not None:
                    yield context.finding(INFO, f"{node.hook.label} ran {tool}", node, [seq])
                elif mentioned and (mentioned, node.hook.pid) not in seen:
                    seen.add((mentioned, node.hook.pid))
                    yield context.finding(INFO, f"{node.hook.label} ran {node.name} on {mentioned}", node, [seq])
