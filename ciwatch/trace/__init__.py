"""The tracer: ptrace with a seccomp-bpf pre-filter over the build's whole process tree."""

from ciwatch.trace.procfs import ATTRIBUTION_ENV
from ciwatch.trace.tracer import BuildExit, Tracer

__all__ = ["ATTRIBUTION_ENV", "BuildExit", "Tracer"]
