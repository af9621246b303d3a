"""Class 8 of issue 8: execution of a written file without exec'ing its path.

A real npm ``postinstall`` writes files without an execute bit and runs each through what
reads it: ``sh x.sh``, ``python3 x.py``, ``node x.js``, ``perl x.pl``, the dynamic loader
(``ld-linux-x86-64.so.2 ./t`` for an ELF copied without +x), and a ``#!`` script run from a
memfd by its /proc/self/fd/N path (tests/support/c/exec_memfd_script.c). Bare, each runs;
under ciwatch each is exec-written-file of the hook, and block mode fails the build.
The interpreters' command lines are read per interpreter (unit tests below): options that
take values, ``python -m`` (a module), ``node -e`` (code).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ciwatch.record.vocabulary import FileOp
from ciwatch.rules.exec_written_file import script_operands
from tests.support.attacks import DEFAULT_POLICY, POLICY_FAILED, STRICT_POLICY, assert_found, assert_replay_agrees
from tests.support.cprograms import program
from tests.support.hooks import HOOK, Hooks, run_bare
from tests.test_rules import PROJECT, Build, found

PACKAGE = "exec-chains"
LOADER = "/lib64/ld-linux-x86-64.so.2"

HOOK_SCRIPT = f"""\
printf 'echo ran-sh\\n' > x.sh && sh x.sh
printf 'print("ran-py")\\n' > x.py && python3 x.py
printf 'console.log("ran-node")\\n' > x.js && node x.js
printf 'print "ran-perl\\\\n";\\n' > x.pl && perl x.pl
cat /bin/true > t && {LOADER} ./t && echo ran-loader
"$EXEC_MEMFD_SCRIPT"
exit 0
"""
RAN = ("ran-sh", "ran-py", "ran-node", "ran-perl", "ran-loader", "ran-from-memfd")
WRITTEN = ("x.sh", "x.py", "x.js", "x.pl", "t")


def _env() -> dict[str, str]:
    return {"EXEC_MEMFD_SCRIPT": str(program("exec_memfd_script"))}


def test_each_chain_runs_bare(tmp_path: Path) -> None:
    done = run_bare(["sh", "-c", HOOK_SCRIPT], cwd=tmp_path, env=_env())
    assert done.stdout.split() == list(RAN), done.stderr
    assert not os.stat(tmp_path / "t").st_mode & 0o111  # run without an execute bit


@pytest.mark.npm
@pytest.mark.root
@pytest.mark.parametrize("policy", [DEFAULT_POLICY, STRICT_POLICY], ids=["audit", "block"])
def test_each_chain_is_exec_written_file(hooks: Hooks, tmp_path: Path, policy: Path) -> None:
    package = hooks.publish(PACKAGE, "sh chains.sh", files={"chains.sh": HOOK_SCRIPT})
    watched = hooks.install(package, policy=policy, env=_env(), foreground=True)
    assert watched.record_end_code == 0, watched.stderr[-3000:]
    findings = assert_found(watched, "exec-written-file", package, HOOK)
    messages = "\n".join(f["message"] for f in findings)
    package_dir = tmp_path / "project" / "node_modules" / PACKAGE
    for name in WRITTEN:
        assert f"{package_dir / name}, written by" in messages, (name, messages)
    assert "/proc/self/fd/" in messages  # the memfd script, run by its descriptor
    assert watched.verdict["verdict"] == "fail"
    assert watched.code == (POLICY_FAILED if policy == STRICT_POLICY else 0)
    assert_replay_agrees(watched)


@pytest.mark.parametrize(
    ("argv", "exe", "files"),
    [
        (["sh", "x.sh", "-l"], "/usr/bin/dash", ["x.sh"]),
        (["bash", "-e", "-o", "pipefail", "--", "x"], "/usr/bin/bash", ["x"]),
        (["bash", "--rcfile", "rc", "-i"], "/usr/bin/bash", ["rc", ""]),
        (["bash", "-ec", "sh y"], "/usr/bin/bash", []),
        (["busybox", "sh", "x"], "/usr/bin/busybox", ["x"]),
        (["python3", "-W", "ignore", "-u", "x.py", "arg"], "/usr/bin/python3.11", ["x.py"]),
        (["python3", "-m", "http.server"], "/usr/bin/python3.11", []),
        (["python3", "-Ic", "print(1)"], "/usr/bin/python3.11", []),
        (["node", "-r", "./pre.js", "--max-old-space-size=64", "x.js"], "/usr/bin/node", ["./pre.js", "x.js"]),
        (["node", "--require=./pre.js", "-e", "1"], "/usr/bin/node", ["./pre.js"]),
        (["node", "-e", "require('./x.js')"], "/usr/bin/node", []),
        (["bun", "run", "x.js"], "/usr/bin/bun", ["x.js"]),
        (["perl", "-w", "x.pl"], "/usr/bin/perl", ["x.pl"]),
        (["perl", "-le", "print 1"], "/usr/bin/perl", []),
        (["ruby", "-r", "./y.rb", "x.rb"], "/usr/bin/ruby", ["./y.rb", "x.rb"]),
        (["php", "-f", "x.php"], "/usr/bin/php", ["x.php"]),
        ([LOADER, "--library-path", "/l", "--preload", "/tmp/p.so", "./t"], LOADER, ["/tmp/p.so", "./t"]),
        (["innocent-name", "x.py"], "/usr/bin/python3.11", ["x.py"]),  # argv[0] is the caller's choice
    ],
)
def test_the_script_operand_is_read_per_interpreter(argv: list[str], exe: str, files: list[str]) -> None:
    assert script_operands(argv, exe) == files


def test_a_written_file_run_through_an_alias_or_an_interpreter_is_found(tmp_path: Path) -> None:
    build = Build(tmp_path)
    hook = build.hook("evil", "1.0.0")
    directory = f"{PROJECT}/node_modules/evil"
    written = hook.write(f"{directory}/stage2.py")
    python = hook.spawn(["python3", "/proc/self/cwd/stage2.py"], path="/usr/bin/python3.11", cwd=directory)
    [finding] = found(build.judge(), "exec-written-file")
    assert finding.evidence == (written, python.seq)
    assert finding.package == "evil@1.0.0"


def test_python_dash_m_and_node_dash_e_are_no_files(tmp_path: Path) -> None:
    build = Build(tmp_path)
    hook = build.hook("evil", "1.0.0")
    directory = f"{PROJECT}/node_modules/evil"
    hook.write(f"{directory}/x.py")
    hook.write(f"{directory}/x.js")
    hook.spawn(["python3", "-m", "x.py"], path="/usr/bin/python3", cwd=directory)
    hook.spawn(["node", "-e", "x.js"], path="/usr/bin/node", cwd=directory)
    assert not found(build.judge(), "exec-written-file")


def test_a_script_run_through_a_symlinked_directory_the_hook_made_is_found(tmp_path: Path) -> None:
    build = Build(tmp_path)
    hook = build.hook("evil", "1.0.0")
    written = hook.write("/tmp/real/stage2.sh")
    hook.write("/tmp/alias", FileOp.SYMLINK, target="real")
    runner = hook.spawn(["sh", "/tmp/alias/stage2.sh"], path="/usr/bin/dash")
    [finding] = found(build.judge(), "exec-written-file")
    assert finding.evidence == (written, runner.seq)


def test_a_file_written_under_usr_and_run_by_its_merged_usr_alias_is_found(tmp_path: Path) -> None:
    build = Build(tmp_path)
    hook = build.hook("evil", "1.0.0")
    hook.write("/usr/bin/helper")
    hook.spawn(["bash", "/bin/helper"], path="/usr/bin/bash")
    assert found(build.judge(), "exec-written-file")
