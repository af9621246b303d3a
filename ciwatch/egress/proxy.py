"""The egress proxy: mitmproxy embedded in the ciwatch process, on its own asyncio thread.

Listeners are on loopback only (or the sandbox's host-side veth address), on ports the
kernel picks. Upstream certificates are verified against the system trust store plus any
CA the user adds (a corporate proxy's). The connection strategy is lazy, so the policy can
refuse a request before anything is sent upstream.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ciwatch.dataclass import dataclass, field
from ciwatch.egress.buildpeers import BuildPeers, tcp_client_inode
from ciwatch.egress.listeners import Listeners, serve_prebound_in_mitmproxy
from ciwatch.egress.mitmsetup import load_mitmproxy, regular_mode, use_in_memory_authority
from ciwatch.egress.origdst import OriginalDestination, OriginalDestinations, lookup_in_namespace, socket_inode
from ciwatch.egress.trust import RunAuthority, generate_run_ca, make_run_dir, remove_run_dir
from ciwatch.egress.upstream import JobProxy
from ciwatch.errors import EnvironmentNotSupported
from ciwatch.gate.allowlist import RuntimeAllowlist
from ciwatch.gate.enforcer import LiveEnforcer
from ciwatch.record.events import Event

if TYPE_CHECKING:
    import asyncio

    from ciwatch.egress.dns import DnsForwarder

log = logging.getLogger(__name__)

_START_TIMEOUT_S = 30.0
#: How long the proxy's thread waits for the build to use a listener before it loads the proxy
#: all the same: a step that ends sooner (``true``, a cache hit, a linter) never needs it.
_UNUSED_START_S = 0.05


@dataclass(frozen=True)
class ProxyConfig:
    transparent_hosts: list[str] = field(default_factory=list)
    """Addresses of transparent listeners (redirect: 127.0.0.1 and ::1; sandbox: the veth)."""
    regular_host: str | None = None
    """Address of an explicit HTTP proxy listener (env mode)."""
    dns_hosts: list[str] = field(default_factory=list)
    dns_upstreams: list[str] = field(default_factory=list)
    """Where DNS goes when the tracer didn't say (sandbox): the host's resolvers."""
    namespace_addresses: list[str] = field(default_factory=list)
    """sandbox: the build's namespace's own addresses (where its traffic comes from)."""
    upstream_trust: Path | None = None
    """CA bundle for verifying upstream servers (system CAs plus the user's extra CAs)."""
    job_proxy: JobProxy | None = None
    """The proxy the job configured before ciwatch started: where ciwatch's connections go."""
    job_proxy_addresses: dict[str, tuple[str, int]] = field(default_factory=dict)
    """Its addresses as ciwatch resolved them -> (name, port) as the job wrote it."""
    verbose: bool = False


def find_pid_for_socket(peer: tuple[str, int], candidates: Callable[[], list[int]]) -> int | None:
    """Which of the build's processes holds the client socket bound to ``peer``."""
    inode = socket_inode(peer, None, "tcp") or socket_inode(peer, None, "udp")
    return find_pid_for_inode(inode, candidates) if inode is not None else None


def find_pid_for_inode(inode: int, candidates: Callable[[], list[int]]) -> int | None:
    wanted = f"socket:[{inode}]"
    for pid in candidates():
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                if os.readlink(f"/proc/{pid}/fd/{fd}") == wanted:
                    return pid
        except OSError:
            continue
    return None


class EgressProxy:
    def __init__(
        self,
        config: ProxyConfig,
        sink: Callable[[Event], None],
        destinations: OriginalDestinations,
        build_pids: Callable[[], list[int]],
        allowlist: RuntimeAllowlist | None = None,
        enforcer: LiveEnforcer | None = None,
    ) -> None:
        self.allowlist = allowlist
        self.enforcer = enforcer
        self.config = config
        self.sink = sink
        self.destinations = destinations
        self.build_pids = build_pids
        self.peers = BuildPeers(build_pids, lambda: destinations.namespace_pids, config.namespace_addresses)
        """Who may use the listeners: the build's processes only (an open proxy otherwise)."""
        self.transparent_listeners: list[tuple[str, int]] = []
        self.regular_listener: tuple[str, int] | None = None
        self.ca_cert_pem = b""
        self.mitmproxy_version = ""
        self.dns: DnsForwarder | None = None
        self._master: Any = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._failure: BaseException | None = None
        self._confdir: Path | None = None
        self._authority: RunAuthority | None = None
        self._listeners = Listeners()
        self._dns_listeners: list[tuple[str, int]] = []
        self._abandoned = False
        """Stopped while still starting: the thread ends the proxy itself if it gets that far."""
        self._state = threading.Lock()
        """Makes the end of the start (running, failed or abandoned) happen once."""
        self._deadline: threading.Timer | None = None
        self._wake: Callable[[], None] | None = None
        """Ends the wait for the build's first connection (set while the proxy's loop waits)."""

    def pid_lookup(self, peer: tuple[str, int]) -> int | None:
        return find_pid_for_socket(peer, self.build_pids)

    def foreign_peers(self) -> dict[str, int]:
        """How many connections and queries each listener refused as not the build's."""
        return self.peers.foreign.counts()

    @property
    def dns_listeners(self) -> list[tuple[str, int]]:
        return self._dns_listeners

    # -- life cycle ----------------------------------------------------------------------

    def listen(self) -> None:
        """Make the run's CA and bind the listeners: their addresses are known on return."""
        self._confdir = make_run_dir("ca")
        self._authority = generate_run_ca()
        self.ca_cert_pem = self._authority.cert_pem
        config = self.config
        self._listeners = Listeners.bind(
            [*config.transparent_hosts, *([config.regular_host] if config.regular_host else [])], config.dns_hosts
        )
        self.transparent_listeners = [self._listeners.address_of(host) for host in config.transparent_hosts]
        if config.regular_host:
            self.regular_listener = self._listeners.address_of(config.regular_host)
        self._dns_listeners = self._listeners.dns_addresses

    def begin_start(self) -> None:
        """Start the proxy's thread on the listeners bound by ``listen``: DNS at once, mitmproxy
        when the build first connects to a listener. The build may be released at once: what it
        sends them waits until the proxy runs (``ciwatch.egress.listeners``); ``check_started``
        says how that went."""
        self._thread = threading.Thread(target=self._thread_main, name="ciwatch-proxy", daemon=True)
        self._thread.start()

    def _start_deadline(self) -> None:
        """A proxy that hangs while starting would leave the build's connections waiting: failed."""
        with self._state:
            if self._ready.is_set():
                return
            timeout = TimeoutError(f"it did not start within {_START_TIMEOUT_S:.0f} s")
            self._deadline = threading.Timer(_START_TIMEOUT_S, self._fail, args=(timeout,))
            self._deadline.daemon = True
            self._deadline.start()

    def check_started(self) -> None:
        """Raise if the proxy failed to start (its listeners were closed then, so what the build
        sent them was refused); not if it was stopped before it had started."""
        if self._failure is not None and not self._abandoned:
            raise EnvironmentNotSupported(f"the egress proxy could not start: {self._failure}") from self._failure

    def _fail(self, error: BaseException, abandon: bool = False) -> bool:
        """End the start (once): close the listeners; False if it had ended already."""
        with self._state:
            if self._ready.is_set():
                return False
            if self._deadline is not None:
                self._deadline.cancel()
            self._failure = error
            self._abandoned = abandon
            if self._wake is not None:
                self._wake()  # a proxy waiting for its first connection ends now
            self._listeners.close()
            self._remove_confdir()
            self._ready.set()
            return True

    def stop(self) -> None:
        """Shut the proxy down. One still starting (the build ended first, so nothing of the
        build's waits for it) is not waited for: its listeners are closed at once, and its
        thread ends the proxy if it gets that far (``on_running``)."""
        if self._fail(RuntimeError("the build ended before the proxy had started"), abandon=True):
            return
        master = self._master
        if master is not None and self._thread is not None and self._thread.is_alive():
            # A proxy that failed to start has closed its loop already: nothing to shut down.
            with contextlib.suppress(RuntimeError):
                master.shutdown()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._remove_confdir()

    def _remove_confdir(self) -> None:
        # mitmproxy may create the (empty) directory again while it runs: removed at stop too.
        if self._confdir is not None:
            remove_run_dir(self._confdir)

    # -- the proxy's thread --------------------------------------------------------------

    def _thread_main(self) -> None:
        # Loading asyncio, the DNS forwarder and mitmproxy is CPU time, and the interpreter
        # lock taken from the tracer, for nothing when the build ends within its first tens of
        # milliseconds; what the build sends the listeners meanwhile ends the wait at once.
        self._listeners.wait_for_use(_UNUSED_START_S)
        if self._abandoned:
            return  # the build ended before this thread ran: nothing will use the proxy
        try:
            # asyncio is imported on this thread: the build doesn't wait for it.
            import asyncio

            asyncio.run(self._main())
        except BaseException as error:  # noqa: BLE001 - reported by check_started
            self._fail(error)

    async def _main(self) -> None:
        import asyncio

        from ciwatch.egress.dns import DnsForwarder

        # DNS first: the build runs already, and a resolver gives up on a query within seconds
        # (glibc after 5 s, Go after two tries), where a TCP client waits in the backlog. Loading
        # mitmproxy takes seconds on a loaded machine: it is imported on a worker thread while
        # this loop answers the build's queries.
        asyncio.get_running_loop().set_exception_handler(self._unless_abandoned)
        self.dns = DnsForwarder(self.sink, self.destinations, self.config.dns_upstreams, self.peers)
        if self.enforcer is not None and self.enforcer.blocking:
            self.dns.gate = self.enforcer.dns_allowed
        await self.dns.serve(self._listeners.dns)
        try:
            # mitmproxy costs most of a second of CPU and ~50 MB to start: a build that never
            # connects (a cached install, a compile, tests) shouldn't pay for it. The first
            # connection waits in the listener's backlog while it starts, as any did before.
            await self._first_connection()
            if self._abandoned:
                return  # the build has ended: mitmproxy's import would be CPU for nothing
            self._start_deadline()
            await asyncio.to_thread(load_mitmproxy)
            await self._run_mitmproxy()
        finally:
            self.dns.close()

    async def _first_connection(self) -> None:
        """Return once a connection waits on one of the TCP listeners, or the proxy has been
        stopped. The sockets are only watched here (readable: a connection in the backlog),
        never accepted from: mitmproxy takes them over as they are."""
        import asyncio

        loop = asyncio.get_running_loop()
        arrived = asyncio.Event()
        descriptors = [sock.fileno() for sock in self._listeners.tcp.values()]

        def wake() -> None:
            loop.call_soon_threadsafe(arrived.set)

        with self._state:
            if self._ready.is_set():
                return  # stopped already
            self._wake = wake
        for descriptor in descriptors:
            loop.add_reader(descriptor, arrived.set)
        try:
            await arrived.wait()
        finally:
            for descriptor in descriptors:
                loop.remove_reader(descriptor)
            with self._state:
                self._wake = None

    def _unless_abandoned(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        """The loop's errors, unless the proxy was abandoned (the build ended while it started):
        its sockets were closed under the loop then, and what fails on them is nobody's concern."""
        if not self._abandoned:
            loop.default_exception_handler(context)

    async def _run_mitmproxy(self) -> None:
        from mitmproxy import master, options, platform
        from mitmproxy import version as mitmproxy_version

        from ciwatch.egress.addons import ClientPids, egress_addons
        from ciwatch.egress.addons.forward import Forward, UpstreamRoute
        from ciwatch.egress.addons.peers import BuildOnly
        from ciwatch.egress.hookchain import HookIndex, needed_default_addons

        self.mitmproxy_version = mitmproxy_version.VERSION
        use_in_memory_authority(self._authority, self._confdir)
        serve_prebound_in_mitmproxy(self._listeners)
        modes = [f"transparent@{host}:{port}" for host, port in self.transparent_listeners]
        if self.regular_listener is not None:
            modes.append(regular_mode(self.regular_listener, self.config.job_proxy))
        opts = options.Options(mode=modes, confdir=str(self._confdir))
        instance = master.Master(opts)
        HookIndex.install(instance.addons)  # per-event dispatch: the proxy's CPU per request
        route = None
        if self.config.job_proxy is not None:
            route = UpstreamRoute(self.config.job_proxy, dict(self.config.job_proxy_addresses))
        # First of all: a client that is not the build's is gone before any addon sees it.
        instance.addons.add(BuildOnly(self.peers, self.destinations))
        # Before mitmproxy's own addons: its next_layer never overrides an earlier decision,
        # and a forward-proxy client must be switched before it picks transparent HTTP.
        instance.addons.add(Forward(self.sink, ClientPids(self.destinations, self.pid_lookup), self.allowlist, route))
        instance.addons.add(*needed_default_addons())
        # Lazy: the policy can refuse a request before anything is sent upstream. Set before
        # ciwatch's addons are added, as the enforcer checks it then.
        opts.update(connection_strategy="lazy")
        instance.addons.add(
            *egress_addons(self.sink, self.destinations, self.pid_lookup, self.allowlist, self.enforcer),
            _ReadySignal(self),
        )
        if self.config.upstream_trust is not None:
            opts.update(ssl_verify_upstream_trusted_ca=str(self.config.upstream_trust))
        job = self.config.job_proxy
        if self.config.regular_host and job is not None and job.upstream.credentials is not None:
            # Declared by mitmproxy's UpstreamAuth addon (among the default addons added above).
            opts.update(upstream_auth=job.upstream.credentials)
        quiet = logging.DEBUG if self.config.verbose else logging.CRITICAL
        # Connections still open at shutdown end as cancelled tasks, which asyncio reports
        # with a traceback: noise on the build's stderr, not a problem.
        for name in ("mitmproxy", "asyncio"):
            logging.getLogger(name).setLevel(quiet)
        linux_original_addr = platform.original_addr
        destinations = self.destinations
        peers = self.peers

        def original_addr(sock: socket.socket) -> tuple[str, int]:
            # Called synchronously on the proxy's loop for each accepted transparent
            # connection: a dictionary look-up and one sock_diag query, never a wait.
            peer = sock.getpeername()[:2]
            inode = _client_inode(peer, sock.getsockname()[:2])
            known = destinations.claim(inode, peer) if inode is not None else None
            if known is not None:
                return known.address, known.port
            for namespace_pid in destinations.namespace_pids:
                found = lookup_in_namespace(namespace_pid, peer, "tcp")
                if found is not None:
                    (address, port), socket_id = found
                    pid = find_pid_for_inode(socket_id, self.build_pids)
                    destinations.remember_peer(peer, OriginalDestination(pid or 0, address, port))
                    return address, port
            # Neither redirected by the tracer nor from the sandbox's namespace: a process of the
            # build that connected to the listener itself, or someone else's, refused (raising
            # makes mitmproxy close the connection before any addon sees it).
            if peers.admit(peer, "tcp", "proxy", sock.getsockname()[:2]) is None:
                raise OSError(f"{peer[0]}:{peer[1]} is not a process of the build")
            if linux_original_addr is None:
                raise OSError("no original destination registered for this connection")
            return linux_original_addr(sock)  # type: ignore[no-any-return]

        platform.original_addr = original_addr
        self._master = instance
        await instance.run()

    def on_running(self) -> None:
        """Called on the proxy's loop once mitmproxy's listeners are up."""
        try:
            proxyserver = self._master.addons.get("proxyserver")
            for server in proxyserver.servers:
                if not server.is_running:
                    raise OSError(str(server.last_exception or f"{server.mode.full_spec} is not running"))
        except BaseException as error:  # noqa: BLE001 - reported by check_started
            self._fail(error)
            self._master.shutdown()
            return
        with self._state:
            ended = self._ready.is_set()  # abandoned meanwhile: nobody else will end it
            if self._deadline is not None:
                self._deadline.cancel()
            # The proxy holds the CA key in memory now: the key file goes.
            self._remove_confdir()
            self._ready.set()
        if ended:
            self._master.shutdown()


def _client_inode(peer: tuple[str, int], listener: tuple[str, int]) -> int | None:
    """The inode of the client socket at ``peer`` connected to ``listener``."""
    try:
        return tcp_client_inode(peer, listener)
    except (OSError, ValueError):
        return socket_inode(peer, listener, "tcp")  # no sock_diag: the (slower) table


class _ReadySignal:
    def __init__(self, proxy: EgressProxy) -> None:
        self.proxy = proxy

    def running(self) -> None:
        self.proxy.on_running()
