"""Starting fast (issue 10, item 6): the build starts while mitmproxy does, on listeners bound
before it; the Java trust store is written without keytool; the built-in policy is read
without jsonschema. What waits for the proxy is served once it runs, or refused if it fails."""

from __future__ import annotations

import datetime
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, pkcs12
from cryptography.x509.oid import NameOID

from ciwatch.egress import jks
from ciwatch.egress.trust import _with_run_ca, generate_run_ca
from ciwatch.exitcodes import ENVIRONMENT_ERROR
from ciwatch.policy.loader import default_policy, parse_policy
from ciwatch.record import read_record
from ciwatch.record.events import EgressFlow
from ciwatch.verdict import RULE_CATALOGUE
from tests.support.internet import EVIL, TestInternet

PASSWORD = "changeit"

#: Starts ciwatch with the proxy's start held until the build has a connection or a DNS query
#: waiting on a listener, then the proxy started (``served``) or failed (``fails``): what the
#: build sent is certainly sent before mitmproxy runs, whatever the machine's speed.
LAUNCHER = """
import select, sys
from ciwatch.egress import proxy

start = proxy.EgressProxy._main
outcome = sys.argv.pop(1)

async def held(self):
    select.select([*self._listeners.tcp.values(), *self._listeners.dns], [], [], 60)
    if outcome == "fails":
        raise RuntimeError("injected failure")
    await start(self)

proxy.EgressProxy._main = held
from ciwatch.cli import main
main()
"""


def _certificate(name: str) -> x509.Certificate:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(datetime.datetime(2026, 1, 1))
        .not_valid_after(datetime.datetime(2036, 1, 1))
        .sign(key, hashes.SHA256())
    )


def _keytool_list(store: Path) -> str:
    """keytool's listing; it checks the store's SHA-1 seal with the password, so a store ciwatch
    wrote wrong fails here."""
    done = subprocess.run(
        ["keytool", "-list", "-keystore", str(store), "-storepass", PASSWORD], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def _run_ca_der() -> bytes:
    pem = generate_run_ca().cert_pem
    return x509.load_pem_x509_certificate(pem).public_bytes(Encoding.DER)


def test_a_jks_store_with_the_run_ca_added_keeps_every_entry_and_its_seal(tmp_path: Path) -> None:
    first, second = (_certificate(name).public_bytes(Encoding.DER) for name in ("one", "two"))
    source = jks.trust_store([("one", first), ("two", second)], "another password")
    written = jks.with_trusted_cert(source, "ciwatch-run-ca", _run_ca_der(), PASSWORD)
    assert jks.is_jks(written)
    assert written[8:12] == (3).to_bytes(4, "big")
    assert first in written and second in written
    if shutil.which("keytool") is None:
        pytest.skip("no JDK: keytool can't check the store")
    store = tmp_path / "cacerts"
    store.write_bytes(written)
    listing = _keytool_list(store)
    assert "3 entries" in listing
    assert "ciwatch-run-ca, " in listing and "trustedCertEntry" in listing


def test_a_password_less_pkcs12_store_becomes_a_jks_store_with_the_run_ca(tmp_path: Path) -> None:
    """JDK 18+ ship cacerts as PKCS12 without a password."""
    cas = [_certificate(name) for name in ("root one", "root two")]
    source = pkcs12.serialize_key_and_certificates(None, None, None, cas, NoEncryption())
    written = _with_run_ca(source, _run_ca_der())
    assert written is not None and jks.is_jks(written)
    if shutil.which("keytool") is None:
        pytest.skip("no JDK: keytool can't check the store")
    store = tmp_path / "cacerts"
    store.write_bytes(written)
    assert "3 entries" in _keytool_list(store)


def test_a_store_that_is_neither_is_left_to_keytool() -> None:
    assert _with_run_ca(b"not a key store at all, just text" * 4, _run_ca_der()) is None


def test_the_built_in_policy_fits_the_schema_it_is_no_longer_checked_against_at_start() -> None:
    text = Path("ciwatch/policy/default.yaml").read_text()
    checked = parse_policy(text, "<built-in default>", known_rules=RULE_CATALOGUE)
    assert checked == default_policy(known_rules=RULE_CATALOGUE)


def _run_held(
    internet: TestInternet, tmp_path: Path, outcome: str, build: list[str]
) -> subprocess.CompletedProcess[str]:
    launcher = tmp_path / "launcher.py"
    launcher.write_text(LAUNCHER)
    command = [sys.executable, str(launcher), outcome, "run", "--upstream-ca", str(internet.ca_cert)]
    command += ["--out", str(tmp_path / "out"), "--", *build]
    env = internet.client_env(tmp_path / "home")
    env["PYTHONPATH"] = str(Path(__file__).resolve().parent.parent)
    return subprocess.run(
        internet.wrap_with_test_resolver(command), cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )


@pytest.mark.root
def test_a_connection_made_before_the_proxy_runs_is_served_through_it(internet: TestInternet, tmp_path: Path) -> None:
    # No DNS first (--resolve): the connection is what waits for the proxy.
    resolve = f"{EVIL}:443:{internet.address_of(EVIL).ipv4}"
    build = ["curl", "-sf", "--resolve", resolve, "-o", "/dev/null", f"https://{EVIL}/early"]
    done = _run_held(internet, tmp_path, "served", build)
    assert done.returncode == 0, done.stderr
    flows = [item.event for item in read_record(tmp_path / "out").events if isinstance(item.event, EgressFlow)]
    assert [(flow.host, (flow.url or "").rsplit("/", 1)[-1], flow.status) for flow in flows] == [(EVIL, "early", 200)]
    assert [request.path for request in internet.requests_to(EVIL)] == ["/early"]


@pytest.mark.root
def test_a_dns_query_sent_before_the_proxy_runs_is_answered(internet: TestInternet, tmp_path: Path) -> None:
    done = _run_held(internet, tmp_path, "served", ["getent", "hosts", EVIL])
    assert done.returncode == 0, done.stderr
    assert EVIL in internet.dns_queries()


@pytest.mark.root
def test_a_proxy_that_fails_to_start_refuses_what_waits_and_fails_the_run(
    internet: TestInternet, tmp_path: Path
) -> None:
    address = internet.address_of(EVIL).ipv4  # no DNS first: the connection is what waits
    fetch = f"import urllib.request as u; u.urlopen('https://{address}/refused', timeout=30).read()"
    done = _run_held(internet, tmp_path, "fails", ["python3", "-c", fetch])
    assert done.returncode == ENVIRONMENT_ERROR, done.stderr
    assert "the egress proxy could not start: injected failure" in done.stderr
    assert "Connection reset" in done.stderr or "ConnectionResetError" in done.stderr, done.stderr
    assert internet.requests_to() == []  # nothing went around the proxy
    record = read_record(tmp_path / "out")
    assert not [item for item in record.events if isinstance(item.event, EgressFlow)]
    end = record.end
    assert end is not None and not end.clean and "injected failure" in (end.error or "")
    assert end.exit_code == ENVIRONMENT_ERROR


JAVA_FETCH = """
public class Fetch {
    public static void main(String[] args) throws Exception {
        var connection = (javax.net.ssl.HttpsURLConnection) new java.net.URL(args[0]).openConnection();
        System.out.println(connection.getResponseCode());
    }
}
"""


@pytest.mark.root
@pytest.mark.skipif(shutil.which("java") is None or shutil.which("keytool") is None, reason="no JDK")
def test_a_jvm_trusts_the_run_ca_through_the_store_ciwatch_wrote(internet: TestInternet, tmp_path: Path) -> None:
    source = tmp_path / "Fetch.java"
    source.write_text(JAVA_FETCH)
    done = _run_held(internet, tmp_path, "served", ["java", str(source), f"https://{EVIL}/java"])
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip().endswith("200")
    flows = [item.event for item in read_record(tmp_path / "out").events if isinstance(item.event, EgressFlow)]
    assert [flow.status for flow in flows] == [200]
