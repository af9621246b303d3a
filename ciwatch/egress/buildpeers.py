"""Who may use ciwatch's listeners: the build's processes, and nobody else.

The proxy and the DNS listener listen on addresses every local process can reach (loopback, or
the sandbox's host-side veth address). Served to anyone, the proxy would be an open proxy for
as long as the build runs, and anyone's requests would land in the job's record as the build's.
So each peer is identified when it arrives, from the kernel's socket tables: the socket bound to
the peer's address gives an inode, and one of the build's processes must hold that inode among
its file descriptors (only the build's processes are searched, not all of /proc). In sandbox
mode a socket in the build's own network namespace is the build's: nobody else can be in it
without root. Whatever is not the build's is refused and counted, by listener, for the record's
``end`` line; it never becomes an event.
"""

from __future__ import annotations

import ipaddress
import os
import threading
from collections.abc import Callable, Collection

from ciwatch.dataclass import dataclass
from ciwatch.egress.origdst import parse_proc_net_address
from ciwatch.net.sockdiag import tcp_socket_inode

Address = tuple[str, int]

_WILDCARDS = frozenset({"0.0.0.0", "::"})
_HOST_TABLES = "/proc/net"
"""The socket tables of ciwatch's own network namespace (the listeners')."""


@dataclass(frozen=True)
class _Entry:
    local: Address
    inode: int


def _entries_at_port(tables: str, protocol: str, port: int) -> list[_Entry]:
    """Every socket of ``protocol`` (IPv4 and IPv6) whose local port is ``port``, with an owner
    (a socket in TIME_WAIT, or orphaned, has inode 0: no process holds it)."""
    found: list[_Entry] = []
    for table in (f"{tables}/{protocol}", f"{tables}/{protocol}6"):
        try:
            with open(table) as stream:
                next(stream)
                for line in stream:
                    fields = line.split()
                    local = fields[1]
                    if int(local.rsplit(":", 1)[1], 16) != port or fields[9] == "0":
                        continue
                    found.append(_Entry(parse_proc_net_address(local), int(fields[9])))
        except (OSError, StopIteration, IndexError, ValueError):
            continue
    return found


def _is_loopback(address: str) -> bool:
    return ipaddress.ip_address(address).is_loopback


def tcp_client_inode(peer: Address, listener: Address) -> int | None:
    """The inode of the TCP socket at ``peer`` connected to ``listener`` (sock_diag). None: no
    such socket. Raises OSError when sock_diag can't be used (then the tables are read)."""
    return tcp_socket_inode(peer, listener)


def sockets_of_peer(peer: Address, protocol: str, tables: str = _HOST_TABLES) -> list[int]:
    """The inodes of the sockets a datagram or connection from ``peer`` can have come from:
    bound to its address exactly or, for UDP only (an unconnected socket), to the wildcard
    address at its port. A TCP client socket always has its exact address: a listening
    socket at the wildcard is never a client."""
    entries = _entries_at_port(tables, protocol, peer[1])
    exact = [entry.inode for entry in entries if entry.local[0] == peer[0]]
    if exact or protocol != "udp":
        return exact
    return [entry.inode for entry in entries if entry.local[0] in _WILDCARDS]


def sockets_in_namespace(
    peer: Address, protocol: str, namespace_pid: int, own_addresses: Collection[str]
) -> list[int] | None:
    """The inodes of the sockets in the network namespace of ``namespace_pid`` that ``peer``
    can be (None when its tables can't be read: the process is gone). Besides the exact
    address, when ``peer`` has one of the namespace's ``own_addresses``: for UDP, an
    unconnected socket (the wildcard) and a query to a loopback resolver, whose source the
    sandbox rewrites to the namespace's address (its port is kept). A host process can't
    borrow them by picking the same port: its own address is the host's."""
    tables = f"/proc/{namespace_pid}/net"
    if not os.path.exists(f"{tables}/{protocol}"):
        return None
    entries = _entries_at_port(tables, protocol, peer[1])
    exact = [entry.inode for entry in entries if entry.local[0] == peer[0]]
    if exact or protocol != "udp" or peer[0] not in own_addresses:
        return exact
    return [entry.inode for entry in entries if entry.local[0] in _WILDCARDS or _is_loopback(entry.local[0])]


def holder_of(inodes: Collection[int], pids: list[int]) -> int | None:
    """The process of ``pids`` that holds one of the sockets ``inodes`` among its descriptors.
    The newest first: the client of a request is most often a process that just started
    (curl, a package manager's fetcher), while the build's root and its shells are the oldest."""
    wanted = {f"socket:[{inode}]" for inode in inodes}
    if not wanted:
        return None
    for pid in reversed(pids):
        if _holds(pid, wanted):
            return pid
    return None


def _holds(pid: int, wanted: set[str]) -> bool:
    # Links read relative to the open fd directory: three times faster than whole paths,
    # which /proc resolves from the top each time (a few ms per connection for a big build).
    try:
        directory = os.open(f"/proc/{pid}/fd", os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return False  # gone since the table was taken
    try:
        for fd in os.listdir(directory):
            try:
                if os.readlink(fd, dir_fd=directory) in wanted:
                    return True
            except OSError:
                continue  # closed meanwhile
    except OSError:
        return False
    finally:
        os.close(directory)
    return False


class ForeignPeers:
    """Connections and queries refused because no process of the build made them, by listener
    ("proxy", "dns"). Counted on the proxy's thread, read once it has stopped."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[str, int] = {}

    def count(self, listener: str) -> None:
        with self._lock:
            self._counts[listener] = self._counts.get(listener, 0) + 1

    def counts(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)


@dataclass(frozen=True)
class BuildPeer:
    pid: int | None
    """The build's process that holds the peer's socket; None when the socket is known to be
    the build's (in the sandbox's namespace) but its holder was not found (gone meanwhile)."""


class BuildPeers:
    """Identifies the peers of ciwatch's listeners; refuses (and counts) the rest."""

    def __init__(
        self,
        build_pids: Callable[[], list[int]],
        namespace_pids: Callable[[], list[int]],
        namespace_addresses: Collection[str] = (),
        foreign: ForeignPeers | None = None,
    ) -> None:
        self.build_pids = build_pids
        """The build's processes, as the tracer's table knows them (safe from any thread)."""
        self.namespace_pids = namespace_pids
        """sandbox mode: processes in the build's network namespace (the build's root)."""
        self.namespace_addresses = frozenset(str(ipaddress.ip_address(a)) for a in namespace_addresses)
        """sandbox mode: the namespace's own addresses (its end of the veth)."""
        self.foreign = foreign or ForeignPeers()

    def identify(self, peer: Address, protocol: str, listener: Address | None = None) -> BuildPeer | None:
        """The build's process behind ``peer`` (connected to ``listener``, when known), or
        None: no process of the build holds its socket."""
        return self._identify(peer, protocol, listener)[0]

    def admit(self, peer: Address, protocol: str, counted_as: str, listener: Address | None = None) -> BuildPeer | None:
        """``identify``, counting a refused peer as ``counted_as`` (the listener's name), or as
        ``<counted_as> (sender gone)`` when no socket has the peer's address any more: a query
        read late (the listener still starting on a loaded machine) whose sender gave up and
        closed its socket can't be told from anyone's, and is no sign of a foreign process.
        Either way it gets no answer."""
        found, exists = self._identify(peer, protocol, listener)
        if found is None:
            self.foreign.count(counted_as if exists else f"{counted_as} (sender gone)")
        return found

    def _identify(self, peer: Address, protocol: str, listener: Address | None) -> tuple[BuildPeer | None, bool]:
        """The build's process behind ``peer``, and whether any socket has its address."""
        pids = self.build_pids()
        if self.namespace_pids():
            inodes = self._in_namespace(peer, protocol, pids)
            if inodes:
                return BuildPeer(holder_of(inodes, pids)), True
        inodes = self._host_sockets(peer, protocol, listener)
        pid = holder_of(inodes, pids)
        return (BuildPeer(pid) if pid is not None else None), bool(inodes)

    @staticmethod
    def _host_sockets(peer: Address, protocol: str, listener: Address | None) -> list[int]:
        if protocol == "tcp" and listener is not None:
            try:
                inode = tcp_client_inode(peer, listener)
            except (OSError, ValueError):
                pass  # no sock_diag here (an old kernel, a seccomp'd container): the tables
            else:
                return [inode] if inode is not None else []
        return sockets_of_peer(peer, protocol)

    def _in_namespace(self, peer: Address, protocol: str, pids: list[int]) -> list[int]:
        # The build's root names the namespace; once it has exited (leftovers still running),
        # any process of the build does: in sandbox mode they are all inside.
        for namespace_pid in [*self.namespace_pids(), *pids]:
            inodes = sockets_in_namespace(peer, protocol, namespace_pid, self.namespace_addresses)
            if inodes is not None:
                return inodes
        return []
