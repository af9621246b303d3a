"""persistence-write: a hook writes where code runs again later, in this job or on the
machine: the CI provider's files that carry into later steps, shell start-up files, package
managers' configuration that runs code or redirects installs, git configuration and hooks,
Python start-up hooks, the dynamic linker's preload list, schedulers and services, SSH
authorized keys, sudoers, and another package's files in the same install.

Paths are canonical in the record (the tracer resolves aliases), so a pattern here matches
every spelling of the file. The hook's own package directory and pip's build staging are
left alone: writing there is a build's job and runs nothing later."""

from __future__ import annotations

import dataclasses
import fnmatch
import os
from collections.abc import Iterator

from ciwatch.facts.paths import ACCOUNT_FILE_PATTERNS, CIWATCH_STATE_PATTERNS, proc_alias
from ciwatch.policy.model import Severity
from ciwatch.record.vocabulary import FileOp
from ciwatch.rules.base import Finding, RuleContext, RuleInfo
from ciwatch.rules.executable_write import own_directory
from ciwatch.rules.maintainer_scripts import setup_write_reason
from ciwatch.rules.project_choice import chosen_by_project

INFO = RuleInfo(
    id="persistence-write",
    summary="An install hook wrote a file that makes code run later (rc files, CI env files, package-manager "
    "config, git hooks, .pth...)",
    default_severity=Severity.HIGH,
    hint="No install hook has a reason to change these files: treat the package as compromised.",
)

_SHELL = "a shell start-up file"
_PM = "package-manager configuration (runs code or redirects installs)"
_GIT = "the git configuration"
_CRON = "a cron or at job"
_SERVICE = "a service or autostart entry"
_ACCOUNTS = "the system's users and groups (an account to log in with later)"

#: (pattern on the canonical path, what it is). ``~`` is the job's home directory; ``*``
#: crosses directories (fnmatch), so ``*/.npmrc`` is every .npmrc: project, user, global.
PERSISTENCE_PATTERNS = (
    ("*/_runner_file_commands/*", "a GitHub Actions file command (env, path, output of later steps)"),
    ("~/.bashrc", _SHELL),
    ("~/.bash_profile", _SHELL),
    ("~/.bash_login", _SHELL),
    ("~/.bash_logout", _SHELL),
    ("~/.profile", _SHELL),
    ("~/.zshrc", _SHELL),
    ("~/.zshenv", _SHELL),
    ("~/.zprofile", _SHELL),
    ("~/.zlogin", _SHELL),
    ("~/.zlogout", _SHELL),
    ("~/.kshrc", _SHELL),
    ("~/.mkshrc", _SHELL),
    ("~/.config/fish/*", _SHELL),
    ("/etc/profile", _SHELL),
    ("/etc/profile.d/*", _SHELL),
    ("/etc/bash.bashrc", _SHELL),
    ("/etc/bashrc", _SHELL),
    ("/etc/bash.bash_logout", _SHELL),
    ("/etc/zsh*", _SHELL),
    ("/etc/fish/*", _SHELL),
    ("/etc/environment", _SHELL),
    ("*/.github/workflows/*", "a GitHub Actions workflow"),
    ("*/.github/actions/*", "a GitHub Action"),
    ("*/.gitlab-ci.yml", "the GitLab CI definition"),
    ("*/.git/hooks/*", "a git hook"),
    ("*/.git/config", _GIT),
    ("*/.gitconfig", _GIT),
    ("~/.config/git/*", _GIT),
    ("/etc/gitconfig", _GIT),
    ("*/.gitmodules", _GIT),
    ("*/.npmrc", _PM),
    ("*/etc/npmrc", _PM),
    ("*/.yarnrc", _PM),
    ("*/.yarnrc.yml", _PM),
    ("*/.pnpmfile.cjs", _PM),
    ("*/pip.conf", _PM),
    ("*/pip.ini", _PM),
    ("*/.pypirc", _PM),
    ("*/.pydistutils.cfg", _PM),
    ("*/.cargo/config", _PM),
    ("*/.cargo/config.toml", _PM),
    ("*/.bundle/config", _PM),
    ("*/.gemrc", _PM),
    ("/etc/gemrc", _PM),
    ("*/.m2/settings.xml", _PM),
    ("*/.mvn/maven.config", _PM),
    ("*/.mvn/jvm.config", _PM),
    ("*/gradle.properties", _PM),
    ("*/.gradle/init.gradle*", _PM),
    ("*/.gradle/init.d/*", _PM),
    ("*/.docker/config.json", "Docker's configuration (credential helpers run code)"),
    ("*.pth", "a Python start-up hook (.pth)"),
    ("*/sitecustomize.py", "a Python start-up hook (sitecustomize)"),
    ("*/usercustomize.py", "a Python start-up hook (usercustomize)"),
    ("/etc/ld.so.preload", "the dynamic linker's preload list"),
    ("/etc/ld.so.conf", "the dynamic linker's search path"),
    ("/etc/ld.so.conf.d/*", "the dynamic linker's search path"),
    ("/etc/cron*", _CRON),
    ("/etc/anacrontab", _CRON),
    ("/var/spool/cron/*", _CRON),
    ("/var/spool/at/*", _CRON),
    ("/etc/systemd/*", _SERVICE),
    ("/lib/systemd/*", _SERVICE),
    ("/usr/lib/systemd/*", _SERVICE),
    ("/etc/init.d/*", _SERVICE),
    ("/etc/rc.local", _SERVICE),
    ("~/.config/systemd/*", _SERVICE),
    ("~/.local/share/systemd/*", _SERVICE),
    ("~/.config/autostart/*", _SERVICE),
    ("/etc/xdg/autostart/*", _SERVICE),
    ("/etc/update-motd.d/*", _SERVICE),
    *((pattern, _ACCOUNTS) for pattern in ACCOUNT_FILE_PATTERNS),
    ("/etc/sudoers", "sudo's rules"),
    ("/etc/sudoers.d/*", "sudo's rules"),
    ("*/.ssh/authorized_keys*", "SSH authorized keys"),
    ("*/.ssh/rc", "SSH's login script"),
    ("*/.ssh/config", "SSH's configuration (ProxyCommand runs code)"),
    ("/etc/ssh/*", "the SSH server's configuration"),
    *(
        (pattern, "ciwatch's own cache or state (its registry cache is a later run's allowlist)")
        for pattern in CIWATCH_STATE_PATTERNS
    ),
)

#: Where pip stages a build: what a build backend writes there (an editable's .pth, a
#: setup.cfg) is the build's own output and is thrown away with it.
_STAGING = ("pip-build-env-", "pip-req-build-", "pip-install-", "pip-wheel-", "pip-modern-metadata-", "pip-ephem-")
#: The directories whose .pth files Python's site module reads at start-up.
_SITE_DIRS = frozenset({"site-packages", "dist-packages"})
#: Directories that hold installed packages, one directory per package below them.
_PACKAGE_ROOTS = ("node_modules", "site-packages", "dist-packages")


#: What git puts in every new repository's hooks directory: examples it never runs.
_GIT_SAMPLE_HOOK = "*/.git/hooks/*.sample"


def persistence_kind(path: str, home: str, ci_files: tuple[str, ...] = ()) -> str | None:
    if path in ci_files:
        return "a CI file that carries into later steps (env, PATH or outputs)"
    if fnmatch.fnmatchcase(path, _GIT_SAMPLE_HOOK):
        return None
    if path.endswith(".pth") and os.path.basename(os.path.dirname(path)) not in _SITE_DIRS:
        # Python reads .pth files only in its site directories: one in a build's staging or
        # output tree (setuptools' own distutils-precedence.pth in build/bdist.../wheel) runs
        # nothing until an installer puts it in site-packages, and that installer's write is
        # judged then.
        return None
    for pattern, kind in PERSISTENCE_PATTERNS:
        if pattern.startswith("~"):
            if not home:
                continue
            pattern = home.rstrip("/") + pattern[1:]
        if fnmatch.fnmatchcase(path, pattern):
            return kind
    return None


def _under(path: str, directory: str | None) -> bool:
    return directory is not None and (path == directory or path.startswith(directory.rstrip("/") + "/"))


def _staged(path: str) -> bool:
    """Inside one of pip's staging directories in a temporary directory (not merely a file
    named like one: ``/etc/cron.d/pip-wheel-x`` is no staging)."""
    parts = path.split("/")
    return any(
        parts[i].startswith(_STAGING) and (parts[i - 1] in ("tmp", "temp", "T") or parts[i - 1].startswith("tmp"))
        for i in range(1, len(parts) - 1)
    )


def _normal(name: str) -> str:
    return name.lower().replace("-", "_").replace(".", "_")


def other_package(path: str, package: str) -> str | None:
    """The installed package whose files ``path`` is in, when that is not ``package``: a hook
    editing another package's package.json, install script or code runs in that package's name
    later (its own hook, or whatever requires it)."""
    parts = path.split("/")
    for index in range(len(parts) - 2, 0, -1):
        if parts[index] not in _PACKAGE_ROOTS:
            continue
        name = parts[index + 1]
        depth = 3 if name.startswith("@") else 2  # a file inside the package, not its directory
        if not name or name.startswith(".") or index + depth >= len(parts):
            return None
        if name.startswith("@"):
            name = f"{name}/{parts[index + 2]}"
        if parts[index] == "node_modules":
            return None if name == package else name
        top = _normal(name.split(".dist-info")[0].split("-")[0] if ".dist-info" in name else name)
        return None if top.startswith(_normal(package)) or _normal(package).startswith(top) else name
    return None


class PersistenceWrite:
    info = INFO

    def check(self, context: RuleContext) -> Iterator[Finding]:
        header = context.record.header
        home, project = header.home, os.path.normpath(header.cwd)
        ci_files = tuple(os.path.normpath(p) for p in header.ci_env_files.values())
        for path, writes in context.written_by_hooks.items():
            _, node = writes[0]
            assert node.hook is not None
            # Records made before the tracer canonicalised paths: undo what /proc spells.
            canonical = os.path.normpath(proc_alias(path, 0, ""))
            own = own_directory(node, project, home)
            if _under(canonical, own) or _staged(canonical):
                continue
            kind = persistence_kind(canonical, home, ci_files)
            if kind is None and own is not None:
                other = other_package(canonical, node.hook.package)
                kind = f"the files of another package ({other})" if other else None
            if kind is None:
                continue
            finding = context.finding(INFO, f"{node.hook.label} wrote {kind}: {path}", node, [s for s, _ in writes])
            reason = setup_write_reason(context, canonical, [writer for _, writer in writes]) or chosen_by_project(
                context, node, canonical, git_only=True
            )
            yield finding if reason is None else dataclasses.replace(finding, excepted=reason)
        yield from self._hard_links(context, home, ci_files)

    def _hard_links(self, context: RuleContext, home: str, ci_files: tuple[str, ...]) -> Iterator[Finding]:
        """A hard link is an alias no path resolution undoes: a hook that links ~/.bashrc to
        /tmp/x changes ~/.bashrc by writing /tmp/x. Making the link is the finding."""
        for seq, event in context.record.events.file_writes({FileOp.LINK}):
            node = context.tree.node_at(seq)
            kind = persistence_kind(os.path.normpath(event.path), home, ci_files)
            if node is None or node.hook is None or kind is None:
                continue
            message = f"{node.hook.label} made a hard link to {kind}: {event.path} as {event.target}"
            finding = context.finding(INFO, message, node, [seq])
            # (useradd locks /etc/passwd by linking its own new file /etc/passwd.PID to .lock)
            reason = setup_write_reason(context, os.path.normpath(event.path), [node])
            yield finding if reason is None else dataclasses.replace(finding, excepted=reason)
