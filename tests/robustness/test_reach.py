"""The build can't reach into ciwatch's processes: their memory, descriptors and /proc files.

Issue: a build running as ciwatch's user (root, here) could not signal or ptrace ciwatch, but
could still write the tracer's memory with process_vm_writev (the record's pending events, the
policy), read the proxy's CA key with process_vm_readv, open /proc/<tracer>/mem for writing,
reopen the record through /proc/<tracer>/fd/N or take it with pidfd_getfd. Each route now
fails in the kernel (ciwatch is not dumpable, the build has no CAP_SYS_PTRACE), and the
syscalls among them are refused at their stop and recorded (targets-ciwatch), with
``--file-events ptrace`` and ``fanotify`` alike (where opens never stop).
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from ciwatch.record.events import Anomaly, FileWrite
from ciwatch.record.vocabulary import AnomalyKind
from ciwatch.trace.fanotify import unavailable_reason
from ciwatch.trace.unreachable import CAP_SYS_PTRACE
from tests.conftest import require
from tests.support.capabilities import drop_all_capabilities
from tests.support.runner import CiwatchRun, ciwatch_command

PROBE = Path(__file__).with_name("reach_probe.py")
NEEDS_ROOT = pytest.mark.skipif(os.geteuid() != 0, reason="the attacker of interest is root (as ciwatch)")
FILE_EVENTS = [
    "ptrace",
    pytest.param(
        "fanotify",
        marks=pytest.mark.skipif(unavailable_reason() is not None, reason=f"fanotify: {unavailable_reason()}"),
    ),
]


def _probe(ciwatch: Callable[..., CiwatchRun], tmp_path: Path, file_events: str) -> tuple[CiwatchRun, dict]:  # type: ignore[type-arg]
    # The build's own work goes on around the attempts: the probe's output, then a copy of it.
    result, copy = tmp_path / "result.json", tmp_path / "copy.json"
    script = f'"{sys.executable}" "{PROBE}" > "{result}" && cp "{result}" "{copy}"'
    run = ciwatch("--net", "off", "--file-events", file_events, "--", "sh", "-c", script, timeout=120)
    assert run.code == 0, run.stderr
    assert copy.read_text() == result.read_text()
    return run, json.loads(result.read_text())


@NEEDS_ROOT
@pytest.mark.parametrize("file_events", FILE_EVENTS)
def test_a_root_build_cannot_reach_into_ciwatch(
    ciwatch: Callable[..., CiwatchRun], tmp_path: Path, file_events: str
) -> None:
    run, found = _probe(ciwatch, tmp_path, file_events)
    reached = {route: outcome for route, outcome in found["routes"].items() if outcome != "refused"}
    assert not reached, reached
    assert all(found["own"].values()), found["own"]  # its own /proc entries, as ever
    assert str(tmp_path / "copy.json") in {event.path for event in run.events(FileWrite)}

    # The syscalls among the routes are in the record, each named with its target.
    refused = [e.detail for e in run.events(Anomaly) if e.anomaly is AnomalyKind.TARGETS_CIWATCH]
    tracer, front = found["tracer"], found["front"]
    for detail in (
        f"process_vm_readv(thread {tracer})",
        f"process_vm_writev(thread {tracer})",
        f"process_vm_readv(thread {front})",
        "pidfd_getfd(pidfd ",
        f"kcmp(thread {tracer})",
    ):
        assert any(line.startswith(detail) for line in refused), (detail, refused)

    verdict = json.loads((run.out_dir / "verdict.json").read_text())
    assert verdict["verdict"] == "fail"
    rules = {finding["rule"] for finding in verdict["findings"]}
    assert rules == {"tracer-evasion"}, rules


@NEEDS_ROOT
def test_the_build_has_cap_sys_ptrace_in_no_set(ciwatch: Callable[..., CiwatchRun]) -> None:
    # Not even in the bounding set: a setuid program (sudo) in the build can't get it back.
    run = ciwatch("--net", "off", "--", "grep", "^Cap", "/proc/self/status")
    assert run.code == 0, run.stderr
    sets = dict(line.split(":") for line in run.stdout.splitlines())
    assert set(sets) == {"CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"}
    assert int(sets["CapBnd"], 16) & (1 << 21), "CAP_SYS_ADMIN stays: only CAP_SYS_PTRACE goes"
    for name, value in sets.items():
        assert not int(value, 16) & (1 << CAP_SYS_PTRACE), name


@NEEDS_ROOT
def test_a_tracer_without_cap_sys_ptrace_still_seizes_the_build(tmp_path: Path) -> None:
    # ciwatch run as a user has no CAP_SYS_PTRACE: it can seize the build's root only because
    # the root, forked from a process that isn't dumpable, makes itself dumpable first.
    capsh = require("capsh")
    command = [*ciwatch_command(), "run", "--quiet", "--out", str(tmp_path / "out"), "--net", "off", "--"]
    command += ["sh", "-c", "echo built"]
    done = subprocess.run(
        [capsh, "--drop=cap_sys_ptrace", "--", "-c", shlex.join(command)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "built\n"


@NEEDS_ROOT
@pytest.mark.parametrize("privileged", [True, False], ids=["full-capabilities", "no-capabilities"])
def test_a_root_build_reads_another_root_process_only_without_privilege(
    ciwatch: Callable[..., CiwatchRun], privileged: bool
) -> None:
    # The kernel lets a process read another's memory only if the reader's capabilities
    # include the target's: without CAP_SYS_PTRACE, a root build can't read a root daemon that
    # has it (nor ciwatch), and still reads a process that holds no privilege.
    code = "import sys; print('ready', flush=True); sys.stdin.read()"
    other = subprocess.Popen(
        [sys.executable, "-c", code],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        preexec_fn=None if privileged else drop_all_capabilities,
    )
    try:
        assert other.stdout is not None and other.stdout.readline() == "ready\n"
        read = f"import os; os.close(os.open('/proc/{other.pid}/mem', os.O_RDONLY)); print('read')"
        run = ciwatch("--net", "off", "--", sys.executable, "-c", read)
    finally:
        other.kill()
        other.wait()
    if privileged:
        assert run.code != 0 and "PermissionError" in run.stderr, run.stderr
    else:
        assert run.code == 0 and run.stdout == "read\n", run.stderr


@NEEDS_ROOT
def test_ciwatch_run_as_a_user_is_out_of_its_build_s_reach_too(tmp_path: Path) -> None:
    # A build of the same user needs no capability at all to reach a dumpable process of its
    # user; as ciwatch isn't dumpable, every route fails there too. (The one capability kept,
    # CAP_DAC_READ_SEARCH, only lets the user read the interpreter and ciwatch where the tests
    # have them, under root's home.)
    setpriv = require("setpriv")
    tmp_path.chmod(0o777)
    out, result = tmp_path / "out", tmp_path / "result.json"
    as_user = [setpriv, "--reuid=nobody", "--regid=nogroup", "--clear-groups"]
    as_user += ["--inh-caps=+dac_read_search", "--ambient-caps=+dac_read_search"]
    command = [*as_user, *ciwatch_command(), "run", "--quiet", "--out", str(out), "--net", "off", "--"]
    command += ["sh", "-c", f'"{sys.executable}" "{PROBE}" > "{result}"']
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=120, env={**os.environ, "HOME": str(tmp_path)}
    )
    assert done.returncode == 0, done.stderr
    found = json.loads(result.read_text())
    reached = {route: outcome for route, outcome in found["routes"].items() if outcome != "refused"}
    assert not reached, reached
    assert all(found["own"].values()), found["own"]
