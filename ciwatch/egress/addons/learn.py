"""Download hosts learned from the responses of allowed indexes (``registries: auto``): an
npm packument's tarball URLs, a simple index's file links. Scanned as the body streams by
(see ``ciwatch.egress.learn``); each new host is an ``AllowlistLearned`` event."""

from __future__ import annotations

from collections.abc import Callable

from mitmproxy import http

from ciwatch.egress.addons.body import ResponseBody
from ciwatch.egress.learn import DownloadHostScanner
from ciwatch.gate.allowlist import RuntimeAllowlist
from ciwatch.job.scrub import redact_url
from ciwatch.record.events import AllowlistLearned, Event


class Learn:
    def __init__(self, allowlist: RuntimeAllowlist, sink: Callable[[Event], None]) -> None:
        self.allowlist = allowlist
        self.sink = sink

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        if flow.response.status_code != 200 or not self._learns_from(flow):
            return
        headers = flow.response.headers
        scanner = DownloadHostScanner(headers.get("content-type", ""), headers.get("content-encoding", ""))
        if scanner.active:
            ResponseBody.tap(flow).scanner = scanner

    def _learns_from(self, flow: http.HTTPFlow) -> bool:
        allowlist = self.allowlist
        if not allowlist.policy.allow.registries_auto:
            return False
        # Until the registries are known, any index-like page may turn out to be a registry's.
        return not allowlist.registries_settled or allowlist.is_index(flow.request.pretty_host)

    def response(self, flow: http.HTTPFlow) -> None:
        body = ResponseBody.of(flow)
        if body is None or body.scanner is None or not body.scanner.hosts:
            return
        learned_from = flow.request.pretty_host
        for host, url in body.scanner.hosts.items():
            if self.allowlist.offer_learned(learned_from, host, redact_url(url)):
                self.sink(AllowlistLearned(host=host, learned_from=learned_from, url=redact_url(url)))
