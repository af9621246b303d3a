"""The trust injection of the clients whose registries tests/test_e2e_registries_native.py
fetches from: cargo (``CARGO_HTTP_CAINFO``), gem (``SSL_CERT_FILE``, read by Ruby's OpenSSL),
bundler (``BUNDLE_SSL_CA_CERT``) and apt (``Acquire::https::CaInfo`` in ``APT_CONFIG``). Each
must name the bundle that holds the run's CA; the end-to-end tests show the clients honour it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ciwatch.egress.trust import TrustFiles, client_trust_env, generate_run_ca, remove_run_dir, write_trust_files


@pytest.fixture
def trust(tmp_path: Path) -> Iterator[tuple[TrustFiles, bytes]]:
    authority = generate_run_ca()
    apt_conf = tmp_path / "job-apt.conf"
    apt_conf.write_text('Acquire::Retries "3";\n')
    files = write_trust_files(authority.cert_pem, [], {"APT_CONFIG": str(apt_conf)})
    yield files, authority.cert_pem
    remove_run_dir(files.directory)


@pytest.mark.parametrize("variable", ["CARGO_HTTP_CAINFO", "SSL_CERT_FILE", "BUNDLE_SSL_CA_CERT"])
def test_native_clients_are_given_the_bundle(trust: tuple[TrustFiles, bytes], variable: str) -> None:
    files, cert = trust
    env = client_trust_env(files, {})
    assert env[variable] == str(files.bundle)
    assert cert in Path(env[variable]).read_bytes()


def test_apt_is_given_the_bundle_and_keeps_the_jobs_config(trust: tuple[TrustFiles, bytes]) -> None:
    files, _cert = trust
    text = Path(client_trust_env(files, {})["APT_CONFIG"]).read_text()
    assert f'Acquire::https::CaInfo "{files.bundle}";' in text
    assert 'Acquire::Retries "3";' in text
    # apt fetches as the _apt user: the files must be readable by it.
    assert all(path.stat().st_mode & 0o004 for path in (files.bundle, files.apt_config))
