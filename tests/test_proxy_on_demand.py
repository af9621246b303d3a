"""mitmproxy starts at the build's first connection (issue 14, item 4): starting it costs most of
a second of CPU and ~50 MB, which a build that never connects (a cached install, a compile, a
test run) shouldn't pay. DNS is answered from the start; a connection made late, long after the
build was released, is served through the proxy like any other."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from ciwatch.record import read_record
from ciwatch.record.events import EgressFlow
from tests.support.internet import EVIL, TestInternet

MARKER = "the-build-ran"


def _run(tmp_path: Path, build: list[str], env: dict[str, str] | None = None, *options: str) -> list[str]:
    """``ciwatch run`` under ``-X importtime``: the modules imported after the build printed
    its marker (front and tracer process alike), or raise if the run failed."""
    command = [sys.executable, "-X", "importtime", "-m", "ciwatch", "run", "--out", str(tmp_path / "out"), *options]
    done = subprocess.run(
        [*command, "--", *build],
        cwd=tmp_path,
        env={**(env or os.environ), "PYTHONDONTWRITEBYTECODE": "1"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stderr.splitlines()
    assert MARKER in lines, done.stderr[-3000:]
    return [line.rsplit("|", 1)[-1].strip() for line in lines if line.startswith("import time:")]


def test_a_build_that_never_connects_never_starts_mitmproxy(tmp_path: Path) -> None:
    # Long enough that mitmproxy would have started on release (it took ~0.2-1 s).
    imported = _run(tmp_path, ["sh", "-c", f"sleep 2; echo {MARKER} >&2"])
    assert "ciwatch.egress.proxy" in imported  # the proxy's listeners and DNS were there
    # Only its version is read (for the record's proxy-ready line): nothing of the proxy itself.
    assert not [m for m in imported if m.startswith("mitmproxy.") and m != "mitmproxy.version"]
    end = read_record(tmp_path / "out").end
    assert end is not None and end.clean


@pytest.mark.root
def test_a_connection_made_long_after_the_release_starts_the_proxy_and_is_served(
    internet: TestInternet, tmp_path: Path
) -> None:
    fetch = f"sleep 1.5; echo {MARKER} >&2; curl -sf -o /dev/null https://{EVIL}/late"
    env = internet.client_env(tmp_path / "home")
    env["PYTHONPATH"] = str(Path(__file__).resolve().parent.parent)
    ciwatch = [sys.executable, "-m", "ciwatch", "run", "--upstream-ca", str(internet.ca_cert)]
    done = subprocess.run(
        internet.wrap_with_test_resolver([*ciwatch, "--out", str(tmp_path / "out"), "--", "sh", "-c", fetch]),
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    flows = [item.event for item in read_record(tmp_path / "out").events if isinstance(item.event, EgressFlow)]
    assert [(flow.host, (flow.url or "").rsplit("/", 1)[-1], flow.status) for flow in flows] == [(EVIL, "late", 200)]
    assert [request.path for request in internet.requests_to(EVIL)] == ["/late"]
