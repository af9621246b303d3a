"""Egress under bad input: a mode the machine can't provide, a build that fights the proxy.
Clear errors before the build starts, or correct records; never a hang or a lost exit code."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ciwatch.record import read_record
from ciwatch.record.events import EgressFlow, NetConnect
from ciwatch.record.vocabulary import TlsHandling
from tests.support.internet import EVIL, TestInternet

pytestmark = pytest.mark.root


def _ciwatch(args: list[str], cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ciwatch", "run", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )


def test_sandbox_without_nftables_is_a_clear_error_before_the_build(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("ip", "nsenter", "sh", "touch"):  # everything but nft
        found = shutil.which(tool)
        assert found is not None
        (bin_dir / tool).symlink_to(found)
    marker = tmp_path / "ran"
    env = {**os.environ, "PATH": str(bin_dir)}
    done = _ciwatch(["--net", "sandbox", "--out", str(tmp_path / "out"), "--", "touch", str(marker)], tmp_path, env)
    assert done.returncode == 69, done.stderr
    assert "`nft` (apt-get install nftables)" in done.stderr
    assert "--net redirect" in done.stderr
    assert not marker.exists()


def test_sandbox_without_privilege_is_a_clear_error_before_the_build(tmp_path):
    setpriv = shutil.which("setpriv")
    assert setpriv is not None
    marker = tmp_path / "ran"
    command = [
        setpriv,
        "--inh-caps=-all",
        "--bounding-set=-sys_admin,-net_admin",
        "--",
        sys.executable,
        "-m",
        "ciwatch",
        "run",
        "--net",
        "sandbox",
        "--out",
        str(tmp_path / "out"),
        "--",
        "touch",
        str(marker),
    ]
    done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 69, done.stderr
    assert "CAP_SYS_ADMIN and CAP_NET_ADMIN" in done.stderr
    assert not marker.exists()


def test_an_invalid_policy_stops_before_the_build(tmp_path):
    policy = tmp_path / "policy.yml"
    policy.write_text("version: 1\nmode: blok\n")
    marker = tmp_path / "ran"
    done = _ciwatch(["--policy", str(policy), "--out", str(tmp_path / "out"), "--", "touch", str(marker)], tmp_path)
    assert done.returncode == 2
    assert f"{policy}:2" in done.stderr and "mode" in done.stderr
    assert not marker.exists()


def _run_watched(internet: TestInternet, tmp_path: Path, script: str) -> tuple[subprocess.CompletedProcess[str], Path]:
    out = tmp_path / "out"
    env = internet.client_env(tmp_path / "home")
    command = [
        sys.executable, "-m", "ciwatch", "run", "--upstream-ca", str(internet.ca_cert),
        "--out", str(out), "--", "sh", "-c", script,
    ]  # fmt: skip
    done = subprocess.run(
        internet.wrap_with_test_resolver(command), cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    return done, out


def test_build_that_sets_its_own_proxy_keeps_its_exit_code_and_is_recorded(internet, tmp_path):
    """The build points curl at a proxy of its own on loopback (which nobody serves): curl fails
    as it would untraced, its exit code passes through, and the attempt is in the record."""
    done, out = _run_watched(internet, tmp_path, f"HTTPS_PROXY=http://127.0.0.1:9 curl -s https://{EVIL}/x")
    assert done.returncode == 7, done.stderr  # curl: couldn't connect
    connects = [i.event for i in read_record(out).events if isinstance(i.event, NetConnect)]
    assert any(c.address == "127.0.0.1" and c.port == 9 and c.via == "direct" for c in connects)
    assert internet.requests_to(EVIL) == []


def test_build_that_unsets_our_ca_variables_keeps_its_exit_code(internet, tmp_path):
    """A build that drops ciwatch's CA settings falls back to the system's roots, which trust
    neither the run's CA nor the test server's: curl fails exactly as it would untraced (60),
    and the host is recorded, passed through after the first refusal."""
    script = f"unset SSL_CERT_FILE CURL_CA_BUNDLE; curl -s https://{EVIL}/one; curl -s https://{EVIL}/two"
    done, out = _run_watched(internet, tmp_path, script)
    assert done.returncode == 60, done.stderr
    flows = [i.event for i in read_record(out).events if isinstance(i.event, EgressFlow)]
    assert any(f.tls is TlsHandling.PASSTHROUGH and f.sni == EVIL for f in flows)
    assert internet.requests_to(EVIL) == []
