"""persistence-write: a hook writes where code runs again later: shell start-up files, CI
workflow definitions, git hooks, Python start-up hooks (.pth, sitecustomize), cron, systemd
units, SSH authorized keys, and the package managers' credential files."""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Iterator

from ciwatch.policy.model import Severity
from ciwatch.rules.base import Finding, RuleContext, RuleInfo

INFO = RuleInfo(
    id="persistence-write",
    summary="An install hook wrote a file that makes code run later (rc files, workflows, git hooks, .pth...)",
    default_severity=Severity.HIGH,
    hint="No install hook has a reason to change these files: treat the package as compromised.",
)

#: (pattern on the full path, what it is). ``~`` is the job's home directory.
PERSISTENCE_PATTERNS = (
    ("~/.bashrc", "a shell start-up file"),
    ("~/.bash_profile", "a shell start-up file"),
    ("~/.bash_login", "a shell start-up file"),
    ("~/.profile", "a shell start-up file"),
    ("~/.zshrc", "a shell start-up file"),
    ("~/.zshenv", "a shell start-up file"),
    ("~/.zprofile", "a shell start-up file"),
    ("~/.config/fish/*", "a shell start-up file"),
    ("/etc/profile", "a shell start-up file"),
    ("/etc/profile.d/*", "a shell start-up file"),
    ("/etc/bash.bashrc", "a shell start-up file"),
    ("/etc/environment", "a shell start-up file"),
    ("*/.github/workflows/*", "a GitHub Actions workflow"),
    ("*/.github/actions/*", "a GitHub Action"),
    ("*/.gitlab-ci.yml", "the GitLab CI definition"),
    ("*/.git/hooks/*", "a git hook"),
    ("*/.git/config", "the git configuration"),
    ("*.pth", "a Python start-up hook (.pth)"),
    ("*/sitecustomize.py", "a Python start-up hook (sitecustomize)"),
    ("*/usercustomize.py", "a Python start-up hook (usercustomize)"),
    ("/etc/cron*", "a cron job"),
    ("/var/spool/cron/*", "a cron job"),
    ("/etc/systemd/*", "a systemd unit"),
    ("~/.config/systemd/*", "a systemd unit"),
    ("/etc/ld.so.preload", "the dynamic linker's preload list"),
    ("~/.ssh/authorized_keys*", "SSH authorized keys"),
    ("~/.npmrc", "npm's credentials file"),
    ("~/.pypirc", "PyPI's credentials file"),
    ("~/.docker/config.json", "Docker's credentials file"),
    ("~/.gitconfig", "the git configuration"),
)


def persistence_kind(path: str, home: str) -> str | None:
    for pattern, kind in PERSISTENCE_PATTERNS:
        expanded = pattern.replace("~", home.rstrip("/"), 1) if pattern.startswith("~") and home else pattern
        if pattern.startswith("~") and not home:
            continue
        if fnmatch.fnmatchcase(path, expanded):
            return kind
    return None


class PersistenceWrite:
    info = INFO

    def check(self, context: RuleContext) -> Iterator[Finding]:
        home = context.record.header.home
        for path, writes in context.written_by_hooks.items():
            kind = persistence_kind(os.path.normpath(path), home)
            if kind is None:
                continue
            _, node = writes[0]
            assert node.hook is not None
            yield context.finding(INFO, f"{node.hook.label} wrote {kind}: {path}", node, [s for s, _ in writes])
