"""The errors ciwatch reports to its user.

Each error carries a message that says what went wrong and a hint that says what to do
next; only ``cli.py`` renders them.
"""

from __future__ import annotations

from ciwatch.exitcodes import ENVIRONMENT_ERROR, INTERNAL_ERROR, USAGE_ERROR


class CiwatchError(Exception):
    """Base of every error that ciwatch explains to its user."""

    #: What to do about it, shown under the message.
    hint: str = ""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        if hint is not None:
            self.hint = hint


class UsageError(CiwatchError):
    """The command line or an input file is wrong; nothing was run."""


class EnvironmentNotSupported(CiwatchError):
    """This machine can't provide what was asked (ptrace, seccomp, a network mode)."""

    hint = "Run `ciwatch doctor` to see what this machine allows and how to fix it."


def exit_code_of(error: BaseException) -> int:
    """The exit code ciwatch ends with when ``error`` stops it (the exit-code contract)."""
    if isinstance(error, UsageError):
        return USAGE_ERROR
    if isinstance(error, EnvironmentNotSupported):
        return ENVIRONMENT_ERROR
    return INTERNAL_ERROR
