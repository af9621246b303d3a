"""Phase 1, before the build starts (and before the tracer process is forked): every check
of the run's input, done once. What passes is a ``RunPlan`` the later phases trust."""

from __future__ import annotations

import errno
import fcntl
import os
import stat
from collections.abc import Mapping
from pathlib import Path

from ciwatch.dataclass import dataclass, field
from ciwatch.errors import EnvironmentNotSupported, UsageError
from ciwatch.exitcodes import POLICY_FAILED
from ciwatch.modes import FileEvents, LeftoverAction, NetMode
from ciwatch.policy.model import Policy
from ciwatch.record import RECORD_FILE
from ciwatch.session.builduser import BuildUser, resolve_build_user
from ciwatch.trace.fanotify import FanotifyGroup, open_write_group


@dataclass(frozen=True)
class RunOptions:
    """The run as asked for on the command line, not yet checked."""

    command: list[str]
    out_dir: Path
    leftovers: LeftoverAction = LeftoverAction.LEAVE
    net: NetMode = NetMode.REDIRECT
    policy: Policy = field(default_factory=Policy)
    extra_cas: list[Path] = field(default_factory=list)
    """CA bundles to trust for upstream servers besides the system's (a corporate proxy's)."""
    verbose: bool = False
    fail_exit_code: int = POLICY_FAILED
    """The exit code of a successful build whose verdict fails it (block mode)."""
    file_events: FileEvents = FileEvents.AUTO
    user: str | None = None
    """``--user``: whom the build runs as (default: the user sudo was called by, if any)."""
    env: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    """Where SUDO_UID is read."""
    discovery_cache: bool = True
    """Registry discovery may answer from its cache (``--no-discovery-cache``: always ask)."""


@dataclass(frozen=True)
class RunPlan:
    """A run whose input was checked: only ``prepare`` makes one."""

    command: tuple[str, ...]
    """Never empty."""
    out_dir: Path
    record_path: Path
    """In ``out_dir``, which exists and is writable."""
    leftovers: LeftoverAction
    net: NetMode
    """Possible on this machine."""
    policy: Policy
    extra_cas: tuple[Path, ...]
    verbose: bool
    fail_exit_code: int = POLICY_FAILED
    fanotify: bool = False
    """File writes (and hooks' reads) come from fanotify: ``--file-events`` resolved."""
    fanotify_group: FanotifyGroup | None = None
    """With fanotify: the write group opened to decide it, which the tracer process reads."""
    build_user: BuildUser | None = None
    """Whom the build runs as when not as ciwatch (root under sudo gives it back its user)."""
    discovery_cache: bool = True
    lock_fd: int = -1
    """Holds ``--out``'s lock for as long as this process (and the tracer forked from it) lives."""


def prepare(options: RunOptions) -> RunPlan:
    """Check everything that can be wrong with the input; raises ``UsageError`` or
    ``EnvironmentNotSupported`` before anything has started."""
    if not options.command:
        raise UsageError("no command to run", hint="Put the build command after `--`: ciwatch run -- npm ci")
    if options.net.traits.needs_privilege:
        from ciwatch.egress.sandbox import check_sandbox_possible  # its tools and subprocess: sandbox only

        check_sandbox_possible()  # before --out exists: a refused run leaves nothing behind
    fanotify_group = _fanotify_group(options.file_events)
    build_user = resolve_build_user(options.user, options.env)
    record_path = _prepare_out_dir(options.out_dir)
    lock_fd = _lock_out_dir(options.out_dir)
    return RunPlan(
        command=tuple(options.command),
        out_dir=options.out_dir,
        record_path=record_path,
        leftovers=options.leftovers,
        net=options.net,
        policy=options.policy,
        extra_cas=tuple(options.extra_cas),
        verbose=options.verbose,
        fail_exit_code=options.fail_exit_code,
        fanotify=fanotify_group is not None,
        fanotify_group=fanotify_group,
        build_user=build_user,
        discovery_cache=options.discovery_cache,
        lock_fd=lock_fd,
    )


def _fanotify_group(choice: FileEvents) -> FanotifyGroup | None:
    """The write group, when fanotify is chosen: ``auto`` takes it wherever this process may
    open it and mark every writable filesystem."""
    if choice is FileEvents.PTRACE:
        return None
    found = open_write_group()
    if isinstance(found, str) and choice is FileEvents.FANOTIFY:
        raise EnvironmentNotSupported(
            f"--file-events fanotify: {found}",
            hint="Run ciwatch as root (sudo) outside a container's user namespace, or use --file-events ptrace.",
        )
    return None if isinstance(found, str) else found


def _prepare_out_dir(out_dir: Path) -> Path:
    """Create ``--out`` and check that the record can be written there."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        probe = out_dir / f".ciwatch-write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as error:
        raise UsageError(
            f"cannot write the record to {out_dir}: {error.strerror}",
            hint="Pass --out with a directory you can write to (it is created if missing).",
        ) from None
    _check_out_dir_is_ours(out_dir)
    record = out_dir / RECORD_FILE
    try:
        existing = os.lstat(record)
    except FileNotFoundError:
        return record
    if not stat.S_ISREG(existing.st_mode) or existing.st_uid != os.geteuid():
        raise UsageError(
            f"{record} is not a file of ours (a link, or another user's): ciwatch won't write through it",
            hint="Remove it, or pass --out with a new directory.",
        )
    return record


def _check_out_dir_is_ours(out_dir: Path) -> None:
    """Refuse an ``--out`` another user could have prepared (links to files we would overwrite)
    or could change under us: owned by someone else, or writable by others without the sticky
    bit. Running as root makes this matter most: root writes wherever a link points."""
    info = os.stat(out_dir)
    if info.st_uid != os.geteuid():
        raise UsageError(
            f"--out {out_dir} belongs to another user (uid {info.st_uid}): ciwatch won't write its record there",
            hint="Pass --out with a directory of your own (it is created if missing).",
        )
    writable_by_others = info.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
    if writable_by_others and not info.st_mode & stat.S_ISVTX:
        raise UsageError(
            f"--out {out_dir} is writable by other users: they could replace the record while it is written",
            hint=f"chmod go-w {out_dir}, or pass --out with a directory only you can write to.",
        )


def _lock_out_dir(out_dir: Path) -> int:
    """One run per ``--out`` at a time: two would interleave their lines and destroy both records."""
    fd = os.open(out_dir / ".ciwatch.lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as error:
        os.close(fd)
        if error.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
            raise
        raise UsageError(
            f"another ciwatch run is writing to {out_dir}",
            hint="Give each run its own --out (for example one per step), or wait for the other to finish.",
        ) from None
    return fd
