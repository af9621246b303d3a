"""``sandbox`` mode: the build runs in its own network namespace whose only way out is the proxy.

The build's root unshares a new (anonymous) network namespace before it execs. ciwatch
creates a veth pair with one end directly inside it, so both ends vanish with the namespace
when its last process exits, and nothing can be left behind: no named namespace, no veth,
no nftables table on the host. Inside, nftables sends every TCP connection and every DNS
query to the proxy's listeners on the host end and drops everything else; the host forwards
nothing for it. Loopback inside the namespace is the namespace's own: a build that needs a
service on the host's localhost uses ``--net redirect``.
"""

from __future__ import annotations

import ipaddress
import logging
import shutil
import subprocess

from ciwatch.capabilities import CAP_NET_ADMIN, CAP_SYS_ADMIN, has_capability
from ciwatch.dataclass import dataclass
from ciwatch.errors import EnvironmentNotSupported

log = logging.getLogger(__name__)

#: Link-local /30s and a ULA /64 per run, picked by pid so that concurrent runs differ.
_V4_BASE = ipaddress.IPv4Address("169.254.0.0")
_V6_PREFIX = "fd63:6977:6174"


@dataclass(frozen=True)
class SandboxAddresses:
    host4: str
    inside4: str
    host6: str
    inside6: str


def check_sandbox_possible() -> None:
    missing = []
    if not (has_capability(CAP_SYS_ADMIN) and has_capability(CAP_NET_ADMIN)):
        missing.append("CAP_SYS_ADMIN and CAP_NET_ADMIN (run as root, or sudo on a GitHub-hosted runner)")
    for tool, package in (("ip", "iproute2"), ("nft", "nftables"), ("nsenter", "util-linux")):
        if shutil.which(tool) is None:
            missing.append(f"`{tool}` (apt-get install {package})")
    if missing:
        raise EnvironmentNotSupported(
            "--net sandbox needs " + "; ".join(missing),
            hint="Install what is missing, or use --net redirect, which needs no privilege.",
        )


def _run(argv: list[str], stdin: str | None = None) -> None:
    done = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=30)
    if done.returncode != 0:
        raise EnvironmentNotSupported(f"sandbox set-up failed: {' '.join(argv[:6])}: {done.stderr.strip()}")


def _addresses_in_use() -> set[str]:
    done = subprocess.run(["ip", "-o", "addr"], capture_output=True, text=True, timeout=10)
    return {word.split("/")[0] for word in done.stdout.split() if "/" in word}


def _pick_addresses(pid: int) -> SandboxAddresses:
    in_use = _addresses_in_use()
    for attempt in range(64):
        slot = (pid + attempt) % 16000 + 64  # 169.254.0.0/24 and the top are left to others
        host4 = _V4_BASE + slot * 4 + 1
        if str(host4) in in_use:
            continue
        host6 = f"{_V6_PREFIX}:{slot:x}::1"
        return SandboxAddresses(str(host4), str(host4 + 1), host6, f"{_V6_PREFIX}:{slot:x}::2")
    raise EnvironmentNotSupported("no free address for the sandbox's link")


class Sandbox:
    def __init__(self, root_pid: int) -> None:
        self.root_pid = root_pid
        self.host_link = f"cw{root_pid}h"
        self.addresses = _pick_addresses(root_pid)

    def _inside(self, argv: list[str], stdin: str | None = None) -> None:
        _run(["nsenter", f"--net=/proc/{self.root_pid}/ns/net", *argv], stdin)

    def create_link(self) -> None:
        """The veth pair, its inside end born in the build's namespace; the host end up with
        the addresses the proxy will listen on."""
        a = self.addresses
        _run(["ip", "link", "add", self.host_link, "type", "veth", "peer", "name", "cw0", "netns", str(self.root_pid)])
        _run(["ip", "addr", "add", f"{a.host4}/30", "dev", self.host_link])
        _run(["ip", "-6", "addr", "add", f"{a.host6}/64", "dev", self.host_link, "nodad"])
        _run(["ip", "link", "set", self.host_link, "up"])

    def configure_inside(self, tcp: dict[str, int], dns: dict[str, int]) -> None:
        """Addresses and routes inside, and the nftables rules that send TCP and DNS to the
        proxy (``tcp``/``dns``: listener port by family) and drop everything else."""
        a = self.addresses
        self._inside(["ip", "link", "set", "lo", "up"])
        # Lets a query to a loopback resolver be sent to the proxy (DNAT out of 127/8).
        self._inside(["sysctl", "-q", "-w", "net.ipv4.conf.all.route_localnet=1"])
        self._inside(["ip", "addr", "add", f"{a.inside4}/30", "dev", "cw0"])
        self._inside(["ip", "-6", "addr", "add", f"{a.inside6}/64", "dev", "cw0", "nodad"])
        self._inside(["ip", "link", "set", "cw0", "up"])
        self._inside(["ip", "route", "add", "default", "via", a.host4])
        self._inside(["ip", "-6", "route", "add", "default", "via", a.host6])
        rules = f"""
table inet ciwatch {{
    chain redirect_to_proxy {{
        type nat hook output priority -100; policy accept;
        # DNS first: a resolver on loopback (systemd-resolved's 127.0.0.53) is the host's.
        meta nfproto ipv4 udp dport 53 dnat ip to {a.host4}:{dns["inet"]}
        meta nfproto ipv6 udp dport 53 dnat ip6 to [{a.host6}]:{dns["inet6"]}
        oifname "lo" accept
        meta nfproto ipv4 meta l4proto tcp dnat ip to {a.host4}:{tcp["inet"]}
        meta nfproto ipv6 meta l4proto tcp dnat ip6 to [{a.host6}]:{tcp["inet6"]}
    }}
    chain source_for_loopback_dns {{
        type nat hook postrouting priority 100; policy accept;
        oifname "cw0" ip saddr 127.0.0.0/8 snat ip to {a.inside4}
        oifname "cw0" ip6 saddr ::1 snat ip6 to {a.inside6}
    }}
    chain only_the_proxy {{
        type filter hook output priority 0; policy drop;
        oifname "lo" accept
        ip daddr {a.host4} accept
        ip6 daddr {a.host6} accept
        icmpv6 type {{ nd-neighbor-solicit, nd-neighbor-advert, nd-router-solicit }} accept
    }}
}}
"""
        self._inside(["nft", "-f", "-"], rules)

    def destroy(self) -> None:
        """Remove the host end now (it would go with the namespace, which leftover
        processes may keep alive)."""
        subprocess.run(["ip", "link", "del", self.host_link], capture_output=True, timeout=10)
