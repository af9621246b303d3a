"""The run's certificate authority and the trust bundle every client of the build is given.

mitmproxy creates the CA in a private directory in memory-backed storage when it can
(/dev/shm); the directory is removed as soon as the proxy has loaded it, so the CA's key
lives only in the proxy's memory and never outlives the run, even when the run is killed.
The run's directories are made by ``rundirs``, which lets a later run sweep those a killed
run left.
What the build sees is public: a bundle of the system's CAs plus the run's CA certificate,
and the client-specific files that point at it.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import os
import shutil
import subprocess
import time
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from ciwatch.dataclass import dataclass
from ciwatch.egress.rundirs import RUN_DIR_PREFIX, make_run_dir, remove_run_dir, sweep_stale_run_dirs

# Re-exported: the run directories were defined here first.
from ciwatch.lifetime import dying_with_this_thread

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric import ec

__all__ = ["RUN_DIR_PREFIX", "make_run_dir", "remove_run_dir", "sweep_stale_run_dirs"]

log = logging.getLogger(__name__)

#: Where Debian, Fedora, Alpine and friends keep the system's CA bundle.
SYSTEM_BUNDLES = (
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/cert.pem",
    "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem",
)
_JAVA_STORE_PASSWORD = "changeit"
_JAVA_ALIAS = "ciwatch-run-ca"


def system_bundle() -> Path | None:
    for candidate in SYSTEM_BUNDLES:
        if os.path.isfile(candidate):
            return Path(candidate)
    return None


@dataclass(frozen=True)
class RunAuthority:
    cert_pem: bytes
    key: ec.EllipticCurvePrivateKey
    """Handed to mitmproxy as it is: never written anywhere, not even encoded."""


def generate_run_ca() -> RunAuthority:
    """A CA for this run only: valid for two days, its key never written anywhere. Its
    certificate is written by ``egress/runca.py``: ``cryptography.x509`` is imported by
    mitmproxy once the build runs, and so is the package ``serialization`` (its SSH, PKCS7 and
    PKCS12 code and the ciphers), which the key's encoders would import now."""
    import datetime

    from cryptography.hazmat.primitives.asymmetric import ec

    from ciwatch.egress.runca import ca_certificate_tbs, p256_public_key, signed_certificate

    # P-256: made in a millisecond, where RSA-2048 takes 60-150 ms of the build's start (the CA
    # must exist before the build does), and as strong as RSA-3072. mitmproxy signs the
    # certificates it makes for each host with it and gives them this key (ECDSA): every TLS
    # 1.2 and 1.3 client accepts that.
    key = ec.generate_private_key(ec.SECP256R1())
    numbers = key.public_key().public_numbers()
    spki, point = p256_public_key(numbers.x, numbers.y)
    now = datetime.datetime.now(datetime.UTC)
    tbs = ca_certificate_tbs(spki, point, "ciwatch", f"ciwatch run CA {os.getpid()}", now)
    der = signed_certificate(tbs, key.sign(tbs, _ecdsa_with_sha256()))
    return RunAuthority(_pem("CERTIFICATE", der), key)


def _ecdsa_with_sha256() -> ec.ECDSA:
    """``ec.ECDSA(hashes.SHA256())`` (randomised, not deterministic), made without
    ``ECDSA.__init__``, which imports cryptography's OpenSSL backend (~15 ms of the build's
    start) only to check the deterministic signing this doesn't ask for. The signer reads the
    two properties; mitmproxy imports the backend once it starts, and a short build ends first."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    class Sha256Ecdsa(ec.ECDSA):
        def __init__(self) -> None:
            """Nothing to check: SHA-256, a randomised signature."""

        @property
        def algorithm(self) -> hashes.HashAlgorithm:
            return hashes.SHA256()

        @property
        def deterministic_signing(self) -> bool:
            return False

    return Sha256Ecdsa()


def _pem(label: str, der: bytes) -> bytes:
    text = base64.b64encode(der).decode()
    lines = [text[i : i + 64] for i in range(0, len(text), 64)]
    return "\n".join([f"-----BEGIN {label}-----", *lines, f"-----END {label}-----", ""]).encode()


@dataclass
class TrustFiles:
    """Public files for the build's clients; all in one directory removed at the end."""

    directory: Path
    ca_cert: Path
    """The run's CA certificate alone (for NODE_EXTRA_CA_CERTS, which adds to Node's roots)."""
    bundle: Path
    """System CAs + the run's CA (for clients whose setting replaces their default roots)."""
    wgetrc: Path
    apt_config: Path
    java_trust_store: Path | None

    def remove(self) -> None:
        remove_run_dir(self.directory)


def _read_if_exists(path: str | None) -> str:
    if not path:
        return ""
    try:
        return Path(path).read_text(errors="replace")
    except OSError:
        return ""


def upstream_trust_pem(extra_bundles: Iterable[Path]) -> bytes:
    """The system's CAs plus the user's extra CAs, as one PEM bundle."""
    parts = []
    system = system_bundle()
    if system is not None:
        parts.append(system.read_bytes())
    for extra in extra_bundles:
        parts.append(extra.read_bytes())
    return b"\n".join(part.rstrip(b"\n") for part in parts) + b"\n"


#: Variables through which a job may already point its clients at CA files of its own.
JOB_CA_VARIABLES = (
    "SSL_CERT_FILE",
    "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE",
    "NODE_EXTRA_CA_CERTS",
    "npm_config_cafile",
    "NPM_CONFIG_CAFILE",
    "PIP_CERT",
    "GIT_SSL_CAINFO",
    "CARGO_HTTP_CAINFO",
    "YARN_HTTPS_CA_FILE_PATH",
    "BUNDLE_SSL_CA_CERT",
)


def job_ca_files(env: dict[str, str]) -> list[Path]:
    found = []
    for name in JOB_CA_VARIABLES:
        value = env.get(name)
        if value and os.path.isfile(value) and b"BEGIN CERTIFICATE" in Path(value).read_bytes()[: 1 << 20]:
            found.append(Path(value))
    return found


def _unique(paths: list[Path]) -> list[Path]:
    seen: set[str] = set()
    result = []
    for path in paths:
        key = os.path.realpath(path)
        if key not in seen:
            seen.add(key)
            result.append(path)
    return result


def write_trust_files(ca_cert_pem: bytes, extra_bundles: Iterable[Path], env: dict[str, str]) -> TrustFiles:
    """Write the bundle and per-client configuration; ``env`` is the build's environment
    (an existing WGETRC or APT_CONFIG is kept by including its content)."""
    directory = make_run_dir("trust")
    # What the job already trusts stays trusted: a client that bypasses the proxy (or a
    # host passed through) still meets the servers' real certificates.
    extras = _unique([*extra_bundles, *job_ca_files(env)])
    extra_pem = b"".join(path.read_bytes().rstrip(b"\n") + b"\n" for path in extras)
    ca_cert = directory / "ciwatch-run-ca.pem"
    ca_cert.write_bytes(ca_cert_pem + extra_pem)
    bundle = directory / "ca-bundle.pem"
    bundle.write_bytes(upstream_trust_pem(extras) + ca_cert_pem)
    wgetrc = directory / "wgetrc"
    wgetrc.write_text(_read_if_exists(env.get("WGETRC")) + f"\nca_certificate = {bundle}\n")
    apt_config = directory / "apt.conf"
    apt_config.write_text(_read_if_exists(env.get("APT_CONFIG")) + f'\nAcquire::https::CaInfo "{bundle}";\n')
    for path in (directory, ca_cert, bundle, wgetrc, apt_config):
        # apt downloads as the _apt user, and a build may drop privileges: world-readable.
        path.chmod(0o755 if path.is_dir() else 0o644)
    return TrustFiles(directory, ca_cert, bundle, wgetrc, apt_config, None)


def java_trust_store(directory: Path, ca_cert: Path) -> Path | None:
    """A copy of the JDK's trust store plus the run's CA, when a JDK is present
    (JAVA_TOOL_OPTIONS' trustStore replaces cacerts, so the system CAs must be in it). Written
    directly (``ciwatch.egress.jks``); keytool only for a store that can't be read here."""
    keytool = shutil.which("keytool")
    if keytool is None:
        return None
    java_home = Path(os.path.realpath(keytool)).parent.parent
    candidates = [Path("/etc/ssl/certs/java/cacerts"), java_home / "lib/security/cacerts"]
    source = next((path for path in candidates if path.is_file()), None)
    if source is None:
        return None
    store = directory / "java-cacerts"
    written = _with_run_ca(source.read_bytes(), _first_certificate_der(ca_cert.read_bytes()))
    if written is None:
        return _keytool_trust_store(keytool, source, store, ca_cert)
    store.write_bytes(written)
    store.chmod(0o644)
    return store


def _with_run_ca(source: bytes, ca_der: bytes) -> bytes | None:
    """The JDK's store ``source`` with the run's CA added (as a JKS store), or None."""
    from ciwatch.egress import jks

    if jks.is_jks(source):
        return jks.with_trusted_cert(source, _JAVA_ALIAS, ca_der, _JAVA_STORE_PASSWORD)
    certificates = jks.pkcs12_certificates(source)
    if certificates is None:
        return None
    return jks.trust_store([*certificates, (_JAVA_ALIAS, ca_der)], _JAVA_STORE_PASSWORD)


def _first_certificate_der(pem: bytes) -> bytes:
    begin, end = b"-----BEGIN CERTIFICATE-----", b"-----END CERTIFICATE-----"
    start = pem.index(begin) + len(begin)
    return base64.b64decode(b"".join(pem[start : pem.index(end, start)].split()))


def _keytool_trust_store(keytool: str, source: Path, store: Path, ca_cert: Path) -> Path | None:
    shutil.copyfile(source, store)
    started = time.monotonic()
    done = subprocess.run(
        dying_with_this_thread(
            [
                keytool,
                "-importcert",
                "-noprompt",
                "-alias",
                _JAVA_ALIAS,
                "-file",
                str(ca_cert),
                "-keystore",
                str(store),
                "-storepass",
                _JAVA_STORE_PASSWORD,
            ]
        ),
        capture_output=True,
        text=True,
        timeout=60,
    )
    log.debug("keytool took %.2fs", time.monotonic() - started)
    if done.returncode != 0:
        log.warning("could not make a Java trust store: %s", done.stderr.strip() or done.stdout.strip())
        with contextlib.suppress(OSError):
            store.unlink()
        return None
    store.chmod(0o644)
    return store


def client_trust_env(files: TrustFiles, env: dict[str, str]) -> dict[str, str]:
    """Variables that make each client of the build trust the run's CA (and still the
    system's). docs/architecture.md#trust lists who reads what."""
    bundle = str(files.bundle)
    result = {
        "NODE_EXTRA_CA_CERTS": str(files.ca_cert),
        "npm_config_cafile": bundle,
        "YARN_HTTPS_CA_FILE_PATH": bundle,
        "PIP_CERT": bundle,
        "REQUESTS_CA_BUNDLE": bundle,
        "SSL_CERT_FILE": bundle,
        "CURL_CA_BUNDLE": bundle,
        "GIT_SSL_CAINFO": bundle,
        "CARGO_HTTP_CAINFO": bundle,
        "BUNDLE_SSL_CA_CERT": bundle,
        "WGETRC": str(files.wgetrc),
        "APT_CONFIG": str(files.apt_config),
    }
    if files.java_trust_store is not None:
        options = (
            f"-Djavax.net.ssl.trustStore={files.java_trust_store} "
            f"-Djavax.net.ssl.trustStorePassword={_JAVA_STORE_PASSWORD}"
        )
        existing = env.get("JAVA_TOOL_OPTIONS", "")
        result["JAVA_TOOL_OPTIONS"] = f"{existing} {options}".strip()
    return result
