"""``ciwatch report``: its verdict line and sections on the record of a small real run, colour
only when asked, and the lineage text it is built from (``short_command``, ``ProcessTree.lineage``).
What it says of hooks, findings and executables written by a real npm install is
tests/firsthour/test_report_verdict.py's."""

from __future__ import annotations

import re
import subprocess
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from ciwatch.analysis.tree import ProcessTree, short_command
from ciwatch.attribution.hooks import HookAttribution
from ciwatch.policy.model import Policy
from ciwatch.record import SCHEMA_VERSION, RecordWriter, read_record
from ciwatch.record.closing import End
from ciwatch.record.events import Event, FileHash, FileWrite, Header, NetConnect, ProcessExec, ProcessExit, ProcessStart
from ciwatch.record.reader import Record
from ciwatch.record.vocabulary import FileOp
from ciwatch.report.model import build_report
from ciwatch.report.terminal import render
from ciwatch.verdict import evaluate
from tests.conftest import require
from tests.support.packages import LoopbackServers, loopback_servers
from tests.support.runner import CiwatchRun, ciwatch_command, run_ciwatch

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_SECTIONS = ["Hooks", "Executables and scripts written", "Network (hosts by hook)", "Anomalies and leftovers"]


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LoopbackServers]:
    with loopback_servers(tmp_path_factory.mktemp("report-servers")) as running:
        yield running


@pytest.fixture(scope="module")
def small_run(tmp_path_factory: pytest.TempPathFactory, servers: LoopbackServers) -> CiwatchRun:
    """A build that writes a script, runs it and fetches from a loopback server."""
    require("curl")
    work = tmp_path_factory.mktemp("report-run").resolve()
    script = textwrap.dedent(
        f"""\
        printf '#!/bin/sh\\necho built\\n' > ./tool.sh
        chmod +x ./tool.sh
        ./tool.sh
        curl -fsS --noproxy '*' -o /dev/null {servers.http_url}/report
        """
    )
    run = run_ciwatch(["--net", "off", "--", "sh", "-c", script], work / "out", cwd=work)
    assert run.code == 0, run.stderr
    assert run.stdout == "built\n"
    return run


def _report(out_dir: Path, *options: str) -> subprocess.CompletedProcess[str]:
    # Run beside the record: the verdict is judged with the policy of the working directory.
    return subprocess.run(
        [*ciwatch_command(), "report", *options, str(out_dir)],
        capture_output=True,
        text=True,
        check=False,
        cwd=out_dir.parent,
    )


def _render(record: Record) -> str:
    return render(build_report(record, evaluate(record, Policy())))


def test_report_of_a_real_run_has_every_section(small_run: CiwatchRun, servers: LoopbackServers) -> None:
    result = _report(small_run.out_dir, "--no-color")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    # The verdict first; verdict.json agrees with it (same policy), so nothing is said of it.
    assert lines[0] == "ciwatch verdict: pass (audit mode, policy <built-in default>, fail on high+): 0 findings"
    assert lines[1].startswith("ciwatch record: sh -c printf ")  # the multi-line script on one line
    assert lines[2].startswith("  job: local ")
    assert lines[3].startswith("  started: ") and lines[3].endswith(f" in {small_run.out_dir.parent} (--net off)")
    assert re.fullmatch(r"  finished: exit 0 -> exit code 0 in \d+\.\ds", lines[4]), lines[4]
    assert [line for line in lines if line in _SECTIONS] == _SECTIONS
    body = "\n".join(lines)
    assert "Hooks\n  no lifecycle hooks ran\n" in body
    tool = small_run.out_dir.parent / "tool.sh"
    assert body.count(f"\n  {tool} (script, sha256 ") == 1  # hashed when run, and at the end: listed once
    assert f"\n  outside hooks:\n    127.0.0.1:{servers.http_port} (local x1) by curl\n" in body
    assert body.endswith("Anomalies and leftovers\n  none")


def test_no_color_and_a_pipe_give_plain_text_and_color_gives_ansi(small_run: CiwatchRun) -> None:
    plain = _report(small_run.out_dir, "--no-color").stdout
    piped = _report(small_run.out_dir).stdout  # stdout is a pipe, not a terminal
    colored = _report(small_run.out_dir, "--color").stdout
    assert not _ANSI.search(plain)
    assert piped == plain
    assert _ANSI.search(colored)
    assert _ANSI.sub("", colored) == plain


def test_report_without_a_record_is_a_usage_error(tmp_path: Path) -> None:
    result = _report(tmp_path / "missing")
    assert result.returncode == 2
    assert "no record at" in result.stderr


# -- lineage text ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["node", "/usr/bin/npm", "install", "--no-audit"], "npm install"),
        (["node", "/usr/lib/node_modules/npm/bin/npm-cli.js", "ci"], "npm ci"),
        (["/venv/bin/python", "-m", "pip", "install", "--no-index", "pkg.tar.gz"], "pip install"),
        (["python3.11", "-u", "-c", "exec(...)", "bdist_wheel"], "python3.11 -u"),
        (["sh", "-c", "curl http://127.0.0.1/"], "sh -c"),
        (["sh", "./hook.sh", "postinstall"], "hook.sh"),
        (["node", "./fetch.js", "https://127.0.0.1/"], "fetch"),
        (["/usr/bin/curl", "-fsS", "http://127.0.0.1/"], "curl"),
        (["wget", "-q", "-O", "/dev/null", "http://127.0.0.1/"], "wget -q"),
        ([], "?"),
    ],
)
def test_short_command(argv: list[str], expected: str) -> None:
    assert short_command(argv) == expected


class _RecordBuilder:
    """A record written by the real RecordWriter from real event dataclasses."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.writer = RecordWriter(path, "local:test@host/0")
        self.writer.append(
            Header(
                schema=SCHEMA_VERSION,
                ciwatch_version="test",
                host="host",
                command=["npm", "ci"],
                cwd="/project",
                started_at="2025-01-01T00:00:00+00:00",
                job_context={"provider": "local"},
                capabilities={},
                net_mode="off",
            )
        )

    def add(self, event: Event) -> int:
        return self.writer.append(event)

    def start(self, pid: int, ppid: int) -> int:
        return self.add(ProcessStart(pid=pid, ppid=ppid))

    def exec(self, pid: int, argv: list[str], env: dict[str, str] | None = None) -> int:
        path = f"/usr/bin/{argv[0]}"
        return self.add(ProcessExec(pid=pid, path=path, exe=path, argv=argv, cwd="/project", env=env or {}))

    def finish(self) -> ProcessTree:
        self.writer.append(
            End(exit_code=0, build_exit_code=0, build_signal=None, duration_s=1.0, event_counts={}, clean=True)
        )
        self.writer.close()
        return ProcessTree(read_record(self.path))


def _npm_env(name: str, version: str, event: str) -> dict[str, str]:
    return {"npm_package_name": name, "npm_package_version": version, "npm_lifecycle_event": event}


def test_lineage_names_the_hook_skips_bare_forks_and_ignores_identity_set_below_a_hook(tmp_path: Path) -> None:
    record = _RecordBuilder(tmp_path / "record.jsonl")
    record.start(100, 1)
    record.exec(100, ["node", "/usr/bin/npm", "ci"])
    record.start(101, 100)
    hook_seq = record.exec(
        101, ["sh", "-c", "sh -c 'curl ...' & node install.js"], _npm_env("evil", "6.6.6", "postinstall")
    )
    record.start(102, 101)  # a subshell: forked, never exec'd
    record.start(103, 102)
    # A hook can give its children any environment: this must not start another hook.
    record.exec(103, ["curl", "-fsS", "http://127.0.0.1:8080/x"], _npm_env("innocent", "1.0.0", "install"))
    connect_seq = record.add(
        NetConnect(pid=103, family="inet", address="127.0.0.1", port=8080, protocol="tcp", result=0)
    )
    record.exec(101, ["node", "install.js"])  # the hook's own process exec'ing again stays the hook
    record.add(ProcessExit(pid=103, exit_code=0, signal=None))
    record.start(103, 100)  # the pid comes back as another process, outside the hook
    record.exec(103, ["git", "--version"])
    tree = record.finish()

    assert tree.hooks == [HookAttribution("npm", "evil", "6.6.6", "postinstall", pid=101, seq=hook_seq)]
    curl, reused = [node for node in tree.nodes if node.pid == 103]
    assert tree.lineage(curl) == "npm ci > postinstall of evil@6.6.6 > curl"
    assert tree.lineage_at(connect_seq) == "npm ci > postinstall of evil@6.6.6 > curl"
    hook_process = next(node for node in tree.nodes if node.pid == 101)
    assert hook_process.name == "install" and tree.lineage(hook_process) == "npm ci > postinstall of evil@6.6.6"
    assert reused.hook is None and tree.lineage(reused) == "npm ci > git"
    assert tree.lineage_at(10_000) == "?"

    report = _render(tree.record)
    assert "npm: postinstall of evil@6.6.6 -> curl" in report
    assert "  postinstall of evil@6.6.6:\n    127.0.0.1:8080 (local x1) by curl" in report


def test_lineage_of_a_pip_build_hook(tmp_path: Path) -> None:
    record = _RecordBuilder(tmp_path / "record.jsonl")
    record.start(200, 1)
    record.exec(200, ["/venv/bin/python", "-m", "pip", "install", "--no-index", "/dist/pkg-1.0.tar.gz"])
    record.start(201, 200)
    shim = "exec(compile('''...''' % ('/tmp/pip-req-build-abcdefgh/setup.py',), \"<pip-setuptools-caller>\", \"exec\"))"
    hook_seq = record.add(
        ProcessExec(
            pid=201,
            path="/venv/bin/python",
            exe="/usr/bin/python3.11",
            argv=["/venv/bin/python", "-u", "-c", shim, "bdist_wheel", "-d", "/tmp/pip-wheel-abcdefgh"],
            cwd="/tmp/pip-req-build-abcdefgh",
            package={"name": "pkg", "version": "1.0"},
        )
    )
    record.start(202, 201)
    record.exec(202, ["sh", "-c", "echo built > /tmp/mark"])
    tree = record.finish()

    assert tree.hooks == [HookAttribution("pip", "pkg", "1.0", "setup.py", pid=201, seq=hook_seq)]
    shell = next(node for node in tree.nodes if node.pid == 202)
    assert tree.lineage(shell) == "pip install > setup.py of pkg@1.0 > sh -c"


def test_control_characters_the_build_chose_cannot_rewrite_the_report(tmp_path: Path) -> None:
    """An escape sequence in argv or a package name would move the cursor over the verdict line."""
    record = _RecordBuilder(tmp_path / "record.jsonl")
    record.start(300, 1)
    record.exec(300, ["node", "/usr/bin/npm", "ci"])
    record.start(301, 300)
    record.exec(301, ["sh", "-c", "x"], _npm_env("evil\x1b[2J", "1.0.0", "postinstall"))
    record.start(302, 301)
    record.exec(302, ["\x1b[1A\x1b[2Kcurl\nok", "http://127.0.0.1/"])
    tree = record.finish()

    report = _render(tree.record)
    assert "\x1b" not in report and "\x07" not in report
    assert report.splitlines()[0].startswith("ciwatch verdict: ")
    assert "npm: postinstall of evil\\x1b[2J@1.0.0 -> \\x1b[1A\\x1b[2Kcurl ok" in report


def test_package_managers_are_named_once_and_a_symlink_is_not_the_writer_of_a_binary(tmp_path: Path) -> None:
    # apt-get runs dpkg several times (`dpkg --status-fd 15`); update-alternatives only links.
    record = _RecordBuilder(tmp_path / "record.jsonl")
    record.start(100, 1)
    record.exec(100, ["apt-get", "install", "-y", "nano"])
    for pid in (101, 102):
        record.start(pid, 100)
        record.exec(pid, ["dpkg", "--status-fd", "15", "--unpack", "nano.deb"])
    record.add(FileWrite(pid=102, op=FileOp.OPEN, path="/usr/bin/nano", flags=0o1101))
    record.start(103, 100)
    record.exec(103, ["update-alternatives", "--install", "/usr/bin/editor", "editor", "/usr/bin/nano", "40"])
    record.add(FileWrite(pid=103, op=FileOp.SYMLINK, path="/usr/bin/nano", target="/etc/alternatives/editor"))
    record.add(FileHash(path="/usr/bin/nano", sha256="ab" * 32, size=10, mode=0o755, file_type="elf", written_by=102))
    report = _render(record.finish().record)
    assert "package managers: apt-get, dpkg\n" in report
    nano = next(line for line in report.splitlines() if line.strip().startswith("/usr/bin/nano"))
    assert "dpkg" in nano and "update-alternatives" not in nano, nano
