"""The record's end line says how much memory ciwatch's tracing process took at its peak
(issue 14's benchmark reports it per configuration): its own, never the build's."""

from __future__ import annotations

import sys
from pathlib import Path

from ciwatch.record.closing import End
from tests.support.runner import run_ciwatch

#: The build holds this much memory touched (resident) for a moment.
BUILD_MB = 300
HOLD = f"b = bytearray({BUILD_MB} * 10**6)\nfor i in range(0, len(b), 4096): b[i] = 1\n"


def test_end_line_gives_the_tracers_peak_memory_not_the_builds(tmp_path: Path) -> None:
    run = run_ciwatch(["--net", "off", "--", sys.executable, "-c", HOLD], tmp_path / "out")
    assert run.code == 0, run.stderr
    end = run.record.end
    assert isinstance(end, End)
    # A Python process with ciwatch imported is tens of MB; the build's 300 MB (its children's
    # peak, which RUSAGE_CHILDREN or wait4 on the tracer would report) is not the tracer's.
    assert 10 < end.tracer_max_rss_mb < BUILD_MB
