"""Download hosts named by an index's responses: an npm packument's ``dist.tarball``, a PEP
503 simple page's file links, a PEP 691 JSON page's ``files[].url``, cargo's ``config.json``
``dl``. Only these fields: a packument also names homepages and repositories, which are not
downloads and must not widen the allowlist."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import urljoin, urlsplit

_HREF = re.compile(rb"""<a\s[^>]*href\s*=\s*["']([^"']+)["']""", re.IGNORECASE)
_MAX_BODY = 64 * 1024 * 1024


def _json_urls(data: Any) -> Iterator[str]:
    if isinstance(data, dict):
        dist = data.get("dist")
        if isinstance(dist, dict) and isinstance(dist.get("tarball"), str):
            yield dist["tarball"]
        files = data.get("files")
        if isinstance(files, list):
            for entry in files:
                if isinstance(entry, dict) and isinstance(entry.get("url"), str):
                    yield entry["url"]
        if isinstance(data.get("dl"), str):
            yield data["dl"]
        versions = data.get("versions")
        if isinstance(versions, dict):
            for version in versions.values():
                yield from _json_urls(version)


def download_urls(content_type: str, body: bytes, base_url: str) -> list[str]:
    if len(body) > _MAX_BODY:
        return []
    urls: list[str] = []
    if "json" in content_type:
        try:
            urls = list(_json_urls(json.loads(body)))
        except (ValueError, UnicodeDecodeError):
            return []
    elif "html" in content_type:
        urls = [urljoin(base_url, m.group(1).decode("utf-8", "replace")) for m in _HREF.finditer(body)]
    return [url for url in urls if urlsplit(url).scheme in ("http", "https")]


def download_hosts(content_type: str, body: bytes, base_url: str) -> dict[str, str]:
    """host -> one URL that names it."""
    found: dict[str, str] = {}
    for url in download_urls(content_type, body, base_url):
        host = urlsplit(url).hostname
        if host and host not in found:
            found[host] = url
    return found
