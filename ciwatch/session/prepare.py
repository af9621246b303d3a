"""Phase 1, before the build starts (and before the tracer process is forked): every check
of the run's input, done once. What passes is a ``RunPlan`` the later phases trust."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from ciwatch.egress.sandbox import check_sandbox_possible
from ciwatch.errors import UsageError
from ciwatch.modes import LeftoverAction, NetMode
from ciwatch.policy.model import Policy
from ciwatch.record import RECORD_FILE


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


def prepare(options: RunOptions) -> RunPlan:
    """Check everything that can be wrong with the input; raises ``UsageError`` or
    ``EnvironmentNotSupported`` before anything has started."""
    if not options.command:
        raise UsageError("no command to run", hint="Put the build command after `--`: ciwatch run -- npm ci")
    record_path = _prepare_out_dir(options.out_dir)
    if options.net.traits.needs_privilege:
        check_sandbox_possible()
    return RunPlan(
        command=tuple(options.command),
        out_dir=options.out_dir,
        record_path=record_path,
        leftovers=options.leftovers,
        net=options.net,
        policy=options.policy,
        extra_cas=tuple(options.extra_cas),
        verbose=options.verbose,
    )


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
    return out_dir / RECORD_FILE
