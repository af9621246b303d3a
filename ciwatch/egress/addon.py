"""ciwatch's mitmproxy addon: one ``egress-flow`` event per request (or per connection where
it isn't HTTP), attributed to the process that opened the connection."""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ciwatch.egress.origdst import OriginalDestinations
from ciwatch.job.scrub import redact_url
from ciwatch.record.events import EgressFlow, Event, TlsHandling

log = logging.getLogger(__name__)

#: Who opened the connection from this peer address: the tracer's registration in
#: redirect mode, a /proc scan in env and sandbox modes.
PidLookup = Callable[[tuple[str, int]], int | None]


@dataclass
class _BodyDigest:
    """Hashes a streamed body chunk by chunk, so large downloads aren't held in memory."""

    digest: Any = field(default_factory=hashlib.sha256)
    size: int = 0

    def __call__(self, chunk: bytes) -> bytes:
        self.digest.update(chunk)
        self.size += len(chunk)
        return chunk


class FlowRecorder:
    def __init__(self, sink: Callable[[Event], None], destinations: OriginalDestinations, pid_lookup: PidLookup):
        self.sink = sink
        self.destinations = destinations
        self.pid_lookup = pid_lookup
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

    def responseheaders(self, flow: Any) -> None:
        digest = _BodyDigest()
        flow.metadata["ciwatch_digest"] = digest
        flow.response.stream = digest

    def response(self, flow: Any) -> None:
        self._emit_http(flow, error=None)

    def error(self, flow: Any) -> None:
        if flow.metadata.get("ciwatch_recorded"):
            return
        self._emit_http(flow, error=str(flow.error.msg) if flow.error else "error")

    def _emit_http(self, flow: Any, error: str | None) -> None:
        flow.metadata["ciwatch_recorded"] = True
        request, response = flow.request, flow.response
        digest: _BodyDigest | None = flow.metadata.get("ciwatch_digest")
        if digest is not None:
            body_size, sha256 = digest.size, digest.digest.hexdigest()
        elif response is not None and response.raw_content is not None:
            body_size, sha256 = len(response.raw_content), hashlib.sha256(response.raw_content).hexdigest()
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
        data.ignore_connection = True
        server = data.context.server.address or ("", 0)
        self.sink(
            EgressFlow(
                pid=self._pid(data.context.client),
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
            )
        )

    def tls_failed_client(self, data: Any) -> None:
        """The client refused our certificate: it pins, or carries its own roots. Don't
        break it again: its next connections to this host pass through, recorded by SNI."""
        sni = data.context.client.sni
        if not sni:
            return
        with self._lock:
            self.passthrough_hosts.add(sni)
        server = data.context.server.address or ("", 0)
        self.sink(
            EgressFlow(
                pid=self._pid(data.context.client),
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
                error=f"the client rejected the run's CA ({data.conn.error}); later connections pass through",
            )
        )

    # -- other TCP -----------------------------------------------------------------------

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
