"""Files that hold credentials: what the tracer watches a hook's reads for, and what the
credential-read rule judges."""

from __future__ import annotations

import fnmatch

#: ``~`` is the job's home directory.
CREDENTIAL_PATTERNS = (
    "~/.npmrc",
    "~/.yarnrc",
    "~/.yarnrc.yml",
    "~/.pypirc",
    "~/.netrc",
    "~/.git-credentials",
    "~/.ssh/*",
    "~/.aws/*",
    "~/.azure/*",
    "~/.config/gcloud/*",
    "~/.config/gh/*",
    "~/.config/hub",
    "~/.docker/config.json",
    "~/.kube/config",
    "~/.cargo/credentials*",
    "~/.gem/credentials",
    "~/.m2/settings*.xml",
    "~/.gradle/gradle.properties",
    "/proc/*/environ",
    "/proc/*/mem",
    "/proc/*/maps",
    "/etc/shadow",
)


def is_credential_path(path: str, home: str, own_pid: int | None = None) -> bool:
    """Whether ``path`` holds credentials; a process reading its own /proc entries doesn't count."""
    if own_pid is not None and (path.startswith(f"/proc/{own_pid}/") or path.startswith("/proc/self/")):
        return False
    if path.startswith("/proc/thread-self/"):
        return False
    for pattern in CREDENTIAL_PATTERNS:
        if pattern.startswith("~"):
            if not home:
                continue
            pattern = home.rstrip("/") + pattern[1:]
        if fnmatch.fnmatchcase(path, pattern):
            return True
    return False
