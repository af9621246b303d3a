"""One run's egress plumbing: proxy, trust files, client environment, tracer redirection."""

from __future__ import annotations

import dataclasses
import ipaddress
import logging
import socket
from collections.abc import Callable
from pathlib import Path

from ciwatch.egress.origdst import OriginalDestination, OriginalDestinations
from ciwatch.egress.proxy import EgressProxy, ProxyConfig
from ciwatch.egress.resolvers import system_resolvers
from ciwatch.egress.sandbox import Sandbox
from ciwatch.egress.trust import (
    TrustFiles,
    client_trust_env,
    java_trust_store,
    make_run_dir,
    remove_run_dir,
    sweep_stale_run_dirs,
    upstream_trust_pem,
    write_trust_files,
)
from ciwatch.egress.upstream import JobProxy
from ciwatch.gate.allowlist import RuntimeAllowlist, normalise_host
from ciwatch.gate.enforcer import LiveEnforcer
from ciwatch.modes import NetMode
from ciwatch.net.address import SocketAddress, ipv4_mapped
from ciwatch.record.events import Event, ProxyReady

log = logging.getLogger(__name__)

_DNS_PORT = 53


class ListenerRedirector:
    """The tracer's view of the proxy in redirect mode (see ``ciwatch.trace.redirect``)."""

    def __init__(
        self,
        destinations: OriginalDestinations,
        tcp: dict[str, tuple[str, int]],
        dns: dict[str, tuple[str, int]],
    ) -> None:
        self.destinations = destinations
        self.tcp = tcp
        self.dns = dns

    def target(self, destination: SocketAddress, protocol: str) -> SocketAddress | None:
        if protocol == "tcp":
            listeners = self.tcp
        elif protocol == "udp" and destination.port == _DNS_PORT:
            listeners = self.dns
        else:
            return None
        family = "inet" if destination.family == "inet" or ipv4_mapped(destination.address) else "inet6"
        listener = listeners.get(family)
        if listener is None:
            return None
        return SocketAddress(family, listener[0], listener[1])

    def register(self, inode: int, pid: int, destination: SocketAddress) -> None:
        address = destination.address
        if ipv4_mapped(address):
            # ::ffff:1.2.3.4 -> 1.2.3.4, as the proxy dials it; also written ::ffff:102:304 (a JVM's)
            address = str(ipaddress.IPv6Address(address).ipv4_mapped)
        self.destinations.register(inode, OriginalDestination(pid, address, destination.port))


def _by_family(listeners: list[tuple[str, int]]) -> dict[str, tuple[str, int]]:
    return {("inet6" if ":" in host else "inet"): (host, port) for host, port in listeners}


class EgressRun:
    """The proxy and whatever ``mode`` needs to send the build's traffic through it. The mode
    was checked possible on this machine before the build started (``session.prepare``)."""

    def __init__(
        self,
        mode: NetMode,
        sink: Callable[[Event], None],
        build_pids: Callable[[], list[int]],
        extra_cas: list[Path],
        verbose: bool = False,
        allowlist: RuntimeAllowlist | None = None,
        enforcer: LiveEnforcer | None = None,
    ) -> None:
        self.allowlist = allowlist
        self.enforcer = enforcer
        self.mode = mode
        self.sink = sink
        self.extra_cas = extra_cas
        self.destinations = OriginalDestinations()
        self.build_pids = build_pids
        self.verbose = verbose
        self.proxy: EgressProxy | None = None
        self.sandbox: Sandbox | None = None
        self.trust: TrustFiles | None = None
        self.redirector: ListenerRedirector | None = None
        self.upstream_dir: Path | None = None

    def _config(self, root_pid: int) -> ProxyConfig:
        loopback = ["127.0.0.1", "::1"]
        traits = self.mode.traits
        inside: list[str] = []
        if traits.tracer_redirects:
            hosts = loopback
        elif traits.network_namespace:
            self.sandbox = Sandbox(root_pid)
            self.sandbox.create_link()
            self.destinations.namespace_pids = [root_pid]
            addresses = self.sandbox.addresses
            hosts = [addresses.host4, addresses.host6]
            inside = [addresses.inside4, addresses.inside6]
        else:
            hosts = []
        return ProxyConfig(
            transparent_hosts=hosts,
            regular_host="127.0.0.1" if traits.proxy_variables else None,
            dns_hosts=hosts,
            dns_upstreams=system_resolvers(),
            namespace_addresses=inside,
            verbose=self.verbose,
        )

    def start(self, env: dict[str, str], root_pid: int) -> dict[str, str]:
        """Start the proxy (and the sandbox's network, whose namespace the build's root,
        ``root_pid``, already has); returns the variables to add to the build's environment."""
        sweep_stale_run_dirs()
        config = self._config(root_pid)
        job_proxy = JobProxy.from_environment(env)
        if job_proxy is not None:
            config = dataclasses.replace(config, job_proxy=job_proxy, job_proxy_addresses=_resolve_proxies(job_proxy))
        proxy = self.proxy = EgressProxy(
            config, self.sink, self.destinations, self.build_pids, self.allowlist, self.enforcer
        )
        # Upstream servers are checked against the system's CAs plus the user's extra CAs
        # (a corporate TLS proxy's): mitmproxy's own default would be certifi's list.
        self.upstream_dir = make_run_dir("upstream")
        upstream_bundle = self.upstream_dir / "upstream-ca.pem"
        upstream_bundle.write_bytes(upstream_trust_pem(self.extra_cas))
        proxy.config = dataclasses.replace(proxy.config, upstream_trust=upstream_bundle)
        proxy.listen()
        trust = self.trust = write_trust_files(proxy.ca_cert_pem, self.extra_cas, env)
        _add_java_trust_store(trust)
        additions = client_trust_env(self.trust, env)
        traits = self.mode.traits
        if traits.tracer_redirects:
            self.redirector = ListenerRedirector(
                self.destinations,
                _by_family(proxy.transparent_listeners),
                _by_family(proxy.dns_listeners),
            )
        elif traits.network_namespace:
            assert self.sandbox is not None
            self.sandbox.configure_inside(_ports(proxy.transparent_listeners), _ports(proxy.dns_listeners))
        elif traits.proxy_variables and proxy.regular_listener is not None:
            additions.update(_proxy_env(proxy.regular_listener, env))
        listeners = [f"{h}:{p}" for h, p in proxy.transparent_listeners]
        if proxy.regular_listener:
            listeners.append("{}:{}".format(*proxy.regular_listener))
        listeners += [f"dns {h}:{p}" for h, p in proxy.dns_listeners]
        self.sink(
            ProxyReady(
                mode=str(self.mode),
                listeners=listeners,
                mitmproxy_version=mitmproxy_version(),
                upstream=job_proxy.upstream.hostport if job_proxy is not None else None,
                upstream_addresses=sorted(config.job_proxy_addresses),
            )
        )
        # The proxy's thread starts once the build is released, mitmproxy at its first connection.
        return additions

    def begin_start(self) -> None:
        """Start the proxy's thread, the build released (mitmproxy loads at the build's first
        connection): its import holds the interpreter lock for most of a second, and what is
        left before the release (the hooks the project approves, the release itself) would
        wait for the lock at every turn."""
        if self.proxy is not None:
            self.proxy.begin_start()

    def check_started(self) -> None:
        """Raise if the proxy could not start (the build's connections were refused then)."""
        if self.proxy is not None:
            self.proxy.check_started()

    def foreign_peers(self) -> dict[str, int]:
        """Connections and queries refused because no process of the build made them, by
        listener (for the record's ``end`` line)."""
        return self.proxy.foreign_peers() if self.proxy is not None else {}

    def stop(self) -> None:
        """Take everything down; each part even when another fails (nothing left behind)."""
        try:
            if self.proxy is not None:
                self.proxy.stop()
        finally:
            try:
                if self.sandbox is not None:
                    self.sandbox.destroy()
                    self.sandbox = None
            finally:
                if self.upstream_dir is not None:
                    remove_run_dir(self.upstream_dir)
                    self.upstream_dir = None
                if self.trust is not None:
                    self.trust.remove()
                    self.trust = None


def _resolve_proxies(job: JobProxy) -> dict[str, tuple[str, int]]:
    """The addresses of the job's proxies (the build's clients connect to these), by ciwatch's
    own resolution before the build starts: the job's name for its proxy is trusted."""
    found: dict[str, tuple[str, int]] = {}
    for proxy in job.configured:
        try:
            infos = socket.getaddrinfo(proxy.host, proxy.port, type=socket.SOCK_STREAM)
        except OSError:
            log.warning("the job's proxy %s does not resolve", proxy.hostport)
            continue
        for info in infos:
            found.setdefault(normalise_host(str(info[4][0])), (proxy.host, proxy.port))
    return found


def mitmproxy_version() -> str:
    from mitmproxy import version  # a small module: mitmproxy itself is imported on the proxy's thread

    return str(version.VERSION)


def _add_java_trust_store(trust: TrustFiles) -> None:
    trust.java_trust_store = java_trust_store(trust.directory, trust.ca_cert)


def _ports(listeners: list[tuple[str, int]]) -> dict[str, int]:
    return {family: port for family, (_, port) in _by_family(listeners).items()}


def _proxy_env(listener: tuple[str, int], env: dict[str, str]) -> dict[str, str]:
    url = f"http://{listener[0]}:{listener[1]}"
    no_proxy = ",".join(filter(None, [env.get("NO_PROXY") or env.get("no_proxy"), "localhost,127.0.0.1,::1"]))
    java = f"-Dhttp.proxyHost={listener[0]} -Dhttp.proxyPort={listener[1]} " + (
        f"-Dhttps.proxyHost={listener[0]} -Dhttps.proxyPort={listener[1]}"
    )
    return {
        "HTTP_PROXY": url,
        "HTTPS_PROXY": url,
        "http_proxy": url,
        "https_proxy": url,
        "ALL_PROXY": url,
        "NO_PROXY": no_proxy,
        "no_proxy": no_proxy,
        "npm_config_proxy": url,
        "npm_config_https_proxy": url,
        "YARN_HTTP_PROXY": url,
        "YARN_HTTPS_PROXY": url,
        "CARGO_HTTP_PROXY": url,
        "MAVEN_OPTS": f"{env.get('MAVEN_OPTS', '')} {java}".strip(),
    }
