"""The network namespace that the test internet's servers live in, and its cleanup.

A session's namespace is ``ciwinet-<pid>``; its veth pair is ``ciwi<pid>h`` (host side) and
``ciwi<pid>n`` (namespace side). Session ``slot`` N uses 198.18.N.0/24 and fd00:c1:N+1::/64;
slot 0 is the common case (198.18.0.1 on the host, 198.18.0.2 in the namespace). Blackhole
routes for 198.18.0.0/15 and fd00:c1::/32 with a high metric are in place before any route to
the namespace exists, so a missing veth route drops the packet instead of handing it to the
default gateway. The blackholes stay while any ``ciwinet-*`` namespace exists.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

PREFIX = "ciwinet-"
LINK_PATTERN = re.compile(r"^ciwi(\d+)[hn]\d*$")
NAME_PATTERN = re.compile(r"^ciwinet-(\d+)(-\d+)?$")
BLACKHOLE_V4 = "198.18.0.0/15"
BLACKHOLE_V6 = "fd00:c1::/32"
BLACKHOLE_METRIC = "4000"
MAX_SLOTS = 200


class NetnsError(RuntimeError):
    pass


def ip(*args: str, stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(["ip", *args], input=stdin, capture_output=True, text=True, timeout=30)
    if check and result.returncode != 0:
        raise NetnsError(f"ip {' '.join(args)} failed ({result.returncode}): {result.stderr.strip()}")
    return result


def list_namespaces() -> list[str]:
    output = ip("netns", "list").stdout
    return [line.split()[0] for line in output.splitlines() if line.strip()]


def _pid_alive(pid: int) -> bool:
    """A live process that could own a test internet (a Python process)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return b"python" in cmdline or b"pytest" in cmdline


def namespace_owner(name: str) -> int | None:
    match = NAME_PATTERN.match(name)
    return int(match.group(1)) if match else None


def kill_namespace_processes(name: str) -> None:
    pids = ip("netns", "pids", name, check=False).stdout.split()
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, ValueError, PermissionError):
            os.kill(int(pid), 9)


def _links() -> list[str]:
    output = ip("-o", "link", "show").stdout
    names = []
    for line in output.splitlines():
        parts = line.split(":", 2)
        if len(parts) >= 2:
            names.append(parts[1].strip().split("@")[0])
    return names


def cleanup_stale() -> list[str]:
    """Remove what crashed sessions left: their namespaces, veths and (if unused) the blackholes.

    A namespace is stale when the process in its name is gone (or is no Python process).
    Returns the names removed.
    """
    removed = []
    for name in list_namespaces():
        owner = namespace_owner(name)
        if owner is None or owner == os.getpid() or _pid_alive(owner):
            continue
        kill_namespace_processes(name)
        ip("netns", "del", name, check=False)
        removed.append(name)
    for link in _links():
        match = LINK_PATTERN.match(link)
        if match and int(match.group(1)) != os.getpid() and not _pid_alive(int(match.group(1))):
            ip("link", "del", link, check=False)
            removed.append(link)
    remove_blackholes_if_unused()
    return removed


def add_blackholes() -> None:
    for family, prefix in (("-4", BLACKHOLE_V4), ("-6", BLACKHOLE_V6)):
        result = ip(family, "route", "add", "blackhole", prefix, "metric", BLACKHOLE_METRIC, check=False)
        if result.returncode != 0 and "File exists" not in result.stderr:
            if family == "-6" and not Path("/proc/sys/net/ipv6").exists():
                continue
            raise NetnsError(f"cannot add the blackhole route {prefix}: {result.stderr.strip()}")


def blackholes_present() -> list[str]:
    found = []
    for family, prefix in (("-4", BLACKHOLE_V4), ("-6", BLACKHOLE_V6)):
        if ip(family, "route", "show", "exact", prefix, check=False).stdout.strip():
            found.append(prefix)
    return found


def remove_blackholes_if_unused() -> None:
    if any(name.startswith(PREFIX) for name in list_namespaces()):
        return
    for family, prefix in (("-4", BLACKHOLE_V4), ("-6", BLACKHOLE_V6)):
        ip(family, "route", "del", "blackhole", prefix, "metric", BLACKHOLE_METRIC, check=False)


def _used_slots() -> set[int]:
    """The 198.18.N.0/24 that hold an address or a route already (ours or anyone's); the
    blackhole 198.18.0.0/15 itself does not count."""
    output = ip("-o", "-4", "addr", "show").stdout + ip("-4", "route", "show", "table", "all").stdout
    output = output.replace(BLACKHOLE_V4, "")
    return {int(match) for match in re.findall(r"\b198\.18\.(\d+)\.\d+", output)}


@dataclass
class Namespace:
    """The namespace, the veth pair and the addresses of one session."""

    name: str
    slot: int
    host_if: str
    ns_if: str
    extra_v4: list[str] = field(default_factory=list)
    extra_v6: list[str] = field(default_factory=list)
    ipv6: bool = True
    created: bool = False

    @property
    def host_v4(self) -> str:
        return f"198.18.{self.slot}.1"

    @property
    def ns_v4(self) -> str:
        return f"198.18.{self.slot}.2"

    @property
    def host_v6(self) -> str:
        return f"fd00:c1:{self.slot + 1:x}::1"

    @property
    def ns_v6(self) -> str:
        return f"fd00:c1:{self.slot + 1:x}::2"

    def v4(self, last: int) -> str:
        return f"198.18.{self.slot}.{last}"

    def v6(self, last: int) -> str:
        return f"fd00:c1:{self.slot + 1:x}::{last}"

    @classmethod
    def for_this_process(cls) -> Namespace:
        """Names and a free slot; the first of a process is ``ciwinet-<pid>``, later ones add ``-<n>``."""
        pid = os.getpid()
        used = _used_slots()
        slot = next((n for n in range(MAX_SLOTS) if n not in used), None)
        if slot is None:
            raise NetnsError("no free 198.18.N.0/24 for a test internet")
        existing = set(list_namespaces())
        for n in range(100):
            suffix = f"-{n}" if n else ""
            name = f"{PREFIX}{pid}{suffix}"
            if name not in existing:
                return cls(name=name, slot=slot, host_if=f"ciwi{pid}h{n or ''}", ns_if=f"ciwi{pid}n{n or ''}")
        raise NetnsError(f"too many test internets in process {pid}")

    def create(self, last_octets: list[int]) -> None:
        """The namespace, the blackholes, then the veth and addresses; ``last_octets`` are the
        hosts' addresses in the namespace (198.18.N.<octet>, fd00:c1:N+1::<octet>)."""
        if self.name in list_namespaces():
            raise NetnsError(f"namespace {self.name} exists already")
        ip("netns", "add", self.name)
        self.created = True
        add_blackholes()
        ip("link", "add", self.host_if, "type", "veth", "peer", "name", self.ns_if, "netns", self.name)
        self.ipv6 = self._enable_ipv6()
        self.extra_v4 = [self.v4(octet) for octet in last_octets]
        host_cmds = [f"addr add {self.host_v4}/24 dev {self.host_if}"]
        ns_cmds = ["link set lo up", f"addr add {self.ns_v4}/24 dev {self.ns_if}"]
        ns_cmds += [f"addr add {address}/32 dev {self.ns_if}" for address in self.extra_v4]
        if self.ipv6:
            self.extra_v6 = [self.v6(octet) for octet in last_octets]
            host_cmds.append(f"addr add {self.host_v6}/64 dev {self.host_if} nodad")
            ns_cmds.append(f"addr add {self.ns_v6}/64 dev {self.ns_if} nodad")
            ns_cmds += [f"addr add {address}/128 dev {self.ns_if} nodad" for address in self.extra_v6]
        host_cmds.append(f"link set {self.host_if} up")
        ns_cmds.append(f"link set {self.ns_if} up")
        ip("-n", self.name, "-batch", "-", stdin="\n".join(ns_cmds) + "\n")
        ip("-batch", "-", stdin="\n".join(host_cmds) + "\n")
        self._check_routes()

    def _enable_ipv6(self) -> bool:
        if not Path("/proc/sys/net/ipv6").exists():
            return False
        host = Path(f"/proc/sys/net/ipv6/conf/{self.host_if}/disable_ipv6")
        try:
            if host.read_text().strip() != "0":
                host.write_text("0")
        except OSError:
            return False
        conf = "/proc/sys/net/ipv6/conf"
        script = f"echo 0 > {conf}/{self.ns_if}/disable_ipv6 && echo 0 > {conf}/lo/disable_ipv6"
        result = subprocess.run(
            ["ip", "netns", "exec", self.name, "sh", "-c", script], capture_output=True, text=True, timeout=30
        )
        return result.returncode == 0

    def _check_routes(self) -> None:
        probes = [self.ns_v4, *self.extra_v4[:1]]
        if self.ipv6:
            probes += [self.ns_v6, *self.extra_v6[:1]]
        for address in probes:
            route = ip("route", "get", address, check=False)
            if f" dev {self.host_if} " not in route.stdout + " ":
                raise NetnsError(
                    f"the route to {address} does not go through {self.host_if}: "
                    f"{route.stdout.strip() or route.stderr.strip()}"
                )

    def destroy(self) -> None:
        if not self.created:
            return
        kill_namespace_processes(self.name)
        ip("link", "del", self.host_if, check=False)
        ip("netns", "del", self.name, check=False)
        self.created = False
        remove_blackholes_if_unused()

    def leftovers(self) -> list[str]:
        """What of this namespace is still there (empty after ``destroy``)."""
        left = []
        if self.name in list_namespaces():
            left.append(f"namespace {self.name}")
        links = _links()
        left += [f"link {link}" for link in (self.host_if, self.ns_if) if link in links]
        for family, prefix in (("-4", f"198.18.{self.slot}.0/24"), ("-6", f"fd00:c1:{self.slot + 1:x}::/64")):
            routes = ip(family, "route", "show", "exact", prefix, check=False).stdout.strip()
            if routes:
                left.append(f"route {routes}")
        return left
