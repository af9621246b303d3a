"""A response body, read once as it streams through.

mitmproxy takes one stream callable per response, and two addons read the body: the
recorder (size, SHA-256, SHA-512) and the learner (download hosts an index names). They share
this one pass over each chunk, and the body is never held whole in memory.
"""

from __future__ import annotations

import hashlib

from mitmproxy import http

from ciwatch.egress.learn import DownloadHostScanner

_BODY = "ciwatch_body"
"""flow.metadata key: the flow's ``ResponseBody``."""


class ResponseBody:
    __slots__ = ("scanner", "sha256", "sha512", "size")

    def __init__(self) -> None:
        self.sha256 = hashlib.sha256()
        self.sha512 = hashlib.sha512()
        self.size = 0
        self.scanner: DownloadHostScanner | None = None
        """Set by the learner for an index's pages: the download hosts found as they stream by."""

    def __call__(self, chunk: bytes) -> bytes:
        self.sha256.update(chunk)
        self.sha512.update(chunk)
        self.size += len(chunk)
        if self.scanner is not None:
            self.scanner.feed(chunk)
        return chunk

    @staticmethod
    def tap(flow: http.HTTPFlow) -> ResponseBody:
        """The flow's body reader, put in place by whichever addon asks first (in
        ``responseheaders``, before the body comes)."""
        body: ResponseBody | None = flow.metadata.get(_BODY)
        if body is None:
            body = flow.metadata[_BODY] = ResponseBody()
            flow.response.stream = body
        return body

    @staticmethod
    def of(flow: http.HTTPFlow) -> ResponseBody | None:
        """The flow's body reader, if its response headers came through the proxy."""
        body: ResponseBody | None = flow.metadata.get(_BODY)
        return body
