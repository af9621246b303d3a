"""Decoders of the syscalls that set up a way around the tracer or the proxy: a seccomp
filter of the tracee's own, another network namespace, an untraced child, a raw or packet
socket. Each gives an :class:`Escape` (the anomaly, and what block mode should do about it),
or None when the call is harmless after all (the filter's test is coarser than the decoder's).
"""

from __future__ import annotations

from typing import NamedTuple

from ciwatch.record.events import Anomaly
from ciwatch.record.vocabulary import AnomalyKind
from ciwatch.trace.decode import Args, MemoryReader, signed32

CLONE_UNTRACED = 0x00800000
CLONE_NEWNET = 0x40000000
_AF_PACKET = 17
_SOCK_PACKET = 10
_SECCOMP_SET_MODE_STRICT = 0
_SECCOMP_SET_MODE_FILTER = 1
_SECCOMP_FILTER_FLAG_NEW_LISTENER = 1 << 3
_FAMILIES = {1: "AF_UNIX", 2: "AF_INET", 10: "AF_INET6", 16: "AF_NETLINK", 17: "AF_PACKET"}


class Escape(NamedTuple):
    anomaly: Anomaly
    blinds: bool
    """Refused (EPERM) in block mode: what it sets up would take traffic or syscalls out of
    ciwatch's sight (a listener, a raw socket, another namespace, an untraced child)."""
    joins_namespace: bool = False
    """setns into a network namespace: refused in ``--net sandbox`` whatever the mode, since
    it is the one way out of the sandbox."""
    strip: int = 0
    """Flag bits of argument 0 to clear when the call is let through (audit mode): a clone
    without CLONE_UNTRACED is the same clone, but its child is traced."""


def _escape(
    pid: int, kind: AnomalyKind, detail: str, blinds: bool = True, joins_namespace: bool = False, strip: int = 0
) -> Escape:
    return Escape(Anomaly(pid=pid, anomaly=kind, detail=detail), blinds, joins_namespace, strip)


def decode_seccomp(pid: int, args: Args, mem: MemoryReader) -> Escape | None:
    operation, flags = args[0] & 0xFFFFFFFF, args[1] & 0xFFFFFFFF
    if operation == _SECCOMP_SET_MODE_FILTER and flags & _SECCOMP_FILTER_FLAG_NEW_LISTENER:
        # A listener's SECCOMP_USER_NOTIF_FLAG_CONTINUE lets a syscall run without the
        # tracer's stop (USER_NOTIF outranks TRACE): the real bypass.
        detail = f"seccomp(SECCOMP_SET_MODE_FILTER, flags={flags:#x}) with a user-notification listener"
        return _escape(pid, AnomalyKind.SECCOMP_LISTENER, detail)
    if operation in (_SECCOMP_SET_MODE_FILTER, _SECCOMP_SET_MODE_STRICT):
        # ERRNO, TRAP and KILL outrank TRACE, but the syscall then doesn't run at all.
        detail = f"seccomp(mode={'filter' if operation else 'strict'}, flags={flags:#x})"
        return _escape(pid, AnomalyKind.SECCOMP_FILTER, detail, blinds=False)
    return None  # SECCOMP_GET_ACTION_AVAIL, SECCOMP_GET_NOTIF_SIZES: questions only


def decode_prctl(pid: int, args: Args, mem: MemoryReader) -> Escape:
    # prctl can't ask for a listener: such a filter only makes syscalls fail.
    mode = args[1] & 0xFFFFFFFF
    detail = f"prctl(PR_SET_SECCOMP, mode={'filter' if mode == 2 else 'strict' if mode == 1 else mode})"
    return _escape(pid, AnomalyKind.SECCOMP_FILTER, detail, blinds=False)


def decode_setns(pid: int, args: Args, mem: MemoryReader) -> Escape | None:
    fd, nstype = signed32(args[0]), args[1] & 0xFFFFFFFF
    target = mem.fd_path(fd)
    # nstype 0 joins whatever namespace the fd is; a pidfd with flags joins several at once.
    if not nstype & CLONE_NEWNET and not (nstype == 0 and target.startswith("net:")):
        return None
    detail = f"setns({target or fd}, nstype={nstype:#x}) into another network namespace"
    return _escape(pid, AnomalyKind.NETWORK_NAMESPACE, detail, joins_namespace=True)


def decode_unshare(pid: int, args: Args, mem: MemoryReader) -> Escape:
    detail = f"unshare(flags={args[0] & 0xFFFFFFFF:#x}) into a new network namespace"
    return _escape(pid, AnomalyKind.NETWORK_NAMESPACE, detail)


def decode_clone(pid: int, args: Args, mem: MemoryReader) -> Escape:
    flags = args[0]
    if flags & CLONE_UNTRACED:
        detail = f"clone(flags={flags:#x}) with CLONE_UNTRACED: the child would not be traced"
        return _escape(pid, AnomalyKind.UNTRACED_CLONE, detail, strip=CLONE_UNTRACED)
    detail = f"clone(flags={flags:#x}) into a new network namespace"
    return _escape(pid, AnomalyKind.NETWORK_NAMESPACE, detail)


def decode_socket(pid: int, args: Args, mem: MemoryReader) -> Escape:
    family, kind, protocol = args[0] & 0xFFFFFFFF, args[1] & 0xF, args[2] & 0xFFFFFFFF
    name = _FAMILIES.get(family, str(family))
    if family == _AF_PACKET or kind == _SOCK_PACKET:
        detail = f"socket({name}, type={kind}, protocol={protocol:#x}): link-layer frames bypass routing and the proxy"
        return _escape(pid, AnomalyKind.PACKET_SOCKET, detail)
    detail = f"socket({name}, SOCK_RAW, protocol={protocol}): raw packets bypass the proxy"
    return _escape(pid, AnomalyKind.RAW_SOCKET, detail)


def decode_nothing(pid: int, args: Args, mem: MemoryReader) -> None:
    """clone3: the filter fails it with ENOSYS; it never reaches the tracer."""
    return None
