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

import pytest

from ciwatch.record.events import ProcessExec
from tests.support.attacks import POLICY_FAILED, assert_found, assert_replay_agrees, findings_of
from tests.support.cprograms import program
from tests.support.hooks import HOOK, Hooks, assert_exit, bare_probe, run_bare
from tests.support.internet import EVIL, TestInternet

pytestmark = [pytest.mark.npm, pytest.mark.root]

PROBE = "escape_probe"


#: (probe arguments, what the bare run prints, the anomaly's words in the finding)
BLINDING = {
    "listener": (["listener"], "listener continued syscall", "user-notification listener"),
    "unshare": (["unshare"], "unshare ok", "new network namespace"),
    "setns": (["setns", "/proc/self/ns/net"], "setns ok", "another network namespace"),
    "untraced": (["untraced", "/bin/echo"], "untraced child exited 0", "CLONE_UNTRACED"),
}


@pytest.mark.parametrize("case", sorted(BLINDING))
def test_a_way_out_is_judged_high_and_refused_in_block_mode(hooks: Hooks, case: str) -> None:
    args, works, words = BLINDING[case]
    assert works in bare_probe(PROBE, *args)
    audit, package = hooks.install_probe(PROBE, f"escape-{case}", args, under="audit")
    assert_exit(audit, 0)
    found = assert_found(audit, "tracer-evasion", package, HOOK)
    assert any(words in f["message"] and f["severity"] == "high" for f in found), audit.described()
    assert audit.verdict["verdict"] == "fail"
    assert_replay_agrees(audit)
    block, package = hooks.install_probe(PROBE, f"escape-{case}-b", args, under="block", mode="block")
    assert block.verdict["verdict"] == "fail" and block.code == POLICY_FAILED, block.described()
    assert f"{args[0]} failed: Operation not permitted" in block.output
    assert_found(block, "tracer-evasion", package, HOOK)
    assert_replay_agrees(block)


def test_an_untraced_clone_let_through_in_audit_mode_is_traced_anyway(hooks: Hooks) -> None:
    watched, _package = hooks.install_probe(PROBE, "escape-untraced", ["untraced", "/bin/echo"])
    assert "escaped-child" in watched.output
    execs = watched.events(ProcessExec)
    assert any(e.argv == ["/bin/echo", "escaped-child"] for e in execs), [e.argv for e in execs]


def test_a_filter_without_a_listener_is_low_and_not_refused(hooks: Hooks) -> None:
    assert "filter ok" in bare_probe(PROBE, "filter")
    for mode in (None, "block"):
        watched, package = hooks.install_probe(
            PROBE, f"own-filter-{mode or 'audit'}", ["filter"], under=str(mode), mode=mode
        )
        assert "filter ok" in watched.output
        (found,) = assert_found(watched, "tracer-evasion", package, HOOK)
        assert found["severity"] == "low" and "seccomp filter of its own" in found["message"]


def test_clone3_is_refused_with_enosys_so_libc_falls_back_to_clone(hooks: Hooks) -> None:
    assert "clone3 child exited 0" in bare_probe(PROBE, "clone3", "/bin/echo")
    watched, _package = hooks.install_probe(PROBE, "uses-clone3", ["clone3", "/bin/echo"])
    assert "clone3 failed: Function not implemented" in watched.output
    assert watched.code == 0 and not findings_of(watched, "tracer-evasion")


def test_joining_another_namespace_is_refused_in_sandbox_mode_even_in_audit(
    internet: TestInternet, hooks: Hooks, evil_ip: str
) -> None:
    """Bare, from a namespace of its own with no way out, the probe joins this test's network
    namespace and reaches evil.test; in the sandbox, setns fails and its connect goes through
    the sandbox's proxy instead (recorded and judged)."""
    args = ["setns", f"/proc/{os.getpid()}/ns/net", evil_ip, "80"]
    bare = run_bare(["unshare", "-n", str(program(PROBE)), *args])
    assert "setns ok" in bare.stdout and "reply HTTP/1." in bare.stdout, bare.stdout
    assert [r.path for r in internet.requests_to(EVIL)] == ["/escaped"]
    internet.reset_logs()
    watched, package = hooks.install_probe(PROBE, "sandbox-escape", args, net="sandbox")
    assert "setns failed: Operation not permitted" in watched.output
    assert_found(watched, "tracer-evasion", package, HOOK)
    assert_found(watched, "unfamiliar-egress", package, HOOK)  # its connect went via the sandbox's proxy
    assert_replay_agrees(watched)


def test_a_connect_from_another_namespace_is_refused_in_sandbox_mode(
    internet: TestInternet, hooks: Hooks, evil_ip: str
) -> None:
    """Defence in depth behind the refused setns: whatever namespace a process got into (here
    a new one, allowed in audit mode), its connect doesn't leave unless it is the sandbox's."""
    watched, package = hooks.install_probe(PROBE, "sandbox-unshare", ["unshare", evil_ip, "80"], net="sandbox")
    assert "unshare ok" in watched.output
    assert "connect failed: Operation not permitted" in watched.output
    found = assert_found(watched, "tracer-evasion", package, HOOK)
    assert any("not the sandbox's" in f["message"] for f in found), watched.described()
    assert internet.requests_to(EVIL) == []
