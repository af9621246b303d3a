"""Helper programs that die with ciwatch.

ciwatch runs a few programs of its own while a build runs (keytool for the JVM's trust
store, the package managers it asks for their registries). A ciwatch killed meanwhile must
not leave them behind. ``PR_SET_PDEATHSIG`` does that, but setting it needs code run between
fork and exec (``preexec_fn``), which isn't safe in a process with threads, as the tracer
process is; util-linux's ``setpriv --pdeathsig`` sets it and execs the program instead.
"""

from __future__ import annotations

import functools
import shutil
import subprocess
from collections.abc import Sequence


@functools.cache
def _setpriv_with_pdeathsig() -> str | None:
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        return None
    try:
        done = subprocess.run([setpriv, "--help"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return setpriv if "--pdeathsig" in done.stdout else None  # util-linux 2.33 and later


def dying_with_this_thread(argv: Sequence[str]) -> list[str]:
    """``argv`` run so that it is killed when the thread that started it dies (as is, where
    setpriv can't do it)."""
    setpriv = _setpriv_with_pdeathsig()
    return [setpriv, "--pdeathsig", "KILL", "--", *argv] if setpriv else list(argv)
