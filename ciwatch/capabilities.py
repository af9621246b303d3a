"""What this machine lets ciwatch do: probes shared by ``ciwatch doctor`` and the record header."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass

from ciwatch.modes import NetMode

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
        "mitmproxy": mitmproxy_version() is not None,
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
        "t=Tracer(events.append); t.start(root.pid, os.getpid()); release(root, os.environ)\n"
        "b=t.run_until_root_exits(); e=read_exec_error(root)\n"
        "print('ok' if b.exit_code==0 and e is None else f'fail {b} {e}')\n"
    )
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


def _probe_netns() -> Probe:
    if not has_capability(CAP_SYS_ADMIN) or not has_capability(CAP_NET_ADMIN):
        return Probe(
            "network namespaces",
            False,
            "needs CAP_SYS_ADMIN and CAP_NET_ADMIN",
            fix="Run as root (sudo on a GitHub-hosted runner) or in a privileged container.",
        )
    if shutil.which("ip") is None:
        return Probe("network namespaces", False, "`ip` not found", fix="apt-get install iproute2")
    done = subprocess.run(["unshare", "--net", "true"], capture_output=True, text=True)
    if done.returncode != 0:
        return Probe("network namespaces", False, done.stderr.strip(), fix="Allow unshare(CLONE_NEWNET).")
    return Probe("network namespaces", True, "unshare --net works")


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
