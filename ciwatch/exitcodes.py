"""The exit-code contract (documented in the README).

The build's own exit code passes through unchanged (a build killed by signal N gives 128+N,
as shells do). ciwatch's own outcomes use codes that a build rarely uses on purpose.
"""

from __future__ import annotations

#: The command could not be found or executed (as in POSIX shells).
COMMAND_NOT_FOUND = 127
COMMAND_NOT_EXECUTABLE = 126
#: The build succeeded but the policy verdict is ``fail``.
POLICY_FAILED = 3
#: ciwatch was used wrongly (bad option, bad policy): nothing was run.
USAGE_ERROR = 2
#: ciwatch itself failed (the record says how far it got).
INTERNAL_ERROR = 70
#: This machine can't provide the requested tracing or network mode.
ENVIRONMENT_ERROR = 69


def from_wait_status(exit_code: int | None, signal: int | None) -> int:
    """The exit code a shell would report for a process that ended this way."""
    if signal is not None:
        return 128 + signal
    return exit_code if exit_code is not None else INTERNAL_ERROR
