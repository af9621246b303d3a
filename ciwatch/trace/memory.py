"""Reading a stopped tracee's memory with process_vm_readv (one syscall per page), and
:class:`TraceeMemory`, the decoders' MemoryReader over one tracee."""

from __future__ import annotations

import ctypes
import os
from collections.abc import Callable

from ciwatch.trace import procfs
from ciwatch.trace.decode import canonicalise

_libc = ctypes.CDLL(None, use_errno=True)
_PAGE = os.sysconf("SC_PAGE_SIZE")


class _IoVec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]


_process_vm_readv = _libc.process_vm_readv
_process_vm_readv.argtypes = [
    ctypes.c_int,
    ctypes.POINTER(_IoVec),
    ctypes.c_ulong,
    ctypes.POINTER(_IoVec),
    ctypes.c_ulong,
    ctypes.c_ulong,
]
_process_vm_readv.restype = ctypes.c_ssize_t

_buffer = ctypes.create_string_buffer(_PAGE * 2)
_local = _IoVec(ctypes.cast(_buffer, ctypes.c_void_p), 0)
_remote = _IoVec(0, 0)


def read_bytes(pid: int, address: int, size: int) -> bytes:
    """Up to ``size`` bytes at ``address`` (fewer if the mapping ends); b"" if unreadable."""
    if address == 0 or size <= 0:
        return b""
    out = bytearray()
    while size > 0:
        chunk = min(size, len(_buffer))
        _local.len = chunk
        _remote.base = address
        _remote.len = chunk
        got = _process_vm_readv(pid, ctypes.byref(_local), 1, ctypes.byref(_remote), 1, 0)
        if got <= 0:
            break
        out += ctypes.string_at(_buffer, got)  # not .raw, which copies the whole buffer
        if got < chunk:
            break
        address += got
        size -= got
    return bytes(out)


def read_cstring(pid: int, address: int, limit: int = 65536) -> bytes:
    """The NUL-terminated string at ``address``, read page by page so that a string that
    ends just before an unmapped page is still read."""
    if address == 0:
        return b""
    out = bytearray()
    want = 256  # most paths fit: a first short read, then page by page
    while len(out) < limit:
        to_page_end = _PAGE - (address % _PAGE)
        chunk = read_bytes(pid, address, min(to_page_end, want))
        want = _PAGE
        if not chunk:
            break
        nul = chunk.find(b"\0")
        if nul >= 0:
            out += chunk[:nul]
            return bytes(out)
        out += chunk
        address += len(chunk)
    return bytes(out)


def read_u64(pid: int, address: int) -> int | None:
    data = read_bytes(pid, address, 8)
    return int.from_bytes(data, "little") if len(data) == 8 else None


_process_vm_writev = _libc.process_vm_writev
_process_vm_writev.argtypes = _process_vm_readv.argtypes
_process_vm_writev.restype = ctypes.c_ssize_t


def write_bytes(pid: int, address: int, data: bytes) -> bool:
    """Overwrite ``len(data)`` bytes of the tracee's memory (a sockaddr it passed us).

    process_vm_writev honours page protections; a sockaddr in read-only memory (a constant)
    is written with PTRACE_POKEDATA instead, which may write there, a word at a time."""
    if not data:
        return True
    source = ctypes.create_string_buffer(data, len(data))
    local = _IoVec(ctypes.cast(source, ctypes.c_void_p), len(data))
    remote = _IoVec(address, len(data))
    if _process_vm_writev(pid, ctypes.byref(local), 1, ctypes.byref(remote), 1, 0) == len(data):
        return True
    return _poke_bytes(pid, address, data)


def _poke_bytes(pid: int, address: int, data: bytes) -> bool:
    from ptrace import PtraceError
    from ptrace.binding.func import ptrace_peekdata, ptrace_pokedata

    start = address & ~7
    end = (address + len(data) + 7) & ~7
    try:
        for word_address in range(start, end, 8):
            word = bytearray((ptrace_peekdata(pid, word_address) & 0xFFFFFFFFFFFFFFFF).to_bytes(8, "little"))
            for index in range(8):
                position = word_address + index - address
                if 0 <= position < len(data):
                    word[index] = data[position]
            ptrace_pokedata(pid, word_address, int.from_bytes(word, "little"))
    except (PtraceError, OverflowError):
        return False
    return True


class TraceeMemory:
    """A :class:`ciwatch.trace.decode.MemoryReader` over one stopped thread: made once per
    thread, so that decoding a stop allocates nothing for it."""

    __slots__ = ("tid",)

    def __init__(self, tid: int) -> None:
        self.tid = tid

    def read_bytes(self, address: int, size: int) -> bytes:
        return read_bytes(self.tid, address, size)

    def read_cstring(self, address: int) -> bytes:
        return read_cstring(self.tid, address)

    def read_u64(self, address: int) -> int | None:
        return read_u64(self.tid, address)

    def cwd(self) -> str:
        return procfs.cwd(self.tid)

    def fd_path(self, fd: int) -> str:
        return procfs.fd_path(self.tid, fd)

    def write_bytes(self, address: int, data: bytes) -> bool:
        return write_bytes(self.tid, address, data)

    def canonical(self, path: str, follow: bool) -> str:
        # The fast path (every write stop pays it): the kernel resolves the directory in one
        # openat2, refusing magic links, and /proc/self/fd/N says where it landed; the last
        # component is read as a link only when the syscall would follow it. Anything that
        # touches /proc (the tracer's own /proc/self would answer for the wrong process) takes
        # the slow walk, which resolves /proc/self as the tracee's.
        head, _, last = path.rpartition("/")
        if _openat2 is not None:
            whole = not last or last == "." or last == ".."  # a directory itself (readdir opens ".")
            found = _resolved_directory(path if whole else head or "/", "" if whole or not follow else last)
            if found is not None and not found.startswith("/proc/"):
                return found if whole else f"{found.rstrip('/')}/{last}"
        ids = procfs.tgid_and_ppid(self.tid)
        return canonicalise(path, _readlink, ids[0] if ids else self.tid, self.tid, follow)


def _readlink(path: str) -> str | None:
    try:
        return os.readlink(path)
    except OSError:  # EINVAL (no link), ENOENT: nothing to follow
        return None


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]


_SYS_OPENAT2 = 437
_RESOLVE_NO_MAGICLINKS = 0x02
_AT_FDCWD = -100
_how = _OpenHow(os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC, 0, _RESOLVE_NO_MAGICLINKS)
_how_size = ctypes.sizeof(_how)


def _probe_openat2() -> Callable[..., int] | None:
    syscall = _libc.syscall
    syscall.restype = ctypes.c_long
    syscall.argtypes = [ctypes.c_long, ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p, ctypes.c_size_t]
    fd = syscall(_SYS_OPENAT2, _AT_FDCWD, b"/", ctypes.byref(_how), _how_size)
    if fd < 0:
        return None  # a kernel before 5.6: every path takes the slow walk
    os.close(fd)
    return syscall


_openat2 = _probe_openat2()


def _resolved_directory(directory: str, link: str) -> str | None:
    """Where the kernel lands for ``directory`` (None if it can't: absent, a magic link, not
    a directory, or ``link`` (a name in it) is a symlink, which the slow walk follows)."""
    assert _openat2 is not None
    fd = _openat2(_SYS_OPENAT2, _AT_FDCWD, os.fsencode(directory), ctypes.byref(_how), _how_size)
    if fd < 0:
        return None
    try:
        # readlinkat on the open directory: one component to look up, and -1 (no exception to
        # build) for the usual answer, "not a link"
        if link and _readlinkat(fd, os.fsencode(link), _link_buffer, 1) >= 0:
            return None
        return os.readlink(f"/proc/self/fd/{fd}")
    finally:
        os.close(fd)


_readlinkat = _libc.readlinkat
_readlinkat.restype = ctypes.c_ssize_t
_readlinkat.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_size_t]
_link_buffer = ctypes.create_string_buffer(1)
