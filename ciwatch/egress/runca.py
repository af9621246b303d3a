"""The run's CA certificate, written in DER by hand.

It must exist before the build is released (its clients are told to trust it), and
``cryptography.x509``'s import, which building it with ``CertificateBuilder`` needs, costs
more than the rest of the CA (tens of milliseconds on every ``ciwatch run``). A self-signed
certificate of an EC P-256 key is a few fixed structures: these are they (X.509 v3, RFC 5280),
encoded in DER as ``CertificateBuilder`` does. mitmproxy, which imports ``cryptography.x509``
anyway, loads it once the build runs; tests/test_startup_imports.py checks it reads back as
the certificate ``CertificateBuilder`` would make.
"""

from __future__ import annotations

import datetime
import hashlib
import secrets

_SEQUENCE, _SET = 0x30, 0x31
_INTEGER, _BIT_STRING, _OCTET_STRING, _OID, _UTF8, _UTC_TIME, _BOOLEAN = 0x02, 0x03, 0x04, 0x06, 0x0C, 0x17, 0x01

_ECDSA_WITH_SHA256 = "1.2.840.10045.4.3.2"
_EC_PUBLIC_KEY, _PRIME256V1 = "1.2.840.10045.2.1", "1.2.840.10045.3.1.7"
_ORGANIZATION, _COMMON_NAME = "2.5.4.10", "2.5.4.3"
_BASIC_CONSTRAINTS, _KEY_USAGE, _SUBJECT_KEY_ID = "2.5.29.19", "2.5.29.15", "2.5.29.14"
#: keyCertSign (bit 5) and cRLSign (bit 6): one byte, its last bit unused.
_CA_KEY_USAGE = bytes([1, 0b0000_0110])


def _tlv(tag: int, content: bytes) -> bytes:
    length = len(content)
    if length < 0x80:
        return bytes([tag, length]) + content
    size = (length.bit_length() + 7) // 8
    return bytes([tag, 0x80 | size]) + length.to_bytes(size, "big") + content


def _oid(dotted: str) -> bytes:
    first, second, *rest = (int(part) for part in dotted.split("."))
    body = bytearray([first * 40 + second])
    for number in rest:
        chunk = [number & 0x7F]
        while number := number >> 7:
            chunk.append(0x80 | (number & 0x7F))
        body += bytes(reversed(chunk))
    return _tlv(_OID, bytes(body))


def _positive_integer(value: int) -> bytes:
    return _tlv(_INTEGER, value.to_bytes(value.bit_length() // 8 + 1, "big"))  # a leading 0 bit: positive


def _name(organization: str, common_name: str) -> bytes:
    def attribute(oid: str, value: str) -> bytes:
        return _tlv(_SET, _tlv(_SEQUENCE, _oid(oid) + _tlv(_UTF8, value.encode())))

    return _tlv(_SEQUENCE, attribute(_ORGANIZATION, organization) + attribute(_COMMON_NAME, common_name))


def _time(moment: datetime.datetime) -> bytes:
    return _tlv(_UTC_TIME, moment.astimezone(datetime.UTC).strftime("%y%m%d%H%M%SZ").encode())


def _extension(oid: str, value: bytes, critical: bool) -> bytes:
    flag = _tlv(_BOOLEAN, b"\xff") if critical else b""
    return _tlv(_SEQUENCE, _oid(oid) + flag + _tlv(_OCTET_STRING, value))


def p256_public_key(x: int, y: int) -> tuple[bytes, bytes]:
    """The SubjectPublicKeyInfo (DER) of the P-256 public key (``x``, ``y``), and its
    uncompressed point (RFC 5480): what the key's ``public_bytes`` gives, without the import of
    cryptography's ``serialization`` package that it makes."""
    point = b"\x04" + x.to_bytes(32, "big") + y.to_bytes(32, "big")
    algorithm = _tlv(_SEQUENCE, _oid(_EC_PUBLIC_KEY) + _oid(_PRIME256V1))
    return _tlv(_SEQUENCE, algorithm + _tlv(_BIT_STRING, b"\x00" + point)), point


def ca_certificate_tbs(
    spki_der: bytes, public_point: bytes, organization: str, common_name: str, now: datetime.datetime
) -> bytes:
    """The to-be-signed part of a self-signed CA certificate for the key whose
    SubjectPublicKeyInfo is ``spki_der`` (its uncompressed point ``public_point``), valid from a
    day before ``now`` to two days after."""
    algorithm = _tlv(_SEQUENCE, _oid(_ECDSA_WITH_SHA256))
    name = _name(organization, common_name)
    validity = _tlv(_SEQUENCE, _time(now - datetime.timedelta(days=1)) + _time(now + datetime.timedelta(days=2)))
    key_id = hashlib.sha1(public_point, usedforsecurity=False).digest()  # RFC 5280's method 1, as cryptography's
    extensions = (
        _extension(_BASIC_CONSTRAINTS, _tlv(_SEQUENCE, _tlv(_BOOLEAN, b"\xff")), critical=True)
        + _extension(_KEY_USAGE, _tlv(_BIT_STRING, _CA_KEY_USAGE), critical=True)
        + _extension(_SUBJECT_KEY_ID, _tlv(_OCTET_STRING, key_id), critical=False)
    )
    return _tlv(
        _SEQUENCE,
        _tlv(0xA0, _tlv(_INTEGER, b"\x02"))  # version: v3
        + _positive_integer(secrets.randbits(159))  # as x509.random_serial_number(): under 20 bytes
        + algorithm
        + name
        + validity
        + name
        + spki_der
        + _tlv(0xA3, _tlv(_SEQUENCE, extensions)),
    )


def signed_certificate(tbs: bytes, signature: bytes) -> bytes:
    """The certificate: ``tbs`` with its ECDSA-with-SHA256 ``signature`` (DER's Ecdsa-Sig-Value)."""
    algorithm = _tlv(_SEQUENCE, _oid(_ECDSA_WITH_SHA256))
    return _tlv(_SEQUENCE, tbs + algorithm + _tlv(_BIT_STRING, b"\x00" + signature))
