"""The tracer: ptrace with a seccomp-bpf pre-filter over the build's whole process tree."""

# First: python-ptrace would run ldconfig at import to find libc (ciwatch.trace.libc).
from ciwatch.trace import libc  # noqa: F401  # isort: skip
from ciwatch.trace.procfs import ATTRIBUTION_ENV
from ciwatch.trace.tracer import BuildExit, Tracer

__all__ = ["ATTRIBUTION_ENV", "BuildExit", "Tracer"]
