"""ciwatch's DNS listener: records each query and forwards it to the resolver it was meant for.

In ``redirect`` mode the tracer rewrote the query's destination to this listener and
registered the original resolver; in ``sandbox`` mode nftables redirected it and the
resolver is the one the host is configured with. It never answers from anywhere else, so
a name the build looks up goes exactly where it would have gone untraced. A query that no
process of the build sent is dropped unanswered and counted (``buildpeers``), never recorded.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable
from typing import Any, cast

from ciwatch.egress.buildpeers import BuildPeers, holder_of
from ciwatch.egress.origdst import OriginalDestinations, lookup_in_namespace, socket_inode
from ciwatch.net.dns import decode_dns_query, decode_dns_response
from ciwatch.record.events import DnsAnswer, Event

log = logging.getLogger(__name__)

_TIMEOUT_S = 5.0
_MAX_INFLIGHT = 256

#: Decides whether a name may be resolved (block mode refuses); None allows everything.
DnsGate = Callable[[str, int | None], bool]


class _ListenerProtocol(asyncio.DatagramProtocol):
    def __init__(self, forwarder: DnsForwarder) -> None:
        self.forwarder = forwarder
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        if self.transport is None or self.forwarder.inflight >= _MAX_INFLIGHT:
            return
        task = asyncio.ensure_future(self.forwarder.handle(self.transport, data, (str(addr[0]), int(addr[1]))))
        self.forwarder.tasks.add(task)  # the loop keeps only weak references to tasks
        task.add_done_callback(self.forwarder.tasks.discard)


class DnsForwarder:
    def __init__(
        self,
        sink: Callable[[Event], None],
        destinations: OriginalDestinations,
        default_upstreams: list[str],
        peers: BuildPeers,
    ) -> None:
        self.sink = sink
        self.destinations = destinations
        self.default_upstreams = default_upstreams
        self.peers = peers
        self.gate: DnsGate | None = None
        self.inflight = 0
        self.tasks: set[asyncio.Future[None]] = set()
        self.listeners: list[tuple[str, int]] = []
        self._transports: list[asyncio.DatagramTransport] = []

    async def serve(self, sockets: list[socket.socket]) -> None:
        """Answer on these bound datagram sockets (queries sent before are still queued)."""
        loop = asyncio.get_running_loop()
        for sock in sockets:
            transport, _ = await loop.create_datagram_endpoint(lambda: _ListenerProtocol(self), sock=sock)
            self._transports.append(transport)
            name = transport.get_extra_info("sockname")
            self.listeners.append((str(name[0]), int(name[1])))

    def close(self) -> None:
        for transport in self._transports:
            transport.close()

    def _origin(self, client: tuple[str, int]) -> tuple[str, int | None] | None:
        """(resolver the query was meant for, pid of the client); None when no process of the
        build sent it."""
        for listener in self.listeners:
            if (":" in listener[0]) != (":" in client[0]):
                continue
            inode = socket_inode(client, listener, "udp")
            if inode is None:
                continue
            known = self.destinations.lookup_inode(inode)
            if known is not None:
                return known.address, known.pid
        upstream = self.default_upstreams[0] if self.default_upstreams else ""
        for namespace_pid in self.destinations.namespace_pids:
            found = lookup_in_namespace(namespace_pid, client, "udp")
            if found is not None:
                (server, _port), inode = found
                # A connected socket names its resolver; an unconnected one goes upstream.
                server = server if server not in ("0.0.0.0", "::") else upstream
                return server, holder_of([inode], self.peers.build_pids())
        sender = self.peers.admit(client, "udp", "dns")
        return (upstream, sender.pid) if sender is not None else None

    async def handle(self, transport: asyncio.DatagramTransport, query: bytes, client: tuple[str, int]) -> None:
        self.inflight += 1
        try:
            await self._handle(transport, query, client)
        except Exception:
            log.exception("DNS query from %s failed", client)
        finally:
            self.inflight -= 1

    async def _handle(self, transport: asyncio.DatagramTransport, query: bytes, client: tuple[str, int]) -> None:
        origin = self._origin(client)
        if origin is None:
            return  # not the build's: no answer, no event (counted by ``admit``)
        server, pid = origin
        questions = decode_dns_query(query)
        name = questions[0].name if questions else "?"
        qtype = questions[0].qtype if questions else "?"
        if self.gate is not None and not self.gate(name, pid):
            from ciwatch.net.dns import refusal_for

            transport.sendto(refusal_for(query), client)
            self.sink(DnsAnswer(pid=pid, name=name, qtype=qtype, rcode="REFUSED", answers=[], server=server))
            return
        if not server:
            self.sink(DnsAnswer(pid=pid, name=name, qtype=qtype, rcode="SERVFAIL", answers=[], server=""))
            return
        reply = await self._ask(server, query)
        if reply is None:
            self.sink(DnsAnswer(pid=pid, name=name, qtype=qtype, rcode="TIMEOUT", answers=[], server=server))
            return
        transport.sendto(reply, client)
        response = decode_dns_response(reply)
        self.sink(
            DnsAnswer(
                pid=pid,
                name=name,
                qtype=qtype,
                rcode=response.rcode if response else "FORMERR",
                answers=response.answers if response else [],
                server=server,
            )
        )

    async def _ask(self, server: str, query: bytes) -> bytes | None:
        loop = asyncio.get_running_loop()
        family = socket.AF_INET6 if ":" in server else socket.AF_INET
        with socket.socket(family, socket.SOCK_DGRAM) as upstream:
            upstream.setblocking(False)
            try:
                await loop.sock_connect(upstream, (server, 53))
                await loop.sock_sendall(upstream, query)
                return await asyncio.wait_for(loop.sock_recv(upstream, 65535), _TIMEOUT_S)
            except (OSError, TimeoutError):
                return None
