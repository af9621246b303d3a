"""What this machine lets ciwatch do: probes shared by ``ciwatch doctor`` and the record header."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import sys
import time

from ciwatch.dataclass import dataclass
from ciwatch.modes import NetMode

# ``subprocess`` is imported by the probes that start processes (``ciwatch doctor``): the record
# header's facts start none, and ``ciwatch run --net off`` needs it nowhere else.

CAP_NET_ADMIN = 12
CAP_SYS_ADMIN = 21


def _effective_capabilities() -> int:
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("CapEff:"):
                    return int(line.split()[1], 16)
    except OSError:
        pass
    return 0


def has_capability(bit: int) -> bool:
    return bool(_effective_capabilities() & (1 << bit))


def mitmproxy_version() -> str | None:
    try:
        from mitmproxy import version
    except ImportError:
        return None
    return str(version.VERSION)


def for_record() -> dict[str, bool]:
    """Cheap facts for the record header (no processes started)."""
    return {
        "cap_sys_admin": has_capability(CAP_SYS_ADMIN),
        "cap_net_admin": has_capability(CAP_NET_ADMIN),
        "nft": shutil.which("nft") is not None,
        "ip": shutil.which("ip") is not None,
        # Found, not imported: importing mitmproxy's package costs every run ~10 ms.
        "mitmproxy": importlib.util.find_spec("mitmproxy") is not None,
    }


@dataclass(frozen=True)
class Probe:
    name: str
    ok: bool
    detail: str
    fix: str = ""


def _probe_trace() -> Probe:
    """Trace `true` for real: the one check that proves ptrace and seccomp both work."""
    code = (
        "import os,sys\n"
        "from ciwatch.trace import Tracer\n"
        "from ciwatch.trace.spawn import spawn_waiting, release, read_exec_error\n"
        "events=[]\n"
        "root=spawn_waiting(['true'])\n"
        "t=Tracer(events.extend); t.start(root.pid, os.getpid()); release(root, os.environ)\n"
        "b=t.run_until_root_exits(); e=read_exec_error(root)\n"
        "print('ok' if b.exit_code==0 and e is None else f'fail {b} {e}')\n"
    )
    import subprocess

    try:
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    except subprocess.TimeoutExpired:
        return Probe("ptrace + seccomp", False, "tracing `true` timed out")
    if done.stdout.strip() == "ok":
        return Probe("ptrace + seccomp", True, "traced `true` with the seccomp pre-filter")
    detail = (done.stdout + done.stderr).strip().splitlines()[-1:] or ["no output"]
    return Probe(
        "ptrace + seccomp",
        False,
        detail[0],
        fix="Allow ptrace and seccomp: in Docker, run with --cap-add SYS_PTRACE (or a seccomp profile "
        "that allows ptrace); check kernel.yama.ptrace_scope <= 1.",
    )


#: /proc/self/uid_map outside any user namespace: every uid maps to itself.
_IDENTITY_UID_MAP = ("0", "0", "4294967295")


def user_namespace(uid_map: str | None = None) -> bool:
    """Whether this process runs in a user namespace (a rootless container, ``unshare -U``):
    there, root's capabilities stop at the namespace, and the host's network isn't its own."""
    if uid_map is None:
        try:
            with open("/proc/self/uid_map") as file:
                uid_map = file.read()
        except OSError:
            return False
    return [line.split() for line in uid_map.splitlines() if line.strip()] != [list(_IDENTITY_UID_MAP)]


_TRIAL_RULES = """
table inet ciwatch_doctor {
    chain nat_out {
        type nat hook output priority -100; policy accept;
    }
}
"""


def _try_sandbox_setup() -> str | None:
    """Do what sandbox mode's set-up does, in a throwaway network namespace: a veth pair from
    here into it, an nftables NAT table and the route_localnet sysctl inside. None when all of it
    worked, else what failed. `unshare --net` alone succeeds in places (a user namespace) where
    the veth into this namespace is then refused, so only the whole set-up proves the mode."""
    import subprocess

    child = subprocess.Popen(["unshare", "--net", "--", "sleep", "30"], stderr=subprocess.PIPE, text=True)
    link = f"cwdoc{child.pid % 100000}"
    try:
        deadline = time.monotonic() + 5
        own = os.readlink("/proc/self/ns/net")
        while time.monotonic() < deadline:  # until unshare has made the namespace and exec'd sleep
            if child.poll() is not None:
                return f"unshare --net failed: {(child.stderr.read() if child.stderr else '').strip()}"
            with contextlib.suppress(OSError):
                if os.readlink(f"/proc/{child.pid}/ns/net") != own:
                    break
            time.sleep(0.01)
        else:
            return "unshare --net did not make a namespace in 5 s"
        inside = ["nsenter", f"--net=/proc/{child.pid}/ns/net"]
        for argv, stdin in (
            (["ip", "link", "add", link, "type", "veth", "peer", "name", "cw0", "netns", str(child.pid)], None),
            ([*inside, "nft", "-f", "-"], _TRIAL_RULES),
            ([*inside, "sysctl", "-q", "-w", "net.ipv4.conf.all.route_localnet=1"], None),
        ):
            done = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=10)
            if done.returncode != 0:
                what = " ".join(argv[2:] if argv[0] == "nsenter" else argv[:4])
                last = (done.stderr.strip().splitlines() or ["failed"])[-1]
                return f"{what}: {last[-200:]}"
        return None
    except (OSError, subprocess.TimeoutExpired) as error:
        return str(error)
    finally:
        subprocess.run(["ip", "link", "del", link], capture_output=True, timeout=10)
        child.kill()
        child.wait()


def _probe_netns() -> Probe:
    name = "network namespaces"
    if not has_capability(CAP_SYS_ADMIN) or not has_capability(CAP_NET_ADMIN):
        return Probe(name, False, "needs CAP_SYS_ADMIN and CAP_NET_ADMIN", fix=_NETNS_FIX)
    missing = [tool for tool in ("ip", "unshare", "nsenter", "nft", "sysctl") if shutil.which(tool) is None]
    if missing:
        return Probe(
            name, False, f"{', '.join(missing)} not found", fix="apt-get install iproute2 util-linux nftables procps"
        )
    if user_namespace():
        return Probe(
            name,
            False,
            "inside a user namespace (a rootless container or unshare -U): root here can't connect a "
            "namespace to the host's network",
            fix=_NETNS_FIX,
        )
    failed = _try_sandbox_setup()
    if failed is not None:
        return Probe(name, False, f"the sandbox set-up failed: {failed}", fix=_NETNS_FIX)
    return Probe(name, True, "made a namespace with a veth pair, an nftables table and route_localnet")


_NETNS_FIX = "Run as root (sudo on a GitHub-hosted runner) or in a privileged container, outside a user namespace."


def _probe_nft() -> Probe:
    path = shutil.which("nft")
    if path is None:
        return Probe("nftables", False, "`nft` not found", fix="apt-get install nftables")
    return Probe("nftables", True, path)


def _probe_mitmproxy() -> Probe:
    version = mitmproxy_version()
    if version is None:
        return Probe("mitmproxy", False, "not importable", fix="pip install 'mitmproxy>=11.0'")
    return Probe("mitmproxy", True, version)


def probe_all() -> list[Probe]:
    python = Probe("python", sys.version_info >= (3, 11), sys.version.split()[0], fix="Use CPython 3.11 or newer.")
    root = Probe("root", os.geteuid() == 0, f"euid {os.geteuid()}")
    return [python, root, _probe_trace(), _probe_mitmproxy(), _probe_nft(), _probe_netns()]


def modes_available(probes: list[Probe]) -> dict[NetMode, bool]:
    """Which ``--net`` modes this machine allows, the least demanding first."""
    ok = {probe.name: probe.ok for probe in probes}

    def works(mode: NetMode) -> bool:
        traits = mode.traits
        return (
            ok["ptrace + seccomp"]
            and (ok["mitmproxy"] or not traits.uses_proxy)
            and ((ok["nftables"] and ok["network namespaces"]) or not traits.network_namespace)
        )

    def demands(mode: NetMode) -> tuple[bool, bool, bool]:
        return (mode.traits.uses_proxy, mode.traits.network_namespace, mode.traits.tracer_redirects)

    return {mode: works(mode) for mode in sorted(NetMode, key=demands)}
