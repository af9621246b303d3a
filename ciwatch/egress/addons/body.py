"""Bodies, read once as they stream through: the proxy's memory stays bounded whatever
their size.

mitmproxy takes one stream callable per response, and two addons read the body: the
recorder (size, SHA-256, SHA-512) and the learner (download hosts an index names). They share
this one pass over each chunk, and the body is never held whole in memory.

A request's body streams too unless it is small (its size known and under
``HELD_REQUEST_LIMIT``) or could be DNS-over-HTTPS (by its content type or URL), whose names
are judged before anything goes upstream. A streamed request reaches the server before
mitmproxy's ``request`` hook, so the enforcer judges it on its headers (``streams_request``).
"""

from __future__ import annotations

import hashlib

from mitmproxy import http

from ciwatch.egress.learn import DownloadHostScanner

_BODY = "ciwatch_body"
"""flow.metadata key: the flow's ``ResponseBody``."""
_REQUEST_BODY = "ciwatch_request_body"
"""flow.metadata key: the flow's ``RequestBody``, when its request streamed."""

HELD_REQUEST_LIMIT = 64 * 1024
"""A request body up to this size (and known to be) is held whole, as mitmproxy does by
default: small bodies are the common case and nothing changes for them."""
_DOH_TYPES = ("dns-message", "dns-json")
"""Content types of a DNS-over-HTTPS body: held whole, its names are judged before it leaves."""
_DOH_QUERY_KEYS = ("dns", "name")
"""URL parameters of a DNS-over-HTTPS query (RFC 8484's ``dns=``, the JSON API's ``name=``)."""
_BODILESS_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "DELETE", "TRACE", "CONNECT"})


def streams_request(request: http.Request) -> bool:
    """Whether this request's body passes through in chunks rather than being held whole:
    it is larger than ``HELD_REQUEST_LIMIT`` or of unknown length (chunked; HTTP/2 and 3
    without a Content-Length), and it could not be DNS-over-HTTPS (by its content type or its
    URL), whose names are judged before anything leaves."""
    # The body's size first: it settles the common case (a GET, no body) with two header
    # look-ups, where the DoH checks would parse the URL's query for every request.
    if not _large_or_unknown_body(request):
        return False
    content_type = request.headers.get("content-type", "").lower()
    if any(kind in content_type for kind in _DOH_TYPES):
        return False
    # A DoH query in the URL: the names are judged before the request leaves.
    return "?" not in request.path or not any(key in request.query for key in _DOH_QUERY_KEYS)


def _large_or_unknown_body(request: http.Request) -> bool:
    headers = request.headers
    length = headers.get("content-length")
    if length is not None:
        return not length.strip().isdigit() or int(length) > HELD_REQUEST_LIMIT
    if "transfer-encoding" in headers:
        return True
    # HTTP/1 without either header has no body; HTTP/2 and 3 say so only with the data. A GET
    # with a body is rare enough to be held (and a DoH GET carries its query in the URL).
    return not request.http_version.startswith("HTTP/1") and request.method.upper() not in _BODILESS_METHODS


class RequestBody:
    """A streamed request's size, counted as its chunks go upstream (the record has no digest
    of what was sent: hashing it would only cost the proxy's CPU)."""

    __slots__ = ("size",)

    def __init__(self) -> None:
        self.size = 0

    def __call__(self, chunk: bytes) -> bytes:
        self.size += len(chunk)
        return chunk

    @staticmethod
    def tap(flow: http.HTTPFlow) -> RequestBody:
        """Stream the flow's request body through a new reader (in ``requestheaders``)."""
        body = flow.metadata[_REQUEST_BODY] = RequestBody()
        flow.request.stream = body
        return body

    @staticmethod
    def of(flow: http.HTTPFlow) -> RequestBody | None:
        """The flow's request body reader, if its request streamed."""
        body: RequestBody | None = flow.metadata.get(_REQUEST_BODY)
        return body


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
