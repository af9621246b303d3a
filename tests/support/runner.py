"""Running the real ``ciwatch`` CLI in a subprocess, as a user would."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from ciwatch.record import Record, read_record
from ciwatch.record.events import Event


@dataclass
class CiwatchRun:
    process: subprocess.CompletedProcess[bytes]
    out_dir: Path

    @property
    def code(self) -> int:
        return self.process.returncode

    @property
    def stdout(self) -> str:
        return self.process.stdout.decode(errors="replace")

    @property
    def stderr(self) -> str:
        return self.process.stderr.decode(errors="replace")

    @property
    def record(self) -> Record:
        return read_record(self.out_dir)

    def events(self, kind: type[Event]) -> list:  # type: ignore[type-arg]
        return [item.event for item in self.record.events if isinstance(item.event, kind)]


def ciwatch_command() -> list[str]:
    return [sys.executable, "-m", "ciwatch"]


def run_ciwatch(
    args: list[str],
    out_dir: Path,
    *,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    input: bytes | None = None,
    timeout: float = 300,
) -> CiwatchRun:
    """``ciwatch run --out OUT_DIR [args...]``; ``args`` starts with ciwatch's own options
    or ``--``."""
    full_env = dict(os.environ)
    if env:
        full_env.update(env)
    process = subprocess.run(
        [*ciwatch_command(), "run", "--out", str(out_dir), *args],
        cwd=cwd,
        env=full_env,
        input=input,
        capture_output=True,
        timeout=timeout,
    )
    return CiwatchRun(process, out_dir)
