"""What mitmproxy is given when the proxy starts (``EgressProxy``): the run's CA in memory,
the listener mode of ``--net env``, and its import, done on a worker thread."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ciwatch.egress.trust import RunAuthority
    from ciwatch.egress.upstream import JobProxy


def use_in_memory_authority(authority: RunAuthority | None, confdir: Path | None) -> None:
    """Hand mitmproxy the run's CA in memory: its own loader reads (or creates) a key file in
    the confdir, and a key file is what a killed run would leave behind."""
    from cryptography import x509
    from mitmproxy import certs

    assert authority is not None and confdir is not None
    key = authority.key
    cert = certs.Cert(x509.load_pem_x509_certificate(authority.cert_pem))
    # Diffie-Hellman parameters are public; mitmproxy wants them as a file.
    dhparams = certs.CertStore.load_dhparam(confdir / "dhparam.pem")
    if hasattr(certs, "dummy_crl"):  # mitmproxy 12 serves a CRL signed by the CA
        store = certs.CertStore(key, cert, None, certs.dummy_crl(key, cert._cert), dhparams)
    else:
        store = certs.CertStore(key, cert, None, dhparams)

    def from_store(cls: type, path: object, basename: object, key_size: object, passphrase: object = None) -> object:
        return store

    certs.CertStore.from_store = classmethod(from_store)


def regular_mode(listener: tuple[str, int], job: JobProxy | None) -> str:
    """The listener ``--net env`` points the build's proxy variables at: a regular proxy, or,
    when the job has a proxy of its own (a corporate network that lets only it out), one that
    forwards everything through that proxy (mitmproxy's upstream mode), so the build keeps
    working as it did without ciwatch. Requests are still judged by their own hosts."""
    host, port = listener
    if job is None:
        return f"regular@{host}:{port}"
    return f"upstream:{job.upstream.scheme}://{job.upstream.hostport}@{host}:{port}"


def load_mitmproxy() -> None:
    """Import mitmproxy and ciwatch's addons (the slow part of the proxy's start)."""
    import mitmproxy.addons
    import mitmproxy.master  # noqa: F401

    import ciwatch.egress.addons
    import ciwatch.egress.hookchain  # noqa: F401
