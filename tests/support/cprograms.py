"""Small C test programs (sources in ``tests/support/c``), compiled with gcc once per session.

``program("thread_exec")`` compiles ``c/thread_exec.c`` on first use into a directory that
lives as long as the test session, and returns the executable's path.
"""

from __future__ import annotations

import atexit
import functools
import shutil
import subprocess
import tempfile
from pathlib import Path

SOURCES = Path(__file__).parent / "c"
_FLAGS = ["-O1", "-Wall", "-Werror", "-pthread"]


@functools.cache
def _cache_dir() -> Path:
    directory = Path(tempfile.mkdtemp(prefix="ciwatch-cprograms-"))
    atexit.register(shutil.rmtree, directory, ignore_errors=True)
    return directory


@functools.cache
def program(name: str) -> Path:
    """The compiled executable of ``tests/support/c/<name>.c``."""
    gcc = shutil.which("gcc")
    if gcc is None:
        raise RuntimeError("gcc is not installed; .ci/run installs it")
    source = SOURCES / f"{name}.c"
    output = _cache_dir() / name
    result = subprocess.run([gcc, *_FLAGS, "-o", str(output), str(source)], capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"gcc failed for {source}:\n{result.stderr}")
    return output
