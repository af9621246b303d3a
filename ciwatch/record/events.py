"""The events of a provenance record.

Every event is a frozen dataclass with a ``kind``; the record writer adds the sequence
number, timestamp and job key when it appends the event. Strings that came from a traced
process (paths, argv) may hold bytes that are not UTF-8: they are decoded with
``surrogateescape`` (PEP 383) so that the record keeps them losslessly.
"""

from __future__ import annotations

from typing import ClassVar

from ciwatch.dataclass import dataclass, field
from ciwatch.modes import NetMode
from ciwatch.record.sharing import share_fields, shared_int, shared_str
from ciwatch.record.vocabulary import (
    AnomalyKind,
    ConnectVia,
    EventKind,
    FileOp,
    LeftoverOutcome,
    ReadHow,
    RefusedWhat,
    TlsHandling,
    Transport,
)


@dataclass(frozen=True, slots=True)
class Event:
    kind: ClassVar[EventKind]


@dataclass(frozen=True, slots=True)
class Header(Event):
    kind: ClassVar[EventKind] = EventKind.HEADER
    schema: int
    ciwatch_version: str
    host: str
    command: list[str]
    cwd: str
    started_at: str
    """ISO 8601 UTC time the run started."""
    job_context: dict[str, str]
    """The CI job's identifiers (provider, repository, run id...), see ``ciwatch.job``."""
    capabilities: dict[str, bool]
    """What this machine allowed the run to use (ptrace, seccomp, ...)."""
    net_mode: NetMode
    """``--net``: written as its value; rules ask its traits what the record can show."""
    path_dirs: list[str] = field(default_factory=list)
    """The build's PATH, for rules about executables written into it."""
    home: str = ""
    resolvers: list[str] = field(default_factory=list)
    """The DNS resolvers the machine is configured with (queries to others are a bypass)."""
    ci_env_files: dict[str, str] = field(default_factory=dict)
    """Files the job's environment names as carrying into later steps (``GITHUB_ENV`` ->
    its path, GitLab dotenv reports): paths, not values; a hook writing one is persistence."""
    out_dir: str = ""
    """``--out``, canonical: whatever the build does to anything in it is ``record-tamper``."""


@dataclass(frozen=True, slots=True)
class ProcessStart(Event):
    kind: ClassVar[EventKind] = EventKind.PROCESS_START
    pid: int
    ppid: int
    """The process that forked it (the tracer's view, not getppid after reparenting)."""


@dataclass(frozen=True, slots=True)
class ProcessExec(Event):
    kind: ClassVar[EventKind] = EventKind.PROCESS_EXEC
    pid: int
    path: str
    """The file that was executed, as an absolute path (a script, not its interpreter)."""
    exe: str
    """What the kernel runs: the interpreter of a script, ``/memfd:... (deleted)`` for a memfd."""
    argv: list[str]
    cwd: str
    env: dict[str, str] = field(default_factory=dict)
    """Values of the attribution variables only (see ``ciwatch.trace.attribution_env``)."""
    package: dict[str, str] = field(default_factory=dict)
    """Name and version read from the file system where the exec reveals a build hook
    (pip's PKG-INFO beside ``_in_process.py``, dpkg's status database for a maintainer
    script), at the moment of the exec."""
    from_tid: int | None = None
    """Set when a non-leader thread called exec (the kernel gave it the leader's pid)."""
    stdin: str = ""
    """What fd 0 is at exec (``pipe:[N]``, ``/dev/null``, a path): ``curl | sh`` shows as a
    shell whose stdin is the pipe another process writes."""
    stdout: str = ""

    def __post_init__(self) -> None:
        # Thousands of execs of the same few programs, in the same few directories.
        share_fields(self, ("pid",), ("path", "exe", "cwd", "stdin", "stdout"))
        if self.argv and type(self.argv[0]) is str:
            self.argv[0] = shared_str(self.argv[0])
        if self.env:
            object.__setattr__(self, "env", {shared_str(key): shared_str(value) for key, value in self.env.items()})


@dataclass(frozen=True, slots=True)
class ProcessExit(Event):
    kind: ClassVar[EventKind] = EventKind.PROCESS_EXIT
    pid: int
    exit_code: int | None
    signal: int | None


@dataclass(frozen=True, slots=True)
class FileWrite(Event):
    kind: ClassVar[EventKind] = EventKind.FILE_WRITE
    pid: int
    op: FileOp
    path: str
    """The file it is: canonical (``/proc/self``, magic links, symlinked directories and ``..``
    resolved in the process's view; the last component followed where the syscall follows it)."""
    target: str | None = None
    """The new name of a rename or link (canonical), the target text of a symlink."""
    flags: int | None = None
    """open flags, or the mode of chmod/creat."""
    as_written: str | None = None
    """The path as the process passed it, when that differs from ``path``."""
    target_as_written: str | None = None
    """The rename's or link's new name as passed, when that differs from ``target``."""

    def __post_init__(self) -> None:
        # Most of a record: the path is the file's own, the rest repeats (spelled out: this
        # runs at every stop that writes). The compiled loop makes its FileWrites without
        # __init__ (trace/_stopdecode.c: slots set, pid and flags shared the same way): what is
        # added here must be added there (tests/test_stop_decode.py compares them).
        object.__setattr__(self, "pid", shared_int(self.pid))
        if self.flags is not None:
            object.__setattr__(self, "flags", shared_int(self.flags))


@dataclass(frozen=True, slots=True)
class FileHash(Event):
    kind: ClassVar[EventKind] = EventKind.FILE_HASH
    path: str
    sha256: str
    size: int
    mode: int
    file_type: str
    """``elf``, ``script`` (starts with ``#!``) or ``executable`` (only the +x bit)."""
    written_by: int
    """The pid that last wrote it."""


@dataclass(frozen=True, slots=True)
class NetConnect(Event):
    kind: ClassVar[EventKind] = EventKind.NET_CONNECT
    pid: int
    family: str
    """``inet`` or ``inet6``."""
    address: str
    port: int
    protocol: Transport
    result: int | None
    """0, or the negative errno (``-115`` is EINPROGRESS for a non-blocking connect)."""
    via: ConnectVia = ConnectVia.DIRECT
    """Address and port stay the original destination when it went via the proxy."""
    inode: int = 0
    """The socket's inode (0 if unknown): ties later sends on it, from any process that
    inherited it, to this connect."""


@dataclass(frozen=True, slots=True)
class NetSend(Event):
    kind: ClassVar[EventKind] = EventKind.NET_SEND
    pid: int
    family: str
    address: str
    port: int
    protocol: Transport
    size: int


@dataclass(frozen=True, slots=True)
class DnsQuery(Event):
    kind: ClassVar[EventKind] = EventKind.DNS_QUERY
    pid: int
    name: str
    qtype: str
    server: str
    port: int


@dataclass(frozen=True, slots=True)
class DnsAnswer(Event):
    """A DNS exchange that passed ciwatch's DNS listener."""

    kind: ClassVar[EventKind] = EventKind.DNS_ANSWER
    pid: int | None
    name: str
    qtype: str
    rcode: str
    """``NOERROR``, ``NXDOMAIN``, ``SERVFAIL``, ``REFUSED``, or ``TIMEOUT`` when the upstream
    resolver didn't answer."""
    answers: list[str]
    """Addresses and names in the answer section (A, AAAA, CNAME)."""
    server: str
    """The resolver the query was meant for (and forwarded to); for ``doh`` the host asked."""
    transport: str = "udp"
    """How the query travelled: ``udp`` (ciwatch's DNS listener), ``tcp`` (a DNS stream through
    the proxy, any port), ``doh`` (a DNS-over-HTTPS request, wire or JSON), ``mitmproxy``
    (mitmproxy's own DNS layer), or ``lookup``: ciwatch's own resolution of a name a client
    claimed (Host, SNI) to check the address it connected to, not a lookup of the build. Only
    answers from the configured resolvers (and ``lookup``) teach the allowlist an address."""


@dataclass(frozen=True, slots=True)
class EgressFlow(Event):
    """One HTTP request through the proxy, or one connection where it isn't HTTP."""

    kind: ClassVar[EventKind] = EventKind.EGRESS_FLOW
    pid: int | None
    """The process that opened the connection (None if the proxy couldn't tell)."""
    host: str
    """The host the client asked for: the Host header or SNI, else the server address."""
    sni: str | None
    server_address: str
    server_port: int
    scheme: str
    """``http``, ``https``, ``tcp`` or ``tls`` (a connection that was not HTTP)."""
    method: str | None
    url: str | None
    """With credentials and token-like query values redacted."""
    status: int | None
    bytes_out: int
    bytes_in: int
    sha256: str | None
    """Of the response body as it came over the wire (before content decoding)."""
    content_type: str | None
    tls: TlsHandling
    error: str | None = None
    sha512: str | None = None
    """Also of the body: npm and yarn lockfiles pin tarballs by SHA-512 (``integrity``)."""
    refused: bool = False
    """Set when ciwatch refused the request (block mode)."""
    connected_to: str | None = None
    """The address the build's client connected to (the original destination, in ``redirect``
    and ``sandbox`` modes). The flow is judged by it together with ``host``: an allowed name is
    allowed only at an address it resolved to during the run. None when the client asked
    ciwatch's proxy by name (``env`` mode): the proxy's own resolution is the connection."""


@dataclass(frozen=True, slots=True)
class ProxyReady(Event):
    """The egress proxy's listeners (what ``redirect``/``env`` send traffic to)."""

    kind: ClassVar[EventKind] = EventKind.PROXY_READY
    mode: str
    listeners: list[str]
    mitmproxy_version: str
    upstream: str | None = None
    """The job's proxy (``HTTPS_PROXY``... in ciwatch's environment) as ``host:port``, never
    its credentials: ciwatch's own connections go out through it."""
    upstream_addresses: list[str] = field(default_factory=list)
    """The addresses of the job's proxies (every one its variables name), as ciwatch resolved
    them: the build's connections to them are judged by what they ask the proxy for."""


@dataclass(frozen=True, slots=True)
class RegistryAllowed(Event):
    """A registry the job's package managers are configured for (``registries: auto``),
    found before the build started. Kept in the record so that ``ciwatch check`` judges a
    replay with the same allowlist as the live run."""

    kind: ClassVar[EventKind] = EventKind.REGISTRY
    host: str
    ecosystem: str
    source: str


@dataclass(frozen=True, slots=True)
class AllowlistLearned(Event):
    """A download host named by an allowed index's response (an npm packument's tarball
    URL, a simple index's file link): allowed from then on."""

    kind: ClassVar[EventKind] = EventKind.ALLOWLIST_LEARNED
    host: str
    learned_from: str
    url: str


@dataclass(frozen=True, slots=True)
class HooksAllowed(Event):
    """Packages the project itself allows to run install hooks (npm allowScripts, pnpm
    onlyBuiltDependencies/allowBuilds, LavaMoat allowScripts)."""

    kind: ClassVar[EventKind] = EventKind.HOOKS_ALLOWED
    packages: list[str]
    source: str


@dataclass(frozen=True, slots=True)
class Refusal(Event):
    """Something ciwatch refused live (block mode): it never reached its destination."""

    kind: ClassVar[EventKind] = EventKind.REFUSAL
    pid: int | None
    what: RefusedWhat
    target: str
    reason: str
    rule: str | None = None
    """The id of the rule the refusal enforces (``unfamiliar-egress``, ``proxy-bypass``...):
    every refusal is a finding of that rule. None in records older than the field, whose
    ``reason`` starts with the rule's id."""


@dataclass(frozen=True, slots=True)
class FileRead(Event):
    """A hook's process opened a file that holds credentials, or read another process's
    memory or environment (hooks are followed syscall by syscall, so reads are seen)."""

    kind: ClassVar[EventKind] = EventKind.FILE_READ
    pid: int
    path: str
    how: ReadHow
    as_written: str | None = None
    """The path as the process passed it, when that differs from the canonical ``path``."""


@dataclass(frozen=True, slots=True)
class Anomaly(Event):
    kind: ClassVar[EventKind] = EventKind.ANOMALY
    pid: int
    anomaly: AnomalyKind
    detail: str


@dataclass(frozen=True, slots=True)
class Leftover(Event):
    kind: ClassVar[EventKind] = EventKind.LEFTOVER
    pid: int
    argv: list[str]
    action: LeftoverOutcome


@dataclass(frozen=True, slots=True)
class BuildServer(Event):
    """A process of the build connected to a local build server outside the traced tree (a
    Gradle daemon started before ciwatch): what the server does for it is not in the record."""

    kind: ClassVar[EventKind] = EventKind.BUILD_SERVER
    pid: int
    server_pid: int
    server: str
    """The known server's name (``Gradle daemon``), or what makes it one (``runs gcc``)."""
    argv: list[str]
    endpoint: str
    """Where the build reached it: ``tcp 127.0.0.1:41234``, ``unix /path``, ``unix @abstract``."""
