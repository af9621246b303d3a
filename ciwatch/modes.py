"""The choices a run is made with: how its traffic reaches the proxy (``--net``) and what
becomes of processes left running (``--leftovers``).

The bottom floor: imports nothing of ciwatch, so that the session, the egress plumbing, the
capability probes, the record and the rules can all ask a net mode what it implies. Each
mode's implications are in one row of ``_TRAITS``: adding a mode is adding a row there.
"""

from __future__ import annotations

from enum import StrEnum

from ciwatch.dataclass import dataclass


class LeftoverAction(StrEnum):
    """What to do with the build's processes still running when its root process exits."""

    LEAVE = "leave"
    """Report them and keep them running after ciwatch returns the build's exit code; they stay
    traced, into a second segment of the record, until they exit."""
    KILL = "kill"
    WAIT = "wait"
    """Keep tracing and recording until they exit too."""


class FileEvents(StrEnum):
    """Where the tracer learns of the build's file writes (``--file-events``)."""

    AUTO = "auto"
    """fanotify when this process may use it (root outside a user namespace), else ptrace."""
    PTRACE = "ptrace"
    """The seccomp filter stops each write-open, rename and unlink (no privilege needed)."""
    FANOTIFY = "fanotify"
    """A fanotify group reports them while the writer runs on (needs CAP_SYS_ADMIN)."""


class DnsRoute(StrEnum):
    """Where the build's DNS queries go."""

    TRACER = "tracer"
    """The tracer rewrites each query's destination to the proxy's DNS listener."""
    NAMESPACE = "namespace"
    """nftables in the build's network namespace sends every query to the proxy."""
    SYSTEM = "system"
    """The machine's own resolver: the proxy never sees them (only the tracer does)."""


@dataclass(frozen=True)
class NetModeTraits:
    """What one ``--net`` mode implies, for everything that depends on it."""

    uses_proxy: bool
    """An egress proxy runs, and sees (some of) the build's traffic."""
    tracer_redirects: bool
    """The tracer rewrites connect() and DNS sends to the proxy's loopback listeners (and its
    seccomp filter also stops at receives, to make the replies look like they came from the
    original destination)."""
    network_namespace: bool
    """The build runs in a network namespace of its own whose only way out is the proxy."""
    proxy_variables: bool
    """The build's environment gets HTTP(S)_PROXY and friends, for the proxy's regular listener."""
    dns: DnsRoute
    tracer_gates_direct_tcp: bool
    """In block mode the tracer decides direct TCP connects, because no proxy would see them."""
    every_tcp_through_proxy: bool
    """Every TCP connection reaches the proxy whatever the tracer recorded (as ``direct``)."""
    direct_tcp_is_bypass: bool
    """A TCP connect recorded as ``direct`` avoided a proxy that the build was meant to use."""
    needs_privilege: bool
    """Needs root (CAP_SYS_ADMIN and CAP_NET_ADMIN) and the ``ip``/``nft``/``nsenter`` tools."""

    @property
    def proxy_sees_dns(self) -> bool:
        return self.dns is not DnsRoute.SYSTEM


class NetMode(StrEnum):
    """How outbound traffic reaches the proxy (the order is ``--net``'s in the help)."""

    REDIRECT = "redirect"
    SANDBOX = "sandbox"
    ENV = "env"
    OFF = "off"

    @property
    def traits(self) -> NetModeTraits:
        return _TRAITS[self]


_TRAITS: dict[NetMode, NetModeTraits] = {
    NetMode.REDIRECT: NetModeTraits(
        uses_proxy=True,
        tracer_redirects=True,
        network_namespace=False,
        proxy_variables=False,
        dns=DnsRoute.TRACER,
        tracer_gates_direct_tcp=False,
        every_tcp_through_proxy=False,
        direct_tcp_is_bypass=True,
        needs_privilege=False,
    ),
    NetMode.SANDBOX: NetModeTraits(
        uses_proxy=True,
        tracer_redirects=False,
        network_namespace=True,
        proxy_variables=False,
        dns=DnsRoute.NAMESPACE,
        tracer_gates_direct_tcp=False,
        every_tcp_through_proxy=True,
        direct_tcp_is_bypass=False,
        needs_privilege=True,
    ),
    NetMode.ENV: NetModeTraits(
        uses_proxy=True,
        tracer_redirects=False,
        network_namespace=False,
        proxy_variables=True,
        dns=DnsRoute.SYSTEM,
        tracer_gates_direct_tcp=True,
        every_tcp_through_proxy=False,
        direct_tcp_is_bypass=True,
        needs_privilege=False,
    ),
    NetMode.OFF: NetModeTraits(
        uses_proxy=False,
        tracer_redirects=False,
        network_namespace=False,
        proxy_variables=False,
        dns=DnsRoute.SYSTEM,
        tracer_gates_direct_tcp=True,
        every_tcp_through_proxy=False,
        direct_tcp_is_bypass=False,
        needs_privilege=False,
    ),
}
