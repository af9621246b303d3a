"""Download hosts named by an index's responses, found while the body streams through.

Only the fields that name downloads: an npm packument's ``dist.tarball``, a PEP 691 JSON
page's ``files[].url``, cargo's ``config.json`` ``dl``, a PEP 503 page's absolute file links.
A packument also names homepages and repositories, which are not downloads and must not
widen the allowlist. Bodies are scanned chunk by chunk (decompressed as they come), never
parsed whole: a popular package's packument is megabytes, fetched hundreds of times a run.
"""

from __future__ import annotations

import re
import zlib
from typing import Any
from urllib.parse import urlsplit

_NPM_OR_CARGO = re.compile(rb'"(?:tarball|dl)"\s*:\s*"(https?://[^"\\]+)"')
_PEP691 = re.compile(rb'"url"\s*:\s*"(https?://[^"\\]+)"')
_HTML_LINK = re.compile(rb"""<a\s[^>]*?href\s*=\s*["'](https?://[^"']+)["']""", re.IGNORECASE)
#: Kept from the end of one chunk for the next, so a field split between chunks is found.
_OVERLAP = 4096
_MAX_SCANNED = 256 * 1024 * 1024


def _pattern_for(content_type: str) -> re.Pattern[bytes] | None:
    if "vnd.pypi.simple" in content_type and "json" in content_type:
        return _PEP691
    if "json" in content_type:
        return _NPM_OR_CARGO
    if "html" in content_type:
        return _HTML_LINK
    return None


def _decoder(content_encoding: str) -> Any:
    encoding = content_encoding.strip().lower()
    if encoding in ("", "identity"):
        return None
    if encoding in ("gzip", "x-gzip", "deflate"):
        return zlib.decompressobj(47)  # gzip or zlib, told apart by their headers
    if encoding == "br":
        import brotli  # type: ignore[import-untyped]  # mitmproxy's own dependency

        return brotli.Decompressor()
    return False  # an encoding we can't read: nothing is learned from it


class DownloadHostScanner:
    def __init__(self, content_type: str, content_encoding: str) -> None:
        self.pattern = _pattern_for(content_type.lower())
        self.decoder = _decoder(content_encoding) if self.pattern is not None else None
        self.hosts: dict[str, str] = {}
        """host -> one URL that names it."""
        self._tail = b""
        self._scanned = 0
        self._authorities: set[bytes] = set()

    @property
    def active(self) -> bool:
        return self.pattern is not None and self.decoder is not False

    def feed(self, chunk: bytes) -> None:
        if not self.active or self._scanned > _MAX_SCANNED or not chunk:
            return
        if self.decoder is not None:
            try:
                chunk = (
                    self.decoder.decompress(chunk)
                    if hasattr(self.decoder, "decompress")
                    else self.decoder.process(chunk)
                )
            except Exception:  # noqa: BLE001 - a corrupt body teaches nothing; the client will notice
                self.decoder = False
                return
        self._scanned += len(chunk)
        text = self._tail + chunk
        assert self.pattern is not None
        for match in self.pattern.finditer(text):
            # A packument names one host hundreds of times (a tarball per version): the URL is
            # parsed only for an authority (scheme://authority/) not seen before.
            authority = match.group(1).split(b"/", 3)[2]
            if authority in self._authorities:
                continue
            self._authorities.add(authority)
            url = match.group(1).decode("utf-8", "replace")
            host = urlsplit(url).hostname
            if host and host not in self.hosts:
                self.hosts[host] = url
        self._tail = text[-_OVERLAP:]
