"""A Java trust store with the run's CA, written directly (JKS), not by keytool.

``JAVA_TOOL_OPTIONS``' trustStore replaces the JDK's ``cacerts``, so the store must hold the
JDK's CAs as well as the run's, and it must exist before the build's first JVM starts. keytool
is a JVM start (half a second, two under load) that every run with a JDK would wait for; the
JKS format is simple enough to write here in a millisecond: the JDK's own store (JKS, or a
PKCS12 store without a password, as JDK 18+ ship it) with one trusted-certificate entry added.

JKS, as ``sun.security.provider.JavaKeyStore`` writes it: magic ``FEEDFEED``, version 2, the
entry count, the entries, then a SHA-1 over the password (UTF-16BE), the words "Mighty
Aphrodite" and everything before. A trusted certificate entry is tag 2, alias, creation time
in milliseconds, certificate type and the DER certificate. Java 8 and later read a JKS store
whatever ``javax.net.ssl.trustStoreType`` says (``keystore.type.compat``).
"""

from __future__ import annotations

import hashlib
import struct
import time

_MAGIC = 0xFEEDFEED
_VERSION = 2
_TRUSTED_CERT = 2
_HEADER = struct.Struct(">III")
_DIGEST_SIZE = 20


def _utf(text: str) -> bytes:
    """Java's ``DataOutput.writeUTF`` for the ASCII text ciwatch writes (aliases, "X.509")."""
    data = text.encode("ascii")
    return struct.pack(">H", len(data)) + data


def _trusted_entry(alias: str, der: bytes, created_ms: int) -> bytes:
    return (
        struct.pack(">I", _TRUSTED_CERT)
        + _utf(alias)
        + struct.pack(">q", created_ms)
        + _utf("X.509")
        + struct.pack(">I", len(der))
        + der
    )


def _digest(password: str, body: bytes) -> bytes:
    return hashlib.sha1(password.encode("utf-16-be") + b"Mighty Aphrodite" + body).digest()  # the format's SHA-1


def _store(count: int, entries: bytes, password: str) -> bytes:
    body = _HEADER.pack(_MAGIC, _VERSION, count) + entries
    return body + _digest(password, body)


def is_jks(store: bytes) -> bool:
    if len(store) < _HEADER.size + _DIGEST_SIZE:
        return False
    magic, version, _ = _HEADER.unpack_from(store)
    return bool(magic == _MAGIC and version == _VERSION)


def with_trusted_cert(store: bytes, alias: str, der: bytes, password: str) -> bytes:
    """A copy of the JKS ``store`` (any password: its entries are copied as they are) with
    ``der`` added as a trusted certificate, sealed with ``password``."""
    if not is_jks(store):
        raise ValueError("not a JKS key store (version 2)")
    _, _, count = _HEADER.unpack_from(store)
    entries = store[_HEADER.size : -_DIGEST_SIZE]
    return _store(count + 1, entries + _trusted_entry(alias, der, _now_ms()), password)


def trust_store(certificates: list[tuple[str, bytes]], password: str) -> bytes:
    """A JKS store of trusted certificates, given as (alias, DER); aliases lower case and unique."""
    now = _now_ms()
    return _store(len(certificates), b"".join(_trusted_entry(a, der, now) for a, der in certificates), password)


def pkcs12_certificates(store: bytes) -> list[tuple[str, bytes]] | None:
    """The certificates of a PKCS12 store without a password (JDK 18+'s cacerts); None when
    it can't be read that way."""
    from cryptography.hazmat.primitives.serialization import Encoding, pkcs12

    try:
        loaded = pkcs12.load_pkcs12(store, None)
    except (ValueError, TypeError):
        return None
    found: list[tuple[str, bytes]] = []
    for index, item in enumerate(loaded.additional_certs):
        name = item.friendly_name.decode("utf-8", "replace") if item.friendly_name else f"ca-{index}"
        alias = name.lower() if name.isascii() else f"ca-{index}"
        found.append((alias, item.certificate.public_bytes(Encoding.DER)))
    return found or None


def _now_ms() -> int:
    return int(time.time() * 1000)
