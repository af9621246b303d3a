"""Both ends of a proxied connection, as the addons name them: the build process that opened
the client side, and the server the proxy talks to."""

from __future__ import annotations

from collections.abc import Callable

from mitmproxy import connection, http, tcp
from mitmproxy.proxy.mode_specs import TransparentMode

from ciwatch.egress.buildpeers import BuildPeers
from ciwatch.egress.origdst import OriginalDestination, OriginalDestinations

#: Who opened the connection from this peer address: the tracer's registration in
#: redirect mode, a /proc scan in env and sandbox modes.
PidLookup = Callable[[tuple[str, int]], int | None]

_PID = "ciwatch_pid"
"""flow.metadata key: the flow's pid, once looked up."""

FORWARD_PROXY_CLIENTS: dict[str, tuple[str, int]] = {}
"""Client connection id -> the address it connected to, for a client that spoke forward-proxy
HTTP there (a CONNECT or an absolute-form request): the build's own proxy, or the job's. Its
connection is switched to mitmproxy's upstream-proxy handling, so its proxy mode no longer says
where it connected; this does. Touched on the proxy's loop only; cleared at disconnect."""


def forward_proxy_of(client: connection.Client) -> tuple[str, int] | None:
    return FORWARD_PROXY_CLIENTS.get(client.id)


class BuildOnly:
    """The first addon: a client that is not one of the build's processes is disconnected
    before anything reads what it sent, counted, and never recorded (``buildpeers``)."""

    def __init__(self, peers: BuildPeers, destinations: OriginalDestinations) -> None:
        self.peers = peers
        self.destinations = destinations

    def client_connected(self, client: connection.Client) -> None:
        if isinstance(client.proxy_mode, TransparentMode):
            return  # identified as it was accepted (the proxy's ``original_addr``)
        if not client.peername:
            client.error = "ciwatch: no peer address"
            return
        peer = (str(client.peername[0]), int(client.peername[1]))
        listener = (str(client.sockname[0]), int(client.sockname[1])) if client.sockname else None
        found = self.peers.admit(peer, "tcp", "proxy", listener)
        if found is None:
            # mitmproxy closes a client whose error is set in this hook, before reading it.
            client.error = "ciwatch: not a process of the build"
        elif found.pid is not None:
            # Each of the connection's flows finds its pid here, with no second /proc scan.
            self.destinations.remember_peer(peer, OriginalDestination(found.pid, "", 0))


class ClientPids:
    """The pid of the build process behind a client connection: the one look-up every addon
    that attributes a flow (a refusal, a record) goes through."""

    def __init__(self, destinations: OriginalDestinations, lookup: PidLookup) -> None:
        self.destinations = destinations
        self.lookup = lookup

    def of_client(self, client: connection.Client) -> int | None:
        if not client.peername:
            return None
        peer = (str(client.peername[0]), int(client.peername[1]))
        known = self.destinations.by_peer(peer)
        if known is not None:
            return known.pid
        return self.lookup(peer)

    def of_flow(self, flow: http.HTTPFlow | tcp.TCPFlow) -> int | None:
        """Looked up once per flow: the enforcer asks when the request comes, the recorder
        when the response is done, and a /proc scan (env and sandbox modes) is too slow to
        pay twice per request."""
        metadata = flow.metadata
        if _PID in metadata:
            pid: int | None = metadata[_PID]
            return pid
        pid = metadata[_PID] = self.of_client(flow.client_conn)
        return pid


def server_of(flow: http.HTTPFlow | tcp.TCPFlow) -> tuple[str, int]:
    """The address the proxy connected to (or would have): the resolved peer if it got that far."""
    address = flow.server_conn.address or ("", 0)
    peer = flow.server_conn.peername or address
    return str(peer[0]), int(peer[1])
