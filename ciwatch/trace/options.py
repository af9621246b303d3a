"""How a Tracer is configured: one frozen object, given to its constructor."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from ciwatch.dataclass import dataclass
from ciwatch.trace.redirect import TrafficGate

if TYPE_CHECKING:
    from ciwatch.trace.fanotify import FanotifyGroup


def _nothing() -> None:
    return None


@dataclass(frozen=True)
class TracerOptions:
    """What a run asks of the tracer beyond recording. The redirector is not here: it exists
    only once the proxy has started, and goes when leftovers outlive the proxy, so it is the
    tracer's state (:meth:`ciwatch.trace.tracer.Tracer.redirect_through`)."""

    on_idle: Callable[[], None] = _nothing
    """Called before the tracer blocks waiting for the build (the record is written then)."""
    follow_hooks: bool = False
    """Follow hooks' subtrees syscall by syscall, recording reads of credential files."""
    home: str = ""
    """The build's HOME, against which credential paths are recognised."""
    gate: TrafficGate | None = None
    """Set in block mode: refuses traffic that would not pass the proxy."""
    gate_direct_tcp: bool = False
    """Also gate TCP connects that aren't redirected (env mode: those bypass the proxy)."""
    fanotify: bool = False
    """File writes (and a hook's reads) from fanotify, not from stops: the build's filter
    must then be built without the table's fanotify rows (:func:`ciwatch.trace.seccomp.build_filter`)."""
    fanotify_group: FanotifyGroup | None = None
    """The write group opened before the build (``open_write_group``); one is opened if None."""
    own_network_namespace: bool = False
    """Set in sandbox mode: the build's loopback is its namespace's, where only it runs."""
    dns_via_namespace: bool = False
    """Set in sandbox mode: nftables sends the namespace's DNS to ciwatch's DNS listener,
    which judges each name, so DNS to the configured resolver is not the gate's to refuse."""
