"""The wrapper is faithful: exit codes, output and input pass through; bad input is explained."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from ciwatch.record.events import ProcessExec, ProcessExit
from tests.support.runner import ciwatch_command


def test_exit_code_passes_through(ciwatch):
    run = ciwatch("--", "sh", "-c", "exit 7")
    assert run.code == 7
    assert run.record.end is not None and run.record.end.exit_code == 7 and run.record.end.clean


def test_output_and_input_pass_through(ciwatch):
    run = ciwatch("--", "sh", "-c", "cat; echo out; echo err >&2", input=b"from stdin\n")
    assert run.code == 0
    assert run.stdout == "from stdin\nout\n"
    # The build's stderr untouched; then ciwatch's one closing line.
    build_err, closing = run.stderr.split("\n", 1)
    assert build_err == "err"
    assert closing.startswith("ciwatch: pass · 0 findings")


def test_death_by_signal_gives_128_plus_n(ciwatch):
    run = ciwatch("--", "sh", "-c", "kill -KILL $$")
    assert run.code == 128 + 9
    assert run.record.end.build_signal == 9


def test_command_not_found_exits_127_and_writes_a_record(ciwatch):
    run = ciwatch("--", "no-such-command-ciwatch")
    assert run.code == 127
    assert "no-such-command-ciwatch: command not found" in run.stderr
    assert run.record.end is not None and run.record.end.exit_code == 127


def test_non_executable_file_exits_126(ciwatch, tmp_path):
    script = tmp_path / "script.sh"
    script.write_text("#!/bin/sh\necho hi\n")
    run = ciwatch("--", str(script))
    assert run.code == 126
    assert "cannot execute" in run.stderr


def test_missing_double_dash_is_a_usage_error(ciwatch):
    run = ciwatch("sh", "-c", "true")
    assert run.code == 2
    assert "missing `--`" in run.stderr


def test_unknown_option_is_a_usage_error(ciwatch):
    run = ciwatch("--no-such-option", "--", "true")
    assert run.code == 2
    assert "No such option" in run.stderr


def test_unwritable_out_dir_fails_before_the_build(ciwatch, tmp_path):
    marker = tmp_path / "ran"
    blocker = tmp_path / "file"
    blocker.write_text("")
    run = ciwatch("--", "touch", str(marker), out_dir=blocker / "sub")
    assert run.code == 2
    assert "cannot write the record" in run.stderr
    assert not marker.exists()


def test_exec_and_exit_are_recorded(ciwatch):
    run = ciwatch("--", "sh", "-c", "/bin/true; exit 3")
    execs = run.events(ProcessExec)
    assert any(e.argv == ["/bin/true"] for e in execs)
    assert run.events(ProcessExit)[-1].exit_code == 3


# -- doctor ------------------------------------------------------------------------------------


def _doctor(*prefix: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*prefix, *ciwatch_command(), "doctor"], capture_output=True, text=True, timeout=120)


def test_doctor_exits_69_when_no_mode_works(monkeypatch):
    from click.testing import CliRunner

    from ciwatch import capabilities, cli
    from ciwatch.exitcodes import ENVIRONMENT_ERROR

    failing = [
        capabilities.Probe(name, False, "probed as failing")
        for name in ("python", "root", "ptrace + seccomp", "mitmproxy", "nftables", "network namespaces")
    ]
    monkeypatch.setattr(capabilities, "probe_all", lambda: failing)
    result = CliRunner().invoke(cli.main, ["doctor"])
    assert result.exit_code == ENVIRONMENT_ERROR, result.output
    assert "no --net mode works" in result.output


def test_doctor_exits_0_when_a_mode_works():
    done = _doctor()
    assert done.returncode == 0, done.stdout + done.stderr
    assert "--net redirect  works" in done.stdout


@pytest.mark.skipif(shutil.which("unshare") is None, reason="needs unshare (util-linux, installed by .ci/run)")
def test_doctor_does_not_claim_sandbox_inside_a_user_namespace():
    probe = subprocess.run(["unshare", "--user", "--map-root-user", "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip("this machine does not allow user namespaces")
    done = _doctor("unshare", "--user", "--map-root-user")
    assert "--net sandbox   unavailable" in done.stdout, done.stdout
    assert "user namespace" in done.stdout


def test_user_namespace_is_told_from_the_uid_map():
    from ciwatch.capabilities import user_namespace

    assert not user_namespace("         0          0 4294967295\n")
    assert user_namespace("         0       1000          1\n")
    assert user_namespace("         0     100000      65536\n")
