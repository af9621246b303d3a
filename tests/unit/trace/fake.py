"""A fake tracee for the decoders: memory as a dict of address -> bytes, a cwd and fds."""

from __future__ import annotations

import struct

from ciwatch.trace.decode import AT_FDCWD, canonicalise


class FakeMemory:
    """Implements :class:`ciwatch.trace.decode.MemoryReader`; ``put`` places bytes at a
    fresh address and returns it, as a tracee's buffers would be."""

    def __init__(
        self, cwd: str = "/work", fds: dict[int, str] | None = None, links: dict[str, str] | None = None, pid: int = 42
    ) -> None:
        self.links = links or {}
        """Symlinks (and magic links of /proc) of the fake file system: path -> text."""
        self.pid = pid
        self.regions: dict[int, bytes] = {}
        self._next = 0x10000
        self._cwd = cwd
        self.fds = fds or {}

    def put(self, data: bytes) -> int:
        address = self._next
        self.regions[address] = data
        self._next += (len(data) + 0x100) & ~0xF
        return address

    def put_str(self, text: str) -> int:
        return self.put(text.encode() + b"\0")

    def read_bytes(self, address: int, size: int) -> bytes:
        for base, data in self.regions.items():
            if base <= address < base + len(data):
                return data[address - base : address - base + max(size, 0)]
        return b""

    def read_cstring(self, address: int) -> bytes:
        data = self.read_bytes(address, 1 << 16)
        return data.split(b"\0", 1)[0]

    def read_u64(self, address: int) -> int | None:
        data = self.read_bytes(address, 8)
        return int(struct.unpack("<Q", data)[0]) if len(data) == 8 else None

    def cwd(self) -> str:
        return self._cwd

    def fd_path(self, fd: int) -> str:
        assert fd != AT_FDCWD
        return self.fds.get(fd, "")

    def canonical(self, path: str, follow: bool) -> str:
        return canonicalise(path, self.links.get, self.pid, self.pid, follow)


def unsigned(value: int) -> int:
    """An int as the kernel passes it in a syscall argument register."""
    return value & 0xFFFFFFFFFFFFFFFF


def args(*values: int) -> tuple[int, ...]:
    padded = [*values, *([0] * (6 - len(values)))]
    return tuple(unsigned(value) for value in padded)
