"""Forward-proxy HTTP at a transparent listener, and the job's proxy as ciwatch's upstream.

A build that sets its own ``http_proxy``/``https_proxy`` (or npm's, pip's, git's proxy
settings) connects to that proxy, and the tracer (or the sandbox's DNAT) sends the connection
to ciwatch's transparent listener; the client then speaks forward-proxy HTTP: ``CONNECT
host:port`` or an absolute-form request. mitmproxy answers a CONNECT at a transparent listener
with 400, which would break such builds even in audit mode. This addon sees the first bytes
before mitmproxy picks a layer and, for such a client, switches the connection to mitmproxy's
upstream-proxy handling pointed at the address the client connected to: the CONNECT is judged
(by the enforcer's ``http_connect``), recorded, then tunnelled through the build's proxy, or
refused with 403. The contact stays the build's proxy (``connected_to``), with the CONNECT or
absolute-form target recorded as the flow's host.

A proxy the job configured before ciwatch started (``JobProxy``) is where ciwatch's own
connections go: the build's direct connections (clients that ignore proxy variables) are
tunnelled through it with a CONNECT, except ``NO_PROXY`` destinations. Its credentials go to
it alone, never into the record, never to a proxy the build chose.

Added before mitmproxy's own addons: its ``next_layer`` decides as soon as it can and never
overrides a decision made before it.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from mitmproxy import connection, http
from mitmproxy.proxy import layer
from mitmproxy.proxy.layers import HttpLayer, modes
from mitmproxy.proxy.layers.http import HTTPMode
from mitmproxy.proxy.layers.http._upstream_proxy import HttpUpstreamProxy
from mitmproxy.proxy.mode_specs import ProxyMode

from ciwatch.dataclass import dataclass, field
from ciwatch.egress.addons.peers import FORWARD_PROXY_CLIENTS, ClientPids
from ciwatch.egress.upstream import JobProxy
from ciwatch.gate.allowlist import FORWARD_PROXY_SCHEME, RuntimeAllowlist, normalise_host
from ciwatch.job.scrub import redact_url
from ciwatch.record.events import EgressFlow, Event
from ciwatch.record.vocabulary import TlsHandling

# The first line of a forward-proxy request: CONNECT authority, or a method and an absolute
# URL. Case-sensitive methods (RFC 9110); a transparent HTTP request's target starts with "/".
_FORWARD_REQUEST = re.compile(rb"^(CONNECT) ([^\s/]+)(?: |\r?\n|$)|^([A-Z]{1,20}) ([a-zA-Z][a-zA-Z0-9+.-]*://\S+)")


def forward_request_target(data: bytes) -> tuple[str, str] | None:
    """``(method, target)`` when ``data`` starts like a request to a forward proxy."""
    found = _FORWARD_REQUEST.match(data[:4096])
    if found is None:
        return None
    method, target = (found.group(1), found.group(2)) if found.group(1) else (found.group(3), found.group(4))
    return method.decode("ascii"), target.decode("ascii", "replace")


@dataclass
class UpstreamRoute:
    """The job's proxy as the proxy's thread uses it: its addresses as ciwatch resolved them."""

    job: JobProxy
    addresses: dict[str, tuple[str, int]] = field(default_factory=dict)
    """Resolved address -> (name, port) of each proxy the job's variables name."""

    def authorization(self, address: tuple[str, int]) -> str | None:
        host, port = normalise_host(str(address[0])), int(address[1])
        named = self.addresses.get(host)
        if named is not None and named[1] == port:
            host = named[0]
        return self.job.authorization_for(host, port)

    def is_job_proxy(self, address: tuple[str, int]) -> bool:
        host = normalise_host(str(address[0]))
        named = self.addresses.get(host, (host, 0))
        return any((proxy.host, proxy.port) in {(host, address[1]), named} for proxy in self.job.configured)


class Forward:
    def __init__(
        self,
        sink: Callable[[Event], None],
        pids: ClientPids,
        allowlist: RuntimeAllowlist | None,
        route: UpstreamRoute | None,
    ) -> None:
        self.sink = sink
        self.pids = pids
        self.allowlist = allowlist
        self.route = route
        self.client_authorization: dict[str, str] = {}
        """A forward-proxy client's own Proxy-Authorization, for its own proxy only."""

    def next_layer(self, nextlayer: layer.NextLayer) -> None:
        context = nextlayer.context
        if nextlayer.layer is not None or len(context.layers) != 1:
            return
        if not isinstance(context.layers[0], modes.TransparentProxy) or context.server.address is None:
            return
        data = nextlayer.data_client()
        request = forward_request_target(data) if data else None
        destination = (str(context.server.address[0]), int(context.server.address[1]))
        if request is not None:
            self._as_forward_proxy(nextlayer, destination, request)
        elif data and self.route is not None and self._through_job_proxy(destination):
            upstream = self.route.job.upstream
            context.server.via = (upstream.scheme, (upstream.host, upstream.port))
            nextlayer.layer = HttpUpstreamProxy.make(context, True)[0]

    def _as_forward_proxy(self, nextlayer: layer.NextLayer, proxy: tuple[str, int], request: tuple[str, str]) -> None:
        context = nextlayer.context
        client = context.client
        FORWARD_PROXY_CLIENTS[client.id] = proxy
        host = f"[{proxy[0]}]" if ":" in proxy[0] else proxy[0]
        # mitmproxy's upstream mode reads the upstream from the client's proxy mode; the
        # connection's own address is kept in FORWARD_PROXY_CLIENTS (``connected_to``).
        client.proxy_mode = ProxyMode.parse(f"upstream:http://{host}:{proxy[1]}")
        method, target = request
        address = normalise_host(proxy[0])
        self.sink(
            EgressFlow(
                pid=self.pids.of_client(client),
                host=address,
                sni=None,
                server_address=address,
                server_port=proxy[1],
                scheme=FORWARD_PROXY_SCHEME,
                method=method,
                url=redact_url(target),
                status=None,
                bytes_out=0,
                bytes_in=0,
                sha256=None,
                content_type=None,
                tls=TlsHandling.NONE,
                connected_to=address,
            )
        )
        nextlayer.layer = HttpLayer(context, HTTPMode.upstream)

    def _through_job_proxy(self, destination: tuple[str, int]) -> bool:
        """A direct connection that must leave through the job's proxy (not to the proxy
        itself, not a NO_PROXY destination)."""
        route = self.route
        if route is None or route.is_job_proxy(destination):
            return False
        names = self.allowlist.names_of(destination[0]) if self.allowlist is not None else set()
        return not route.job.no_proxy.bypasses(normalise_host(destination[0]), names)

    def http_connect(self, flow: http.HTTPFlow) -> None:
        authorization = flow.request.headers.get("proxy-authorization")
        if authorization and flow.client_conn.id in FORWARD_PROXY_CLIENTS:
            self.client_authorization[flow.client_conn.id] = authorization

    def http_connect_upstream(self, flow: http.HTTPFlow) -> None:
        # The CONNECT ciwatch sends to a proxy: the job's credentials to the job's proxy only,
        # a build client's own credentials to the proxy it chose.
        address = flow.server_conn.address
        if address is None:
            return
        job = self.route.authorization(address) if self.route is not None else None
        chosen = FORWARD_PROXY_CLIENTS.get(flow.client_conn.id)
        own = self.client_authorization.get(flow.client_conn.id) if chosen is not None else None
        if job is not None and (chosen is None or (self.route is not None and self.route.is_job_proxy(chosen))):
            flow.request.headers["Proxy-Authorization"] = job
        elif own is not None and chosen is not None and _same(chosen, address):
            flow.request.headers["Proxy-Authorization"] = own

    def client_disconnected(self, client: connection.Client) -> None:
        FORWARD_PROXY_CLIENTS.pop(client.id, None)
        self.client_authorization.pop(client.id, None)


def _same(a: tuple[str, int], b: tuple[str, int]) -> bool:
    return normalise_host(str(a[0])) == normalise_host(str(b[0])) and int(a[1]) == int(b[1])
