"""Recognising what a process is from its argv: shells, downloaders, interpreters."""

from __future__ import annotations

import os
import re

SHELLS = frozenset({"sh", "bash", "dash", "zsh", "ksh", "mksh", "ash", "fish", "csh", "tcsh", "busybox"})
NETWORK_TOOLS = frozenset(
    {
        "curl",
        "wget",
        "wget2",
        "aria2c",
        "axel",
        "nc",
        "ncat",
        "netcat",
        "nc.openbsd",
        "nc.traditional",
        "socat",
        "telnet",
        "ftp",
        "tftp",
        "scp",
        "sftp",
        "ssh",
        "rsync",
        "http",
        "https",
        "xh",
        "lwp-download",
        "lwp-request",
        "GET",
        "POST",
        "fetch",
        "dig",
        "nslookup",
        "host",
        "drill",
        "ping",
        "iwr",
        "invoke-webrequest",
    }
)
INTERPRETERS = frozenset(
    {
        "python",
        "python2",
        "python3",
        "node",
        "nodejs",
        "deno",
        "bun",
        "perl",
        "ruby",
        "php",
        "pwsh",
        "powershell",
        "lua",
    }
)
_INLINE_CODE_FLAGS = frozenset({"-c", "-e", "-r", "-p", "--eval", "--print", "-Command", "-command", "-E"})
#: What fetching looks like inside an interpreter one-liner, in any of the common languages.
_FETCH_CODE = re.compile(
    r"https?://|ftp://|urllib|urlopen|requests\.|http\.client|httpx|aiohttp|socket\.|"
    r"require\(\s*['\"](?:node:)?(?:https?|net|dgram|tls|dns|child_process)['\"]|\bfetch\(|XMLHttpRequest|axios|got\(|"
    r"LWP|IO::Socket|HTTP::Tiny|Net::HTTP|open-uri|Net::HTTP|TCPSocket|file_get_contents\(|curl_init|fsockopen|"
    r"Invoke-WebRequest|Invoke-RestMethod|DownloadString|DownloadFile|WebClient|/dev/(?:tcp|udp)/",
    re.IGNORECASE,
)
_VERSION_SUFFIX = re.compile(r"[\d.]+$")


def program_name(argv: list[str], path: str = "") -> str:
    """The base name of what runs, without a version suffix (python3.11 -> python3)."""
    name = os.path.basename(argv[0]) if argv else os.path.basename(path)
    stripped = _VERSION_SUFFIX.sub("", name)
    return stripped if stripped in INTERPRETERS or stripped in SHELLS else name


def is_shell(argv: list[str], path: str = "") -> bool:
    return program_name(argv, path) in SHELLS or os.path.basename(path) in SHELLS


def is_network_tool(argv: list[str], path: str = "") -> bool:
    names = {program_name(argv, path), os.path.basename(path)}
    if names & NETWORK_TOOLS:
        return True
    # busybox wget / busybox nc
    return program_name(argv, path) == "busybox" and len(argv) > 1 and argv[1] in NETWORK_TOOLS


def inline_code(argv: list[str]) -> str | None:
    """The code an interpreter or shell runs from its command line (``-c``, ``-e``...)."""
    for index, arg in enumerate(argv[1:], start=1):
        if arg in _INLINE_CODE_FLAGS and index + 1 < len(argv):
            return argv[index + 1]
        if len(arg) > 2 and arg[:2] in ("-c", "-e") and arg[1] in "ce" and not arg.startswith("--"):
            return arg[2:]
    return None


def is_fetching_one_liner(argv: list[str], path: str = "") -> bool:
    """An interpreter (or a shell using /dev/tcp) running inline code that reaches the network."""
    name = program_name(argv, path)
    code = inline_code(argv)
    if code is None:
        return False
    if name in INTERPRETERS:
        return bool(_FETCH_CODE.search(code))
    if name in SHELLS:
        return "/dev/tcp/" in code or "/dev/udp/" in code
    return False


def reads_program_from_stdin(argv: list[str], path: str = "") -> bool:
    """A shell or interpreter with no script and no inline code: it runs what stdin holds."""
    name = program_name(argv, path)
    if name not in SHELLS and name not in INTERPRETERS:
        return False
    if inline_code(argv) is not None:
        return False
    operands = [arg for arg in argv[1:] if not arg.startswith("-")]
    return not operands or "-s" in argv[1:] or argv[1:2] == ["-"]


def is_interactive_or_login_shell(argv: list[str], path: str = "") -> bool:
    if not is_shell(argv, path):
        return False
    flags = [arg for arg in argv[1:] if arg.startswith("-") and not arg.startswith("--")]
    return (
        any("i" in flag[1:] or "l" in flag[1:] for flag in flags)
        or "--login" in argv
        or (bool(argv) and argv[0].startswith("-"))
    )
