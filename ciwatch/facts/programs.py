"""Recognising what a process is from its argv: shells, downloaders, interpreters, package
managers. The tracer, the attribution of hooks, the analysis and the rules all ask here."""

from __future__ import annotations

import os
import re

from ciwatch.facts.ecosystems import Ecosystem

SHELLS = frozenset({"sh", "bash", "dash", "zsh", "ksh", "mksh", "ash", "fish", "csh", "tcsh"})
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
#: Programs whose first argument names the program that actually runs (``node x.js``,
#: ``sh x.sh``, ``java -jar``): the script is what a person recognises.
SCRIPT_RUNNERS = INTERPRETERS | SHELLS | {"java"}
#: Options whose value is code, by interpreter. The same letter means something else elsewhere
#: (``node -r`` preloads a module, ``python -E`` ignores the environment, ``php -c`` names a config
#: file), so each program has its own. Perl's ``-M`` and Ruby's ``-r`` load the module the code then
#: calls (``perl -MLWP::Simple -e 'getstore(...)'``), so their value is read as part of the code.
_CODE_OPTIONS: dict[str, frozenset[str]] = {
    **dict.fromkeys(("python", "python2", "python3"), frozenset({"-c"})),
    **dict.fromkeys(("node", "nodejs", "bun"), frozenset({"-e", "--eval", "-p", "--print"})),
    "deno": frozenset({"eval"}),
    "perl": frozenset({"-e", "-E", "-M", "-m"}),
    "ruby": frozenset({"-e", "-r"}),
    "php": frozenset({"-r"}),
    "lua": frozenset({"-e"}),
    **dict.fromkeys(("pwsh", "powershell"), frozenset({"-c", "-command"})),
}
#: Short options clustered in one argument (``python3 -Ic``, ``perl -le``, ``bash -ec``).
_OPTION_CLUSTER = re.compile(r"-[A-Za-z]{2,}")
#: Long shell options that take the next argument as their value.
_SHELL_LONG_OPTION_VALUES = frozenset({"--rcfile", "--init-file"})
#: What fetching looks like inside an interpreter one-liner, in any of the common languages. Starting
#: a process (child_process, subprocess) is not: what it starts is traced and judged by itself.
#: Python's socket module counts where it connects or resolves, not for socket.gethostname().
_FETCH_CODE = re.compile(
    r"https?://|ftp://|urllib|urlopen|requests\.|http\.client|httpx|aiohttp|"
    r"socket\.(?:socket|create_connection|getaddrinfo|gethostbyname)|"
    r"require\(\s*['\"](?:node:)?(?:https?|http2|net|dgram|tls|dns)['\"]|\bfetch\(|XMLHttpRequest|axios|got\(|"
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


def _applet(argv: list[str], path: str) -> tuple[list[str], str]:
    """``busybox wget ...`` runs wget and ``busybox sh`` a shell: busybox is the applet it names."""
    if argv and os.path.basename(argv[0]) == "busybox" and len(argv) > 1:
        return argv[1:], ""
    return argv, path


def is_shell(argv: list[str], path: str = "") -> bool:
    argv, path = _applet(argv, path)
    return program_name(argv, path) in SHELLS or os.path.basename(path) in SHELLS


def is_network_tool(argv: list[str], path: str = "") -> bool:
    argv, path = _applet(argv, path)
    return bool({program_name(argv, path), os.path.basename(path)} & NETWORK_TOOLS)


def _shell_options(args: list[str]) -> tuple[list[str], str | None]:
    """A shell's options and its first operand (the script, or the code under ``-c``). Options
    after the first operand belong to the script, not to the shell."""
    options: list[str] = []
    takes_value = False
    for arg in args:
        if takes_value:
            takes_value = False
        elif arg == "--":
            continue
        elif len(arg) > 1 and arg[0] in "-+":
            options.append(arg)
            # -o pipefail, -euxo pipefail, +O extglob, --rcfile FILE
            takes_value = arg in _SHELL_LONG_OPTION_VALUES or (not arg.startswith("--") and arg[-1] in "oO")
        else:
            return options, arg
    return options, None


def _short_options(options: list[str]) -> str:
    return "".join(option[1:] for option in options if option.startswith("-") and not option.startswith("--"))


def inline_code(argv: list[str], path: str = "") -> str | None:
    """The code an interpreter or shell runs from its command line (``-c``, ``-e``...), every
    piece of it; None when it runs a script or its stdin."""
    argv, path = _applet(argv, path)
    if is_shell(argv, path):
        # -c (alone or clustered: -ec, -lc) makes the first operand the code.
        options, operand = _shell_options(argv[1:])
        return operand if "c" in _short_options(options) else None
    name = program_name(argv, path)
    options_with_code = _CODE_OPTIONS.get(name, frozenset())
    if name in ("pwsh", "powershell"):
        argv = [arg.lower() for arg in argv]  # PowerShell's parameters ignore case
    letters = {option[1] for option in options_with_code if len(option) == 2}
    pieces: list[str] = []
    for index, arg in enumerate(argv[1:], start=1):
        following = argv[index + 1] if index + 1 < len(argv) else None
        if arg in options_with_code or (_OPTION_CLUSTER.fullmatch(arg) and arg[-1] in letters):
            value = following
        elif arg.startswith("--") and arg.partition("=")[0] in options_with_code:
            value = arg.partition("=")[2]
        elif len(arg) > 2 and arg[0] == "-" and arg[1] in letters:
            value = arg[2:]  # attached: python3 -c'...', perl -MLWP::Simple
        else:
            continue
        if value is not None:
            pieces.append(value)
    return "\n".join(pieces) if pieces else None


def shell_script(argv: list[str], path: str = "") -> str | None:
    """The script file a shell runs (``bash -eo pipefail step.sh``); None for ``-c`` code, stdin
    or anything that is not a shell."""
    argv, path = _applet(argv, path)
    if not is_shell(argv, path):
        return None
    options, operand = _shell_options(argv[1:])
    if operand is None or operand == "-" or any(letter in _short_options(options) for letter in "cs"):
        return None
    return operand


def is_fetching_one_liner(argv: list[str], path: str = "") -> bool:
    """An interpreter (or a shell using /dev/tcp) running inline code that reaches the network."""
    argv, path = _applet(argv, path)
    code = inline_code(argv, path)
    if code is None:
        return False
    if is_shell(argv, path):
        return "/dev/tcp/" in code or "/dev/udp/" in code
    return program_name(argv, path) in INTERPRETERS and bool(_FETCH_CODE.search(code))


def reads_program_from_stdin(argv: list[str], path: str = "") -> bool:
    """A shell or interpreter with no script and no inline code: it runs what stdin holds."""
    argv, path = _applet(argv, path)
    if inline_code(argv, path) is not None:
        return False
    if is_shell(argv, path):
        options, operand = _shell_options(argv[1:])
        return operand is None or operand == "-" or "s" in _short_options(options)
    if program_name(argv, path) not in INTERPRETERS:
        return False
    operands = [arg for arg in argv[1:] if not arg.startswith("-")]
    return not operands or argv[1:2] == ["-"]


def is_interactive_or_login_shell(argv: list[str], path: str = "") -> bool:
    argv, path = _applet(argv, path)
    if not is_shell(argv, path):
        return False
    options, _ = _shell_options(argv[1:])
    short = _short_options(options)
    return "i" in short or "l" in short or "--login" in options or (bool(argv) and argv[0].startswith("-"))


#: Program names (argv[0], or the script an interpreter runs) -> ecosystem.
PACKAGE_MANAGERS: dict[str, Ecosystem] = {
    "npm": Ecosystem.NPM,
    "npm-cli.js": Ecosystem.NPM,
    "npx": Ecosystem.NPM,
    "npx-cli.js": Ecosystem.NPM,
    "yarn": Ecosystem.YARN,
    "yarn.js": Ecosystem.YARN,
    "yarn.cjs": Ecosystem.YARN,
    "yarnpkg": Ecosystem.YARN,
    "pnpm": Ecosystem.PNPM,
    "pnpm.cjs": Ecosystem.PNPM,
    "pnpm.js": Ecosystem.PNPM,
    "bun": Ecosystem.BUN,
    "pip": Ecosystem.PIP,
    "pip3": Ecosystem.PIP,
    "__pip-runner__.py": Ecosystem.PIP,
    "uv": Ecosystem.PIP,
    "poetry": Ecosystem.PIP,
    "pipenv": Ecosystem.PIP,
    "cargo": Ecosystem.CARGO,
    "dpkg": Ecosystem.DPKG,
    "apt": Ecosystem.DPKG,
    "apt-get": Ecosystem.DPKG,
    "gem": Ecosystem.GEM,
    "bundle": Ecosystem.GEM,
    "bundler": Ecosystem.GEM,
    "go": Ecosystem.GO,
    "mvn": Ecosystem.MAVEN,
    "gradle": Ecosystem.GRADLE,
}
_PIP_VERSIONED = re.compile(r"^pip3\.\d+$")
#: Yarn berry's release bundle, which a project checks in and runs through ``yarnPath``
#: (``node .yarn/releases/yarn-4.4.1.cjs``) or Corepack caches (``yarn-4.4.1.cjs``): the
#: version in the name is why the plain names above don't match it.
_YARN_RELEASE = re.compile(r"^yarn-\d[\w.+-]*\.c?js$")
#: ``yarnPath`` may name any file: one under a project's ``.yarn/releases`` is berry's release.
_YARN_RELEASES_DIR = re.compile(r"(^|/)\.yarn/releases/[^/]+\.c?js$")


def package_manager_of(argv: list[str]) -> Ecosystem | None:
    """The ecosystem of a package-manager process, from its argv; None for anything else."""
    found = _package_manager(argv)
    return found[1] if found else None


def package_manager_name(argv: list[str]) -> str | None:
    """The package manager a process runs, as a person names it (``npm`` for
    ``node .../npm-cli.js``, ``pip`` for ``python -m pip``); None for anything else."""
    found = _package_manager(argv)
    if found is None:
        return None
    name = found[0]
    for suffix in (".js", ".cjs", ".py", "-cli"):
        name = name.removesuffix(suffix)
    return "pip" if name == "__pip-runner__" or _PIP_VERSIONED.match(name) else name


#: Options of a Python interpreter a shebang may carry before its script (``python -E``).
_PYTHON_FLAGS = re.compile(r"^-[BEIOPSsu]+$")


def _package_manager(argv: list[str]) -> tuple[str, Ecosystem] | None:
    if not argv:
        return None
    candidates = [os.path.basename(argv[0])]
    if len(argv) > 1:
        if _YARN_RELEASES_DIR.search(argv[1]):
            return "yarn", Ecosystem.YARN
        candidates.append(os.path.basename(argv[1]))
        if argv[1] == "-m" and len(argv) > 2:
            candidates.append(argv[2])
        # A shebang's interpreter options come before the script: pipx writes ``python -E``.
        if _PYTHON_FLAGS.match(argv[1]) and len(argv) > 2:
            candidates.append(os.path.basename(argv[2]))
    for name in candidates:
        if name in PACKAGE_MANAGERS:
            return name, PACKAGE_MANAGERS[name]
        if _PIP_VERSIONED.match(name):
            return name, Ecosystem.PIP
        if _YARN_RELEASE.match(name):
            return "yarn", Ecosystem.YARN
    return None
