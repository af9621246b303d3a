"""The proxy's addons, in the order the proxy adds them, driven through mitmproxy's own test
harness (``taddons``, ``tflow``): hooks are called as mitmproxy's layers call them, on flows
that are only data. Nothing opens a socket; every address is loopback or ``.test``."""

from __future__ import annotations

import asyncio
import hashlib
import inspect
from collections.abc import Awaitable, Iterable
from types import SimpleNamespace

import pytest
from mitmproxy import connection, exceptions, hooks, http, tcp, tls
from mitmproxy.proxy.context import Context
from mitmproxy.proxy.layers import http as http_layer
from mitmproxy.proxy.layers import tcp as tcp_layer
from mitmproxy.proxy.layers import tls as tls_layer
from mitmproxy.test import taddons, tflow, tutils

from ciwatch.egress.addons import ClientPids, egress_addons
from ciwatch.egress.origdst import OriginalDestination, OriginalDestinations
from ciwatch.gate.allowlist import RuntimeAllowlist
from ciwatch.gate.enforcer import LiveEnforcer
from ciwatch.job.scrub import REDACTED
from ciwatch.policy.model import Allowlist, HostPattern, Mode, Policy
from ciwatch.record.events import AllowlistLearned, EgressFlow, Event, Refusal
from ciwatch.record.vocabulary import RefusedWhat, TlsHandling

REGISTRY = "registry.test"
FILES = "files.test"
EVIL = "evil.test"
CLIENT = ("127.0.0.1", 40001)
BUILD_PID = 4242


def _policy(mode: Mode) -> Policy:
    return Policy(mode=mode, allow=Allowlist(registries_auto=True, hosts=(HostPattern(REGISTRY),)))


async def _awaited(result: Awaitable[object]) -> None:
    await result


class Proxy:
    """ciwatch's addons in a mitmproxy test context; events land in ``events`` and, as in a
    run, in the allowlist."""

    def __init__(self, mode: Mode = Mode.BLOCK, registered: bool = True) -> None:
        self.events: list[Event] = []
        self.allowlist = RuntimeAllowlist(_policy(mode))
        self.allowlist.settle_registries()
        self.enforcer = LiveEnforcer(_policy(mode), self.allowlist, self.sink)
        self.destinations = OriginalDestinations()
        if registered:  # redirect mode: the tracer registered the connection before it was made
            self.destinations.register(7, OriginalDestination(BUILD_PID, "127.0.0.1", 443))
            self.destinations.claim(7, CLIENT)
        self.lookups: list[tuple[str, int]] = []
        self.addons = egress_addons(self.sink, self.destinations, self.lookup, self.allowlist, self.enforcer)
        self.context = taddons.context(*self.addons)

    def sink(self, event: Event) -> None:
        self.events.append(event)
        self.allowlist.observe(event)

    def lookup(self, peer: tuple[str, int]) -> int | None:
        """The /proc scan of env and sandbox modes."""
        self.lookups.append(peer)
        return 1234 if peer == CLIENT else None

    def hook(self, event: hooks.Hook) -> None:
        # The master's chain, in order, letting an addon's exception through; an async hook
        # (the claimed-name look-up) is awaited before the next addon, as mitmproxy does.
        manager = self.context.master.addons
        for addon in manager.chain:
            for _addon, func in manager._iter_hooks(addon, event):
                result = func(*event.args())
                if inspect.isawaitable(result):
                    asyncio.run(_awaited(result))

    def exchange(self, flow: http.HTTPFlow, upstream: http.Response, chunks: Iterable[bytes] = ()) -> bool:
        """One request as mitmproxy's HTTP layer runs it; True if it went upstream."""
        self.hook(http_layer.HttpRequestHeadersHook(flow))
        self.hook(http_layer.HttpRequestHook(flow))
        if flow.response is not None:  # answered by an addon: the layer emulates responseheaders
            self.hook(http_layer.HttpResponseHeadersHook(flow))
            self.hook(http_layer.HttpResponseHook(flow))
            return False
        flow.response = upstream
        self.hook(http_layer.HttpResponseHeadersHook(flow))
        assert callable(flow.response.stream), "the recorder streams every body"
        for chunk in [*chunks, b""]:  # the layer ends a streamed body with b""
            flow.response.stream(chunk)
        self.hook(http_layer.HttpResponseHook(flow))
        return True

    def of(self, kind: type[Event]) -> list[Event]:
        return [event for event in self.events if isinstance(event, kind)]


def _flow(host: str, path: str = "/") -> http.HTTPFlow:
    request = tutils.treq(host=host, port=443, scheme=b"https", path=path.encode(), content=b"")
    flow = tflow.tflow(req=request)
    flow.client_conn.peername, flow.client_conn.sni = CLIENT, host  # HTTPS, intercepted
    flow.server_conn.address = (host, 443)
    flow.server_conn.peername = ("127.0.0.1", 443)
    return flow


def _response(content_type: str) -> http.Response:
    return tutils.tresp(headers=http.Headers(content_type=content_type), content=None)


def test_an_allowed_request_goes_upstream_and_is_recorded() -> None:
    proxy = Proxy()
    flow = _flow(REGISTRY, "/pkg/-/pkg-1.0.tgz?token=s3cret&v=1")
    body = [b"tarball ", b"bytes"]
    assert proxy.exchange(flow, _response("application/octet-stream"), body)
    [record] = proxy.events
    assert isinstance(record, EgressFlow)
    assert record.url == f"https://{REGISTRY}/pkg/-/pkg-1.0.tgz?token={REDACTED}&v=1"
    assert (record.pid, record.host, record.method, record.status) == (BUILD_PID, REGISTRY, "GET", 200)
    assert (record.server_address, record.server_port, record.scheme) == ("127.0.0.1", 443, "https")
    assert record.bytes_in == len(b"".join(body))
    assert record.sha256 == hashlib.sha256(b"".join(body)).hexdigest()
    assert record.sha512 == hashlib.sha512(b"".join(body)).hexdigest()
    assert record.content_type == "application/octet-stream"
    assert (record.sni, record.tls) == (REGISTRY, TlsHandling.INTERCEPTED)
    assert record.error is None and not record.refused


def test_block_mode_refuses_an_unlisted_host_before_upstream() -> None:
    proxy = Proxy()
    flow = _flow(EVIL, "/exfil?key=abc")
    assert not proxy.exchange(flow, _response("text/plain"))
    assert flow.response is not None and flow.response.status_code == 403
    refusal, record = proxy.events
    assert refusal == Refusal(
        pid=BUILD_PID,
        what=RefusedWhat.REQUEST,
        target=EVIL,
        reason="unfamiliar-egress: not in the allowlist",
        rule="unfamiliar-egress",
    )
    assert isinstance(record, EgressFlow)
    assert record.refused and record.status == 403 and record.url == f"https://{EVIL}/exfil?key={REDACTED}"
    # The refusal's body was made here, not streamed: the record says no bytes came in.
    assert record.bytes_in == 0 and record.sha256 == hashlib.sha256(b"").hexdigest()


def test_audit_mode_lets_an_unlisted_host_through() -> None:
    proxy = Proxy(Mode.AUDIT)
    assert proxy.exchange(_flow(EVIL), _response("text/plain"), [b"ok"])
    [record] = proxy.events
    assert isinstance(record, EgressFlow) and not record.refused and record.status == 200


def test_a_download_host_named_by_an_allowed_index_is_learned() -> None:
    proxy = Proxy()
    packument = b'{"versions": {"1.0": {"dist": {"tarball": "https://files.test/pkg-1.0.tgz?token=s3cret"}}}}'
    chunks = [packument[:40], packument[40:]]  # the field is split between chunks
    assert proxy.exchange(_flow(REGISTRY, "/pkg"), _response("application/json"), chunks)
    record, learned = proxy.events
    assert isinstance(record, EgressFlow) and record.bytes_in == len(packument)
    assert learned == AllowlistLearned(
        host=FILES, learned_from=REGISTRY, url=f"https://{FILES}/pkg-1.0.tgz?token={REDACTED}"
    )
    # Learned, so allowed from then on.
    assert proxy.exchange(_flow(FILES, "/pkg-1.0.tgz"), _response("application/octet-stream"))
    assert not proxy.of(Refusal)


def test_nothing_is_learned_from_a_host_that_is_not_an_index() -> None:
    proxy = Proxy(Mode.AUDIT)
    page = b'{"tarball": "https://files.test/pkg-1.0.tgz"}'
    assert proxy.exchange(_flow(EVIL, "/pkg"), _response("application/json"), [page])
    assert not proxy.of(AllowlistLearned)


def _tls_context(sni: str) -> Context:
    client = tflow.tclient_conn()
    client.peername, client.sni = CLIENT, sni
    context = Context(client, taddons.context().options)
    context.server.address = ("127.0.0.1", 443)
    return context


def _client_hello(sni: str) -> tls.ClientHelloData:
    # Only the SNI is read; a real ClientHello would have to be parsed from bytes.
    return tls.ClientHelloData(_tls_context(sni), SimpleNamespace(sni=sni))


def _client_rejects_the_ca(proxy: Proxy, sni: str) -> None:
    context = _tls_context(sni)
    context.client.error = "certificate unknown"
    proxy.hook(tls_layer.TlsFailedClientHook(tls.TlsData(context.client, context)))


def test_a_client_that_rejects_the_ca_is_passed_through_afterwards() -> None:
    proxy = Proxy()
    first = _client_hello(REGISTRY)
    proxy.hook(tls_layer.TlsClienthelloHook(first))
    assert not first.ignore_connection and not proxy.events

    _client_rejects_the_ca(proxy, REGISTRY)
    again = _client_hello(REGISTRY)
    proxy.hook(tls_layer.TlsClienthelloHook(again))
    assert again.ignore_connection
    rejected, passed = proxy.events
    assert isinstance(rejected, EgressFlow) and isinstance(passed, EgressFlow)
    assert rejected.error is not None and "rejected the run's CA (certificate unknown)" in rejected.error
    for record in (rejected, passed):
        assert (record.host, record.sni, record.pid) == (REGISTRY, REGISTRY, BUILD_PID)
        assert (record.tls, record.scheme, record.server_address, record.server_port) == (
            TlsHandling.PASSTHROUGH,
            "tls",
            "127.0.0.1",
            443,
        )
    assert passed.error is None


def test_block_mode_intercepts_an_unlisted_host_even_if_its_client_rejected_the_ca() -> None:
    proxy = Proxy()
    _client_rejects_the_ca(proxy, EVIL)
    hello = _client_hello(EVIL)
    proxy.hook(tls_layer.TlsClienthelloHook(hello))
    assert not hello.ignore_connection  # so its request can be refused
    assert len(proxy.of(EgressFlow)) == 1  # the rejection only


def _tcp_flow(sni: str | None) -> tcp.TCPFlow:
    """TLS (intercepted) with an SNI, else plain TCP."""
    flow = tflow.ttcpflow()
    flow.client_conn.peername, flow.client_conn.sni = CLIENT, sni
    if sni is None:
        flow.client_conn.timestamp_tls_setup = None
    flow.server_conn.address = flow.server_conn.peername = ("127.0.0.1", 5432)
    return flow


def _tcp(proxy: Proxy, flow: tcp.TCPFlow) -> None:
    """A connection that is not HTTP, as mitmproxy's TCP layer reports it."""
    proxy.hook(tcp_layer.TcpStartHook(flow))
    if flow.error is None:
        proxy.hook(tcp_layer.TcpEndHook(flow))
    else:
        proxy.hook(tcp_layer.TcpErrorHook(flow))


def test_other_tcp_is_recorded_and_refused_in_block_mode() -> None:
    proxy = Proxy()
    allowed = _tcp_flow(REGISTRY)
    _tcp(proxy, allowed)
    [record] = proxy.events
    assert isinstance(record, EgressFlow)
    assert (record.host, record.scheme, record.bytes_out, record.bytes_in) == (REGISTRY, "tls", 5, 7)
    assert record.pid == BUILD_PID and record.error is None

    refused = _tcp_flow(None)  # no SNI: known by its address, which the policy doesn't allow
    _tcp(proxy, refused)
    assert refused.error is not None
    refusal, killed = proxy.events[1:]
    assert isinstance(refusal, Refusal) and (refusal.what, refusal.target) == (RefusedWhat.CONNECT, "127.0.0.1")
    assert isinstance(killed, EgressFlow) and killed.error == refused.error.msg
    assert (killed.host, killed.scheme, killed.tls) == ("127.0.0.1", "tcp", TlsHandling.NONE)


def test_the_pid_comes_from_the_tracer_registration_else_the_lookup_once_per_flow() -> None:
    registered = Proxy()
    assert registered.exchange(_flow(REGISTRY), _response("text/plain"))
    [record] = registered.events
    assert isinstance(record, EgressFlow) and record.pid == BUILD_PID and not registered.lookups

    scanned = Proxy(registered=False)
    assert not scanned.exchange(_flow(EVIL), _response("text/plain"))
    refusal, record = scanned.events
    assert isinstance(refusal, Refusal) and isinstance(record, EgressFlow)
    assert refusal.pid == record.pid == 1234
    assert scanned.lookups == [CLIENT]  # the refusal's look-up served the record too

    pids = ClientPids(OriginalDestinations(), scanned.lookup)
    assert pids.of_client(connection.Client(peername=("127.0.0.1", 40002), sockname=("127.0.0.1", 8080))) is None
    assert pids.of_client(connection.Client(peername=None, sockname=("127.0.0.1", 8080))) is None


def test_block_mode_needs_the_lazy_connection_strategy() -> None:
    proxy = Proxy()
    # Declared by mitmproxy's proxyserver addon, which opens listeners: declared here instead.
    proxy.context.options.add_option("connection_strategy", str, "lazy", "")
    with pytest.raises(exceptions.OptionsError, match="lazy"):
        proxy.context.options.update(connection_strategy="eager")
