"""`ciwatch run --help` shows the help (it used to exit 2 with "missing `--`")."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.support.runner import ciwatch_command


@pytest.mark.parametrize("flags", [["--help"], ["-h"], ["--net", "off", "--help"]])
def test_run_help_shows_the_help(flags: list[str]) -> None:
    done = subprocess.run([*ciwatch_command(), "run", *flags], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "-- COMMAND" in done.stdout
    assert "ciwatch run -- npm ci" in done.stdout


def test_help_after_the_double_dash_is_the_builds(tmp_path: Path) -> None:
    # An option after `--` is the build's: `--help` is echoed by the build, not taken by ciwatch.
    done = subprocess.run(
        [*ciwatch_command(), "run", "--net", "off", "--out", str(tmp_path / "out"), "--", "printf", "%s\\n", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "--help\n"
