"""One ``egress-flow`` event per request (or per connection where it isn't HTTP), attributed
to the process that opened the connection."""

from __future__ import annotations

import hashlib
from collections.abc import Callable

from mitmproxy import http, tcp, tls
from mitmproxy.proxy.context import Context

from ciwatch.egress.addons.body import RequestBody, ResponseBody, streams_request
from ciwatch.egress.addons.claims import connected_to
from ciwatch.egress.addons.dnswatch import DNS_STREAM
from ciwatch.egress.addons.enforce import REFUSED
from ciwatch.egress.addons.peers import ClientPids, server_of
from ciwatch.job.scrub import redact_url
from ciwatch.record.events import EgressFlow, Event
from ciwatch.record.vocabulary import TlsHandling

_RECORDED = "ciwatch_recorded"
"""flow.metadata key: the flow has its event (an error after the response adds none)."""
_TCP_BYTES = "ciwatch_tcp_bytes"
"""flow.metadata key: the TCP flow's ``_TcpBytes``."""


class _TcpBytes:
    __slots__ = ("last", "received", "sent")

    def __init__(self) -> None:
        self.sent = 0
        self.received = 0
        self.last: tcp.TCPMessage | None = None
        """The message counted last (still in the flow's list)."""


def _error(flow: http.HTTPFlow | tcp.TCPFlow) -> str:
    return str(flow.error.msg) if flow.error else "error"


def _bytes_out(flow: http.HTTPFlow) -> int:
    streamed = RequestBody.of(flow)
    if streamed is not None and flow.request.raw_content is None:
        return streamed.size
    return len(flow.request.raw_content or b"")


def _tls(flow: http.HTTPFlow | tcp.TCPFlow) -> TlsHandling:
    return TlsHandling.INTERCEPTED if flow.client_conn.tls_established else TlsHandling.NONE


class Record:
    def __init__(self, sink: Callable[[Event], None], pids: ClientPids) -> None:
        self.sink = sink
        self.pids = pids

    # -- HTTP ----------------------------------------------------------------------------

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        # Counted as it streams: large uploads are not held in memory. The last addon to see
        # the headers: the enforcer has judged a request that streams (and answered or cut
        # off a refused one, which must not stream).
        if flow.response is None and flow.error is None and streams_request(flow.request):
            RequestBody.tap(flow)

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        # Hashed as it streams: large downloads are not held in memory.
        ResponseBody.tap(flow)

    def response(self, flow: http.HTTPFlow) -> None:
        self._emit_http(flow, error=None)

    def error(self, flow: http.HTTPFlow) -> None:
        if not flow.metadata.get(_RECORDED):
            self._emit_http(flow, error=_error(flow))

    # A CONNECT to a forward proxy (the build's own, or the job's): its target is the host.
    def http_connected(self, flow: http.HTTPFlow) -> None:
        self._emit_http(flow, error=None)

    def http_connect_error(self, flow: http.HTTPFlow) -> None:
        self._emit_http(flow, error=None)  # its status says why (403: refused by the enforcer)

    def _emit_http(self, flow: http.HTTPFlow, error: str | None) -> None:
        flow.metadata[_RECORDED] = True
        request, response = flow.request, flow.response
        body = ResponseBody.of(flow)
        sha512 = None
        if body is not None:
            body_size, sha256, sha512 = body.size, body.sha256.hexdigest(), body.sha512.hexdigest()
        elif response is not None and response.raw_content is not None:
            raw = response.raw_content
            body_size, sha256, sha512 = len(raw), hashlib.sha256(raw).hexdigest(), hashlib.sha512(raw).hexdigest()
        else:
            body_size, sha256 = 0, None
        server_address, server_port = server_of(flow)
        self.sink(
            EgressFlow(
                pid=self.pids.of_flow(flow),
                host=request.pretty_host,
                sni=flow.client_conn.sni,
                server_address=server_address,
                server_port=server_port,
                scheme=request.scheme or "http",
                method=request.method,
                url=redact_url(request.pretty_url),
                status=response.status_code if response is not None else None,
                bytes_out=_bytes_out(flow),
                bytes_in=body_size,
                sha256=sha256,
                sha512=sha512,
                content_type=response.headers.get("content-type") if response is not None else None,
                tls=_tls(flow),
                error=error,
                refused=bool(flow.metadata.get(REFUSED)),
                connected_to=connected_to(flow.client_conn, flow.server_conn),
            )
        )

    # -- TLS passed through --------------------------------------------------------------

    def tls_clienthello(self, data: tls.ClientHelloData) -> None:
        # Runs after the passthrough addon, which decides whether to read the connection.
        sni = data.client_hello.sni
        if data.ignore_connection and sni:
            self._emit_passthrough(data.context, sni, error=None)

    def tls_failed_client(self, data: tls.TlsData) -> None:
        sni = data.context.client.sni
        if sni:
            error = f"the client rejected the run's CA ({data.conn.error}); later connections pass through"
            self._emit_passthrough(data.context, sni, error)

    def _emit_passthrough(self, context: Context, sni: str, error: str | None) -> None:
        """A TLS connection known only by its SNI: the bytes were not (or not yet) read."""
        server = context.server.address or ("", 0)
        self.sink(
            EgressFlow(
                pid=self.pids.of_client(context.client),
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
                connected_to=connected_to(context.client, context.server),
            )
        )

    # -- other TCP -----------------------------------------------------------------------

    def tcp_message(self, flow: tcp.TCPFlow) -> None:
        # mitmproxy keeps every message of a TCP flow: each is counted here (after DnsWatch,
        # which may hold bytes back), and those before it dropped, so a long stream costs no
        # memory. The last stays: it is the one mitmproxy is about to send.
        message = flow.messages[-1]
        counts: _TcpBytes = flow.metadata.setdefault(_TCP_BYTES, _TcpBytes())
        if message.from_client:
            counts.sent += len(message.content)
        else:
            counts.received += len(message.content)
        counts.last = message
        del flow.messages[:-1]

    def websocket_message(self, flow: http.HTTPFlow) -> None:
        # Kept by mitmproxy for the flow's life, read by no addon of ciwatch's.
        if flow.websocket is not None:
            flow.websocket.messages.clear()

    def tcp_end(self, flow: tcp.TCPFlow) -> None:
        self._emit_tcp(flow, None)

    def tcp_error(self, flow: tcp.TCPFlow) -> None:
        self._emit_tcp(flow, _error(flow))

    def _emit_tcp(self, flow: tcp.TCPFlow, error: str | None) -> None:
        # What ``tcp_message`` counted, and any message it did not see (still in the list).
        counts: _TcpBytes = flow.metadata.get(_TCP_BYTES) or _TcpBytes()
        unseen = [m for m in flow.messages if m is not counts.last]
        sent = counts.sent + sum(len(m.content) for m in unseen if m.from_client)
        received = counts.received + sum(len(m.content) for m in unseen if not m.from_client)
        server_address, server_port = server_of(flow)
        tls_handling = _tls(flow)
        scheme = "tls" if tls_handling is TlsHandling.INTERCEPTED else "tcp"
        if flow.metadata.get(DNS_STREAM):
            scheme = "dns"  # its names are recorded one by one (DnsWatch)
        self.sink(
            EgressFlow(
                pid=self.pids.of_flow(flow),
                host=flow.client_conn.sni or server_address,
                sni=flow.client_conn.sni,
                server_address=server_address,
                server_port=server_port,
                scheme=scheme,
                method=None,
                url=None,
                status=None,
                bytes_out=sent,
                bytes_in=received,
                sha256=None,
                content_type=None,
                tls=tls_handling,
                error=error,
                refused=flow.server_conn.error == "refused by ciwatch (block mode)",
                connected_to=connected_to(flow.client_conn, flow.server_conn),
            )
        )
