"""dpkg's maintainer scripts doing the system administration that is their job.

A Debian package's ``preinst``/``postinst``/``prerm``/``postrm`` runs as root to set the
system up for what the package installed: it enables the package's systemd units and init
scripts (``deb-systemd-helper``, ``update-rc.d``), sets up its scheduler's spool, adds system
users and groups (``adduser``, which runs ``useradd`` and so reads ``/etc/shadow``) and
changes the mode of its own files (``dpkg-statoverride``). The same writes by an npm or pip
hook are persistence, and stay counted. What is not counted here stays in the verdict with
the reason (``excepted``), so that a reviewer can audit it.

The exception is for a *genuine* maintainer script only, decided from the record alone:

- its hook starts at a script in dpkg's database (``/var/lib/dpkg/info/<pkg>.<script>``, or
  ``/var/lib/dpkg/tmp.ci/<script>`` for a new package's ``preinst``), whose name is the one
  dpkg announced (``DPKG_MAINTSCRIPT_NAME``);
- that script's parent is the system's dpkg binary and is inside no hook: ``dpkg -i`` run by
  an npm hook, or a program named ``dpkg`` that a hook wrote, gets no exception (a hook can
  give its children any environment, so the variables alone prove nothing);
- no hook wrote the script, dpkg, or the program that did the write or read.

What it can't tell: a package from the archive whose maintainer script enables a malicious
unit that the package itself ships looks exactly like a real service: the package's own
contents are the archive's to vouch for, as an npm package's installed files are (see
``provenance.py``)."""

from __future__ import annotations

import fnmatch
import os
import re

from ciwatch.analysis.tree import ProcessNode
from ciwatch.attribution.hooks import HookAttribution
from ciwatch.facts.ecosystems import Ecosystem
from ciwatch.facts.paths import ACCOUNT_FILE_PATTERNS
from ciwatch.rules.base import RuleContext

#: Where dpkg keeps the maintainer scripts it runs (its default admin directory).
_SCRIPT = re.compile(r"^/var/lib/dpkg/(?:info/[^/]+\.|tmp\.ci/)(?P<script>preinst|postinst|prerm|postrm)$")
#: The system's dpkg (``/bin`` is ``/usr/bin`` on a merged-/usr system, not always elsewhere).
_DPKG = frozenset({"/usr/bin/dpkg", "/bin/dpkg"})
#: Where system programs live: an account tool run from anywhere else is not the system's.
_SYSTEM_BIN = frozenset({"/usr/sbin", "/usr/bin", "/sbin", "/bin"})

_SERVICES = "a system service's enablement (units, init scripts)"
_SCHEDULER = "the system scheduler's set-up (cron, at)"
_ACCOUNTS = "the system's users and groups"
#: (pattern, what setting it up is) for the writes a maintainer script makes as its job. The
#: job's home, its project, CI files, shell start-up files, sudoers, SSH keys, the dynamic
#: linker's preload list and package managers' configuration are none of a maintainer
#: script's business: they stay counted.
SYSTEM_SETUP_PATTERNS = (
    ("/etc/systemd/*", _SERVICES),
    ("/lib/systemd/*", _SERVICES),
    ("/usr/lib/systemd/*", _SERVICES),
    ("/etc/init.d/*", _SERVICES),
    ("/etc/rc[0-6S].d/*", _SERVICES),
    ("/etc/cron*", _SCHEDULER),
    ("/etc/anacrontab", _SCHEDULER),
    ("/var/spool/cron", _SCHEDULER),
    ("/var/spool/cron/*", _SCHEDULER),
    ("/var/spool/at", _SCHEDULER),
    ("/var/spool/at/*", _SCHEDULER),
    *((pattern, _ACCOUNTS) for pattern in ACCOUNT_FILE_PATTERNS),
    ("/etc/.pwd.lock", _ACCOUNTS),
)
#: A job in a scheduler's spool: a user's crontab, an at job. cron and atd skip dot files
#: (at's ``.SEQ`` counter, lock files): those and the spool's directories are set-up; a job
#: runs code as a user later, which no package's set-up writes. So a job stays counted.
_SPOOLED_JOB = re.compile(r"^/var/spool/(?:cron/(?:crontabs|atjobs|atspool)|at|at/spool)/[^./][^/]*$")

#: The programs that manage accounts: reading the shadow files is how they work.
ACCOUNT_TOOLS = frozenset(
    {
        "adduser",
        "addgroup",
        "deluser",
        "delgroup",
        "useradd",
        "userdel",
        "usermod",
        "groupadd",
        "groupdel",
        "groupmod",
        "chfn",
        "chsh",
        "chage",
        "gpasswd",
        "pwck",
        "grpck",
    }
)
#: debconf's frontend, which every maintainer script that asks debconf runs (its ``confmodule``
#: execs it): its Perl looks users up as root, and Perl's ``getpwnam`` then reads the shadow
#: file for the password field. The file by its path: ``perl -e 'getpwnam ...'`` is not it.
_LOOKS_USERS_UP = frozenset({"/usr/share/debconf/frontend"})
#: The account databases they read (the credential files they may touch, and no other).
_ACCOUNT_DATABASES = frozenset({"/etc/shadow", "/etc/gshadow", "/etc/shadow-", "/etc/gshadow-"})


def genuine_maintainer_script(context: RuleContext, node: ProcessNode) -> HookAttribution | None:
    """The dpkg hook ``node`` runs in, when it is a maintainer script run by the system's dpkg
    outside any other hook (module docstring); None otherwise."""
    hook = node.hook
    if hook is None or hook.ecosystem is not Ecosystem.DPKG:
        return None
    boundary = node
    while not boundary.starts_hook:
        if boundary.parent is None:
            return None
        boundary = boundary.parent
    if boundary.hook is not hook or not boundary.execs or boundary.parent is None:
        return None
    script = boundary.execs[0][1]
    match = _SCRIPT.match(script.path)
    if match is None or match.group("script") != hook.hook:
        return None
    dpkg = boundary.parent
    if dpkg.hook is not None or not dpkg.execs:
        return None  # dpkg run by another package's hook: that hook's doing
    dpkg_exec = dpkg.execs[-1][1]
    if dpkg_exec.exe not in _DPKG:
        return None
    written = context.written_by_hooks
    if any(path in written for path in (script.path, script.exe, dpkg_exec.exe)):
        return None
    return hook


def system_setup_kind(path: str) -> str | None:
    """What ``path`` is, when writing it is a maintainer script's job (``SYSTEM_SETUP_PATTERNS``)."""
    if _SPOOLED_JOB.match(path):
        return None
    return next((kind for pattern, kind in SYSTEM_SETUP_PATTERNS if fnmatch.fnmatchcase(path, pattern)), None)


def setup_write_reason(context: RuleContext, path: str, writers: list[ProcessNode]) -> str | None:
    """Why a hook write of ``path`` is not counted: every writer is a genuine maintainer script
    and the path is system set-up. None when any writer is something else."""
    kind = system_setup_kind(path)
    if kind is None or not writers:
        return None
    hooks = [genuine_maintainer_script(context, writer) for writer in writers]
    if any(hook is None for hook in hooks) or any(_hook_wrote_program(context, w) for w in writers):
        return None
    labels = ", ".join(sorted({hook.label for hook in hooks if hook is not None}))
    return f"not counted: dpkg maintainer script ({labels}) setting up {kind}, its job as root"


def account_read_reason(context: RuleContext, path: str, reader: ProcessNode) -> str | None:
    """Why a read of the shadow files is not counted: the system's account tool (``adduser``
    adding the package's system user) in a genuine maintainer script. None otherwise."""
    if path not in _ACCOUNT_DATABASES or not reader.execs:
        return None
    program = reader.execs[-1][1]
    if program.path in _LOOKS_USERS_UP:
        what = f"{program.path} (debconf, whose Perl looks users up as root)"
    elif os.path.basename(program.path) in ACCOUNT_TOOLS and os.path.dirname(program.path) in _SYSTEM_BIN:
        what = f"{os.path.basename(program.path)}, the system's account tool,"
    else:
        return None
    hook = genuine_maintainer_script(context, reader)
    if hook is None or _hook_wrote_program(context, reader):
        return None
    return f"not counted: {what} run by dpkg maintainer script {hook.label}"


def _hook_wrote_program(context: RuleContext, node: ProcessNode) -> bool:
    """Whether a hook wrote what this process runs (the program, or a script's interpreter)."""
    if not node.execs:
        return False
    program = node.execs[-1][1]
    return program.path in context.written_by_hooks or program.exe in context.written_by_hooks
