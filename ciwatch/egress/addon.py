"""ciwatch's mitmproxy addon: one ``egress-flow`` event per request (or per connection where
it isn't HTTP), attributed to the process that opened the connection."""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ciwatch.egress.learn import DownloadHostScanner
from ciwatch.egress.origdst import OriginalDestinations
from ciwatch.gate.allowlist import RuntimeAllowlist
from ciwatch.gate.enforcer import LiveEnforcer
from ciwatch.job.scrub import redact_url
from ciwatch.record.events import AllowlistLearned, EgressFlow, Event, RefusedWhat, TlsHandling

log = logging.getLogger(__name__)

#: Who opened the connection from this peer address: the tracer's registration in
#: redirect mode, a /proc scan in env and sandbox modes.
PidLookup = Callable[[tuple[str, int]], int | None]


@dataclass
class _BodyDigest:
    """Hashes a streamed body chunk by chunk, so large downloads aren't held in memory."""

    digest: Any = field(default_factory=hashlib.sha256)
    digest512: Any = field(default_factory=hashlib.sha512)
    size: int = 0
    scanner: DownloadHostScanner | None = None
    """Set for an index's pages: the download hosts they name, found as they stream by."""

    def __call__(self, chunk: bytes) -> bytes:
        self.digest.update(chunk)
        self.digest512.update(chunk)
        self.size += len(chunk)
        if self.scanner is not None:
            self.scanner.feed(chunk)
        return chunk


class FlowRecorder:
    def __init__(
        self,
        sink: Callable[[Event], None],
        destinations: OriginalDestinations,
        pid_lookup: PidLookup,
        allowlist: RuntimeAllowlist | None = None,
        enforcer: LiveEnforcer | None = None,
    ):
        self.sink = sink
        self.destinations = destinations
        self.pid_lookup = pid_lookup
        self.allowlist = allowlist
        """Learns download hosts from the responses of allowed indexes."""
        self.enforcer = enforcer
        self.passthrough_hosts: set[str] = set()
        """Hosts whose client rejected the run's CA: later connections are passed through."""
        self._lock = threading.Lock()

    # -- helpers -------------------------------------------------------------------------

    def _pid(self, client: Any) -> int | None:
        peer: tuple[str, int] | None = (str(client.peername[0]), int(client.peername[1])) if client.peername else None
        if peer is None:
            return None
        known = self.destinations.by_peer(peer)
        if known is not None:
            return known.pid
        return self.pid_lookup(peer)

    @staticmethod
    def _server(flow: Any) -> tuple[str, int]:
        address = flow.server_conn.address or ("", 0)
        peer = flow.server_conn.peername or address
        return str(peer[0]), int(peer[1])

    @staticmethod
    def _tls(flow: Any) -> TlsHandling:
        return TlsHandling.INTERCEPTED if flow.client_conn.tls_established else TlsHandling.NONE

    # -- HTTP ----------------------------------------------------------------------------

    def request(self, flow: Any) -> None:
        """Block mode: refuse before anything is sent upstream (the connection strategy is lazy)."""
        if self.enforcer is None or flow.response is not None:
            return
        if not self.enforcer.request_allowed(flow.request.pretty_host, self._pid(flow.client_conn)):
            from mitmproxy import http

            flow.metadata["ciwatch_refused"] = True
            flow.response = http.Response.make(
                403,
                f"ciwatch: {flow.request.pretty_host} is not in the policy's allowlist\n".encode(),
                {"content-type": "text/plain"},
            )

    def responseheaders(self, flow: Any) -> None:
        digest = _BodyDigest()
        if flow.response.status_code == 200 and self._learns_from(flow):
            headers = flow.response.headers
            scanner = DownloadHostScanner(headers.get("content-type", ""), headers.get("content-encoding", ""))
            digest.scanner = scanner if scanner.active else None
        flow.metadata["ciwatch_digest"] = digest
        flow.response.stream = digest

    def _learns_from(self, flow: Any) -> bool:
        allowlist = self.allowlist
        if allowlist is None or not allowlist.policy.allow.registries_auto:
            return False
        # Until the registries are known, any index-like page may turn out to be a registry's.
        return not allowlist.registries_settled or allowlist.is_index(flow.request.pretty_host)

    def response(self, flow: Any) -> None:
        self._emit_http(flow, error=None)
        digest: _BodyDigest | None = flow.metadata.get("ciwatch_digest")
        if digest is not None and digest.scanner is not None and digest.scanner.hosts:
            self._learn(flow.request.pretty_host, digest.scanner.hosts)

    def _learn(self, learned_from: str, hosts: dict[str, str]) -> None:
        assert self.allowlist is not None
        for host, url in hosts.items():
            if self.allowlist.offer_learned(learned_from, host, redact_url(url)):
                self.sink(AllowlistLearned(host=host, learned_from=learned_from, url=redact_url(url)))

    def error(self, flow: Any) -> None:
        if flow.metadata.get("ciwatch_recorded"):
            return
        self._emit_http(flow, error=str(flow.error.msg) if flow.error else "error")

    def _emit_http(self, flow: Any, error: str | None) -> None:
        flow.metadata["ciwatch_recorded"] = True
        request, response = flow.request, flow.response
        digest: _BodyDigest | None = flow.metadata.get("ciwatch_digest")
        sha512 = None
        if digest is not None:
            body_size, sha256, sha512 = digest.size, digest.digest.hexdigest(), digest.digest512.hexdigest()
        elif response is not None and response.raw_content is not None:
            raw = response.raw_content
            body_size, sha256, sha512 = len(raw), hashlib.sha256(raw).hexdigest(), hashlib.sha512(raw).hexdigest()
        else:
            body_size, sha256 = 0, None
        server_address, server_port = self._server(flow)
        self.sink(
            EgressFlow(
                pid=self._pid(flow.client_conn),
                host=request.pretty_host,
                sni=flow.client_conn.sni,
                server_address=server_address,
                server_port=server_port,
                scheme=request.scheme,
                method=request.method,
                url=redact_url(request.pretty_url),
                status=response.status_code if response is not None else None,
                bytes_out=len(request.raw_content or b""),
                bytes_in=body_size,
                sha256=sha256,
                sha512=sha512,
                content_type=response.headers.get("content-type") if response is not None else None,
                tls=self._tls(flow),
                error=error,
                refused=bool(flow.metadata.get("ciwatch_refused")),
            )
        )

    # -- TLS -----------------------------------------------------------------------------

    def tls_clienthello(self, data: Any) -> None:
        sni = data.client_hello.sni
        with self._lock:
            passthrough = sni is not None and sni in self.passthrough_hosts
        if not passthrough:
            return
        blocking = self.allowlist is not None and self.enforcer is not None and self.enforcer.blocking
        if blocking and self.allowlist is not None and not self.allowlist.allows(sni):
            return  # intercept after all: the request is refused by the policy
        data.ignore_connection = True
        self._emit_passthrough(data.context, sni, error=None)

    def tls_failed_client(self, data: Any) -> None:
        """The client refused our certificate: it pins, or carries its own roots. Don't
        break it again: its next connections to this host pass through, recorded by SNI."""
        sni = data.context.client.sni
        if not sni:
            return
        with self._lock:
            self.passthrough_hosts.add(sni)
        error = f"the client rejected the run's CA ({data.conn.error}); later connections pass through"
        self._emit_passthrough(data.context, sni, error)

    def _emit_passthrough(self, context: Any, sni: str, error: str | None) -> None:
        """A TLS connection known only by its SNI: the bytes were not (or not yet) read."""
        server = context.server.address or ("", 0)
        self.sink(
            EgressFlow(
                pid=self._pid(context.client),
                host=sni,
                sni=sni,
                server_address=str(server[0]),
                server_port=int(server[1]),
                scheme="tls",
                method=None,
                url=None,
                status=None,
                bytes_out=0,
                bytes_in=0,
                sha256=None,
                content_type=None,
                tls=TlsHandling.PASSTHROUGH,
                error=error,
            )
        )

    # -- other TCP -----------------------------------------------------------------------

    def tcp_start(self, flow: Any) -> None:
        if self.enforcer is None:
            return
        host = flow.client_conn.sni or self._server(flow)[0]
        if not self.enforcer.request_allowed(host, self._pid(flow.client_conn), what=RefusedWhat.CONNECT):
            flow.kill()

    def tcp_end(self, flow: Any) -> None:
        self._emit_tcp(flow, None)

    def tcp_error(self, flow: Any) -> None:
        self._emit_tcp(flow, str(flow.error.msg) if flow.error else "error")

    def _emit_tcp(self, flow: Any, error: str | None) -> None:
        sent = sum(len(m.content) for m in flow.messages if m.from_client)
        received = sum(len(m.content) for m in flow.messages if not m.from_client)
        server_address, server_port = self._server(flow)
        tls = self._tls(flow)
        self.sink(
            EgressFlow(
                pid=self._pid(flow.client_conn),
                host=flow.client_conn.sni or server_address,
                sni=flow.client_conn.sni,
                server_address=server_address,
                server_port=server_port,
                scheme="tls" if tls is TlsHandling.INTERCEPTED else "tcp",
                method=None,
                url=None,
                status=None,
                bytes_out=sent,
                bytes_in=received,
                sha256=None,
                content_type=None,
                tls=tls,
                error=error,
            )
        )
