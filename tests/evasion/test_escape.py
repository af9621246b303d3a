"""Getting out of the tracer's sight, from a real npm postinstall hook
(tests/support/c/escape_probe.c): a seccomp filter with a user-notification listener (whose
CONTINUE answers outrank ciwatch's stops), a filter without one, a new or another network
namespace, a child cloned with CLONE_UNTRACED, and clone3 (whose flags BPF can't read).

Each is shown to work bare, then recorded and judged by ``tracer-evasion`` naming the package
and hook (audit), then refused (block). In ``--net sandbox`` joining another network namespace
(the one way out of the sandbox) is refused whatever the mode.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from ciwatch.record import read_record
from ciwatch.record.events import ProcessExec
from tests.support.attacks import (
    DEFAULT_POLICY,
    POLICY_FAILED,
    Watched,
    assert_found,
    assert_replay_agrees,
    findings_of,
    npm_install,
    npm_project,
    watch,
)
from tests.support.cprograms import program
from tests.support.internet import EVIL, TestInternet

pytestmark = [pytest.mark.npm, pytest.mark.root]

HOOK = "postinstall"


def _bare(*args: str) -> str:
    done = subprocess.run([str(program("escape_probe")), *args], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


def _install(
    internet: TestInternet, tmp_path: Path, name: str, args: list[str], *, mode: str | None, net: str | None = None
) -> tuple[Watched, str]:
    command = " ".join([str(program("escape_probe")), *args])
    internet.publish_npm(name, "1.0.0", package_json_extra={"scripts": {HOOK: command}})
    watched = watch(
        internet,
        tmp_path / "home",
        npm_project(tmp_path / "project"),
        tmp_path / "out",
        [*npm_install(f"{name}@1.0.0"), "--foreground-scripts"],
        policy=DEFAULT_POLICY,
        mode=mode,
        net=net,
    )
    return watched, f"{name}@1.0.0"


def _output(watched: Watched) -> str:
    return watched.stdout + watched.stderr


#: (probe arguments, what the bare run prints, the anomaly's words in the finding)
BLINDING = {
    "listener": (["listener"], "listener continued syscall", "user-notification listener"),
    "unshare": (["unshare"], "unshare ok", "new network namespace"),
    "setns": (["setns", "/proc/self/ns/net"], "setns ok", "another network namespace"),
    "untraced": (["untraced", "/bin/echo"], "untraced child exited 0", "CLONE_UNTRACED"),
}


@pytest.mark.parametrize("case", sorted(BLINDING))
def test_a_way_out_is_judged_high_and_refused_in_block_mode(internet: TestInternet, tmp_path: Path, case: str) -> None:
    args, works, words = BLINDING[case]
    assert works in _bare(*args)
    audit, package = _install(internet, tmp_path / "audit", f"escape-{case}", args, mode=None)
    assert audit.code == 0, audit.stderr[-3000:]
    found = assert_found(audit, "tracer-evasion", package, HOOK)
    assert any(words in f["message"] and f["severity"] == "high" for f in found), audit.described()
    assert audit.verdict["verdict"] == "fail"
    assert_replay_agrees(audit)
    block, package = _install(internet, tmp_path / "block", f"escape-{case}-b", args, mode="block")
    assert block.verdict["verdict"] == "fail" and block.code == POLICY_FAILED, block.described()
    assert f"{args[0]} failed: Operation not permitted" in _output(block)
    assert_found(block, "tracer-evasion", package, HOOK)
    assert_replay_agrees(block)


def test_an_untraced_clone_let_through_in_audit_mode_is_traced_anyway(internet: TestInternet, tmp_path: Path) -> None:
    watched, _package = _install(internet, tmp_path, "escape-untraced", ["untraced", "/bin/echo"], mode=None)
    assert "escaped-child" in _output(watched)
    execs = [e.event for e in read_record(watched.out).events if isinstance(e.event, ProcessExec)]
    assert any(e.argv == ["/bin/echo", "escaped-child"] for e in execs), [e.argv for e in execs]


def test_a_filter_without_a_listener_is_low_and_not_refused(internet: TestInternet, tmp_path: Path) -> None:
    assert "filter ok" in _bare("filter")
    for mode in (None, "block"):
        watched, package = _install(
            internet, tmp_path / str(mode), f"own-filter-{mode or 'audit'}", ["filter"], mode=mode
        )
        assert "filter ok" in _output(watched)
        (found,) = assert_found(watched, "tracer-evasion", package, HOOK)
        assert found["severity"] == "low" and "seccomp filter of its own" in found["message"]


def test_clone3_is_refused_with_enosys_so_libc_falls_back_to_clone(internet: TestInternet, tmp_path: Path) -> None:
    assert "clone3 child exited 0" in _bare("clone3", "/bin/echo")
    watched, _package = _install(internet, tmp_path, "uses-clone3", ["clone3", "/bin/echo"], mode=None)
    assert "clone3 failed: Function not implemented" in _output(watched)
    assert watched.code == 0 and not findings_of(watched, "tracer-evasion")


def test_joining_another_namespace_is_refused_in_sandbox_mode_even_in_audit(
    internet: TestInternet, tmp_path: Path
) -> None:
    """Bare, from a namespace of its own with no way out, the probe joins this test's network
    namespace and reaches evil.test; in the sandbox, setns fails and its connect goes through
    the sandbox's proxy instead (recorded and judged)."""
    evil = internet.address_of(EVIL).ipv4
    outside = f"/proc/{os.getpid()}/ns/net"
    bare = subprocess.run(
        ["unshare", "-n", str(program("escape_probe")), "setns", outside, evil, "80"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "setns ok" in bare.stdout and "reply HTTP/1." in bare.stdout, bare.stdout
    assert [r.path for r in internet.requests_to(EVIL)] == ["/escaped"]
    internet.reset_logs()
    args = ["setns", outside, evil, "80"]
    watched, package = _install(internet, tmp_path, "sandbox-escape", args, mode=None, net="sandbox")
    assert "setns failed: Operation not permitted" in _output(watched)
    assert_found(watched, "tracer-evasion", package, HOOK)
    assert_found(watched, "unfamiliar-egress", package, HOOK)  # its connect went via the sandbox's proxy
    assert_replay_agrees(watched)


def test_a_connect_from_another_namespace_is_refused_in_sandbox_mode(internet: TestInternet, tmp_path: Path) -> None:
    """Defence in depth behind the refused setns: whatever namespace a process got into (here
    a new one, allowed in audit mode), its connect doesn't leave unless it is the sandbox's."""
    evil = internet.address_of(EVIL).ipv4
    args = ["unshare", evil, "80"]
    watched, package = _install(internet, tmp_path, "sandbox-unshare", args, mode=None, net="sandbox")
    assert "unshare ok" in _output(watched)
    assert "connect failed: Operation not permitted" in _output(watched)
    found = assert_found(watched, "tracer-evasion", package, HOOK)
    assert any("not the sandbox's" in f["message"] for f in found), watched.described()
    assert internet.requests_to(EVIL) == []
