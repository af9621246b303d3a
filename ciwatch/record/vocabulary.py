"""The closed vocabularies of the record: every field whose values come from a fixed set is
one of these ``StrEnum``s (written as its value, read back by :mod:`ciwatch.record.codec`).
Add members; never rename or remove one (docs/record-format.md, compatibility)."""

from __future__ import annotations

from enum import StrEnum


class EventKind(StrEnum):
    HEADER = "header"
    PROCESS_START = "process-start"
    PROCESS_EXEC = "process-exec"
    PROCESS_EXIT = "process-exit"
    FILE_WRITE = "file-write"
    FILE_HASH = "file-hash"
    NET_CONNECT = "net-connect"
    NET_SEND = "net-send"
    DNS_QUERY = "dns-query"
    DNS_ANSWER = "dns-answer"
    EGRESS_FLOW = "egress-flow"
    PROXY_READY = "proxy-ready"
    REGISTRY = "registry"
    ALLOWLIST_LEARNED = "allowlist-learned"
    HOOKS_ALLOWED = "hooks-allowed"
    REFUSAL = "refusal"
    FILE_READ = "file-read"
    ANOMALY = "anomaly"
    LEFTOVER = "leftover-process"
    BUILD_SERVER = "build-server"
    """A build connected to a local build server that is not traced (started before ciwatch)."""
    END = "end"
    AFTER_BUILD = "after-build"
    """Opens the record's second segment, after ``end``: what processes left running did."""
    AFTER_BUILD_END = "after-build-end"


class FileOp(StrEnum):
    OPEN = "open"
    CREAT = "creat"
    RENAME = "rename"
    LINK = "link"
    SYMLINK = "symlink"
    CHMOD = "chmod"
    UNLINK = "unlink"
    MEMFD = "memfd"
    TRUNCATE = "truncate"
    """truncate(2) by path (ftruncate needs an fd a write-open gave, which is recorded)."""


class AnomalyKind(StrEnum):
    IO_URING = "io-uring"
    PTRACE = "ptrace"
    FOREIGN_ABI = "foreign-abi"
    MEMFD_EXEC = "memfd-exec"
    # Ways around the tracer or the proxy that the tracer sees being set up (tracer-evasion).
    RAW_SOCKET = "raw-socket"
    """socket() of type SOCK_RAW (any family): packets the proxy never sees."""
    PACKET_SOCKET = "packet-socket"
    """socket(AF_PACKET) or SOCK_PACKET: link-layer frames, under any routing or proxy."""
    NETLINK_CHANGE = "netlink-change"
    """A netlink message that changes routes, addresses, links, rules or netfilter."""
    SECCOMP_LISTENER = "seccomp-listener"
    """A seccomp filter with a user-notification listener: its answers outrank ciwatch's stops."""
    SECCOMP_FILTER = "seccomp-filter"
    """A seccomp filter without a listener: it can only make syscalls fail, not hide them."""
    NETWORK_NAMESPACE = "network-namespace"
    """setns, unshare or clone into another network namespace."""
    UNTRACED_CLONE = "untraced-clone"
    """clone(CLONE_UNTRACED): a child the tracer would not be attached to."""
    UNREADABLE_MESSAGE = "unreadable-message"
    """A sendmsg/sendmmsg whose message or destination could not be read, so not judged."""
    TARGETS_CIWATCH = "targets-ciwatch"
    """A signal, a ptrace call, or a call that reaches into memory or descriptors
    (process_vm_readv/writev, pidfd_getfd, kcmp, process_madvise) aimed at ciwatch's own
    processes: always refused (EPERM)."""


class Transport(StrEnum):
    """The transport of a connection or datagram."""

    TCP = "tcp"
    UDP = "udp"
    RAW = "raw"
    UNKNOWN = "unknown"
    """The socket's type could not be read (it was closed, or the process is gone)."""


class ConnectVia(StrEnum):
    DIRECT = "direct"
    """The connection went where the build asked."""
    PROXY = "proxy"
    """The tracer redirected it to ciwatch's proxy or DNS listener (``redirect`` mode)."""
    REFUSED = "refused"
    """Block mode failed the connect with EPERM: nothing left the machine."""


class ReadHow(StrEnum):
    """How a hook read what it read."""

    OPEN = "open"
    PROCESS_VM_READV = "process_vm_readv"
    PTRACE = "ptrace"


class RefusedWhat(StrEnum):
    """What block mode refused."""

    REQUEST = "request"
    CONNECT = "connect"
    DATAGRAM = "datagram"
    DNS = "dns"
    IO_URING = "io-uring"
    TLS = "tls"
    SYSCALL = "syscall"
    """A syscall that would blind the tracer (tracer-evasion): it failed with EPERM."""


class LeftoverOutcome(StrEnum):
    """What ciwatch did about a process still running when the build's root exited."""

    LEFT_RUNNING = "left-running"
    KILLED = "killed"
    WAITED = "waited"


class TlsHandling(StrEnum):
    INTERCEPTED = "intercepted"
    PASSTHROUGH = "passthrough"
    """The client rejected the run's CA (pinning, bundled roots): the bytes were passed
    through unread and the host is known by its SNI only."""
    NONE = "none"
    """Plain text (HTTP or another TCP protocol)."""
