"""The controlling terminal, handed to the build's process group and back.

The build runs in a process group of its own, so that a signal it sends to its own group
(``kill 0``) cannot reach ciwatch. On a terminal, that group must then be the foreground
one, as the build would be if run bare: it reads the keyboard, and Ctrl-C and Ctrl-Z reach it
(and only it) from the terminal itself. When the build is done, the group ciwatch was started
in gets the terminal back.
"""

from __future__ import annotations

import contextlib
import os
import signal


def _open_terminal() -> int | None:
    try:
        return os.open("/dev/tty", os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError:
        return None  # no controlling terminal: CI, a pipe, a daemon


def hand_to(group: int) -> bool:
    """Make ``group`` the terminal's foreground process group, if ours is it now (a build
    started in the background stays in the background). True if the terminal changed hands."""
    fd = _open_terminal()
    if fd is None:
        return False
    try:
        if os.tcgetpgrp(fd) != os.getpgrp():
            return False
        os.tcsetpgrp(fd, group)
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


def take_back(from_group: int) -> None:
    """Make our own process group the foreground one again, if ``from_group`` still is."""
    fd = _open_terminal()
    if fd is None:
        return
    # Setting the foreground group from a background process raises SIGTTOU: not for us.
    previous = signal.signal(signal.SIGTTOU, signal.SIG_IGN)
    try:
        with contextlib.suppress(OSError):
            if os.tcgetpgrp(fd) == from_group:
                os.tcsetpgrp(fd, os.getpgrp())
    finally:
        signal.signal(signal.SIGTTOU, previous)
        os.close(fd)
