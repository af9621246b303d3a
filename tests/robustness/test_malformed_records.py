"""A damaged record is a usage error (exit 2) naming the line and the field, for `check`,
`report` and `baseline` alike, never an internal error (exit 70); kinds and fields this ciwatch
doesn't know are skipped; memory stays bounded whatever a line holds."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner

from ciwatch import cli
from ciwatch.exitcodes import INTERNAL_ERROR, POLICY_FAILED, USAGE_ERROR
from ciwatch.modes import NetMode
from ciwatch.record import SCHEMA_VERSION, RecordWriter, read_record
from ciwatch.record.closing import AfterBuild, AfterBuildEnd, End
from ciwatch.record.codec import to_json_dict
from ciwatch.record.events import (
    AllowlistLearned,
    Anomaly,
    DnsAnswer,
    DnsQuery,
    EgressFlow,
    Event,
    FileHash,
    FileRead,
    FileWrite,
    Header,
    HooksAllowed,
    Leftover,
    NetConnect,
    NetSend,
    ProcessExec,
    ProcessExit,
    ProcessStart,
    ProxyReady,
    Refusal,
    RegistryAllowed,
)
from ciwatch.record.reader import MAX_LINE_BYTES
from ciwatch.record.vocabulary import (
    AnomalyKind,
    ConnectVia,
    FileOp,
    LeftoverOutcome,
    ReadHow,
    RefusedWhat,
    TlsHandling,
    Transport,
)
from tests.support.runner import ciwatch_command

_HOOK_ENV = {"npm_package_name": "evil-pkg", "npm_package_version": "1.0.0", "npm_lifecycle_event": "postinstall"}


def sample_events() -> list[Event]:
    """One event of every kind, shaped like an npm install whose hook misbehaves: the rules,
    the report and the baseline all have something to chew on."""
    hook_script = "/project/node_modules/evil-pkg/x.sh"
    return [
        Header(
            schema=SCHEMA_VERSION,
            ciwatch_version="test",
            host="host",
            command=["npm", "ci"],
            cwd="/project",
            started_at="2025-01-01T00:00:00+00:00",
            job_context={"provider": "local"},
            capabilities={"ptrace": True},
            net_mode=NetMode.REDIRECT,
            path_dirs=["/usr/bin", "/project/node_modules/.bin"],
            home="/home/u",
            resolvers=["10.0.0.53"],
            ci_env_files={"GITHUB_ENV": "/tmp/github_env"},
        ),
        RegistryAllowed(host="registry.example.internal", ecosystem="npm", source="npm config"),
        HooksAllowed(packages=["good-pkg"], source="package.json"),
        ProxyReady(mode="redirect", listeners=["127.0.0.1:4000"], mitmproxy_version="11", upstream=None),
        ProcessStart(pid=100, ppid=1),
        ProcessExec(
            pid=100, path="/usr/bin/node", exe="/usr/bin/node", argv=["node", "/usr/bin/npm", "ci"], cwd="/project"
        ),
        ProcessStart(pid=101, ppid=100),
        ProcessExec(
            pid=101, path="/bin/sh", exe="/bin/dash", argv=["sh", "-c", hook_script], cwd="/project", env=_HOOK_ENV
        ),
        FileWrite(pid=101, op=FileOp.CREAT, path="/project/node_modules/.bin/tool", flags=0o755, as_written="tool"),
        FileWrite(pid=101, op=FileOp.OPEN, path="/home/u/.bashrc", flags=1089),
        FileHash(
            path="/project/node_modules/.bin/tool",
            sha256="0" * 64,
            size=10,
            mode=0o755,
            file_type="script",
            written_by=101,
        ),
        FileRead(pid=101, path="/home/u/.npmrc", how=ReadHow.OPEN),
        DnsQuery(pid=101, name="exfil.example.net", qtype="A", server="10.0.0.53", port=53),
        DnsAnswer(
            pid=101, name="exfil.example.net", qtype="A", rcode="NOERROR", answers=["192.0.2.7"], server="10.0.0.53"
        ),
        NetConnect(
            pid=101,
            family="inet",
            address="192.0.2.7",
            port=443,
            protocol=Transport.TCP,
            result=0,
            via=ConnectVia.PROXY,
            inode=7,
        ),
        NetSend(pid=101, family="inet", address="192.0.2.8", port=53, protocol=Transport.UDP, size=40),
        EgressFlow(
            pid=101,
            host="exfil.example.net",
            sni="exfil.example.net",
            server_address="192.0.2.7",
            server_port=443,
            scheme="https",
            method="POST",
            url="https://exfil.example.net/x",
            status=200,
            bytes_out=10,
            bytes_in=5,
            sha256=None,
            content_type="text/plain",
            tls=TlsHandling.INTERCEPTED,
            connected_to="192.0.2.7",
        ),
        AllowlistLearned(
            host="files.example.internal",
            learned_from="registry.example.internal",
            url="https://files.example.internal/a.tgz",
        ),
        Refusal(
            pid=101, what=RefusedWhat.CONNECT, target="192.0.2.9:443", reason="not allowed", rule="unfamiliar-egress"
        ),
        Anomaly(pid=101, anomaly=AnomalyKind.RAW_SOCKET, detail="socket(AF_INET, SOCK_RAW)"),
        ProcessExit(pid=101, exit_code=0, signal=None),
        Leftover(pid=102, argv=["sleep", "100"], action=LeftoverOutcome.LEFT_RUNNING),
        ProcessExit(pid=100, exit_code=0, signal=None),
        End(
            exit_code=0,
            build_exit_code=0,
            build_signal=None,
            duration_s=1.5,
            event_counts={"process-exec": 2},
            clean=True,
        ),
        AfterBuild(pids=[102]),
        ProcessExec(pid=102, path="/usr/bin/curl", exe="/usr/bin/curl", argv=["curl", "http://192.0.2.7/"], cwd="/"),
        AfterBuildEnd(duration_s=2.0, event_counts={"process-exec": 1}, clean=True, verdict="fail"),
    ]


def write_sample_record(path: Path) -> Path:
    """The sample events written by the real RecordWriter; returns the record file."""
    writer = RecordWriter(path, "local:test@host/0")
    for event in sample_events():
        writer.append(event)
    writer.close()
    return path


def sample_lines(tmp_path: Path) -> list[str]:
    return write_sample_record(tmp_path / "sample.jsonl").read_text().splitlines()


# -- the commands, in process (fast) -------------------------------------------------------------

COMMANDS: dict[str, Callable[[Path], list[str]]] = {
    "check": lambda record: ["check", str(record)],
    "check-block": lambda record: ["check", "--mode", "block", str(record)],
    "report": lambda record: ["report", "--no-color", str(record)],
    "baseline": lambda record: ["baseline", str(record)],
}
#: What a readable record may give: a verdict (pass or fail) or a summary.
VERDICT_CODES = {0, POLICY_FAILED}


def invoke(command: str, record: Path) -> tuple[int, str]:
    """Exit code and stderr of ``ciwatch COMMAND RECORD`` run through the real CLI, in process."""
    result = CliRunner().invoke(cli.main, COMMANDS[command](record))
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exc_info
    return result.exit_code, result.stderr


def assert_refused(code: int, stderr: str, line: int, *fragments: str) -> None:
    assert code == USAGE_ERROR, stderr
    assert f" line {line}: " in stderr, stderr
    for fragment in fragments:
        assert fragment in stderr, stderr
    assert "hint: the record is damaged" in stderr.lower(), stderr
    assert all(ch.isprintable() for text in stderr.splitlines() for ch in text), repr(stderr[:300])
    assert len(stderr) < 2000, stderr[:300]


def test_the_sample_record_reads_and_fails_its_verdict(tmp_path: Path) -> None:
    record = write_sample_record(tmp_path / "record.jsonl")
    assert len(read_record(record).events) == len(sample_events()) - 4  # header, end, after-build(-end)
    # A refusal is a finding at fail-on severity, in any mode.
    assert invoke("check", record)[0] == POLICY_FAILED
    assert invoke("check-block", record)[0] == POLICY_FAILED
    assert invoke("report", record)[0] == 0
    assert invoke("baseline", record)[0] == 0


def _edit(line: str, **changes: object) -> str:
    data = json.loads(line)
    for key, value in changes.items():
        if value is _DELETE:
            del data[key]
        else:
            data[key] = value
    return json.dumps(data)


_DELETE = object()


def _line_of(seq: int, event: Event) -> str:
    return json.dumps({"seq": seq, "t": 1.0, "job": "local:test@host/0", **to_json_dict(event)})


#: (name, line index to replace (0-based), its replacement given the original, what the message says)
_LINE_DAMAGE: list[tuple[str, int, Callable[[str], str], tuple[str, ...]]] = [
    ("random bytes", 4, lambda _: "\udc8f\udcff\udcfe garbage", ("not UTF-8 text (byte 0x8f at column 1)",)),
    ("cut in the middle", 4, lambda line: line[: len(line) // 2], ("not JSON",)),
    ("an array", 4, lambda _: "[1, 2]", ("expected a JSON object, got an array of 2 item(s)",)),
    ("a string", 4, lambda _: '"hello"', ("expected a JSON object, got the string",)),
    ("no seq", 4, lambda line: _edit(line, seq=_DELETE), ("field `seq`: expected an integer, got nothing",)),
    ("seq a string", 4, lambda line: _edit(line, seq="5"), ('field `seq`: expected an integer, got the string "5"',)),
    ("seq true", 4, lambda line: _edit(line, seq=True), ("field `seq`: expected an integer, got true",)),
    ("t null", 4, lambda line: _edit(line, t=None), ("field `t`: expected a number, got null",)),
    ("t NaN", 4, lambda line: line.replace('"t":', '"t":NaN,"was_t":', 1), ("NaN",)),
    ("t 1e999", 4, lambda line: line.replace('"t":', '"t":1e999,"was_t":', 1), ("field `t`: expected a number",)),
    ("kind a number", 4, lambda line: _edit(line, kind=7), ("field `kind`: expected a string, got the number 7",)),
    (
        "pid null",
        4,
        lambda line: _edit(line, pid=None),
        ("field `pid`: expected an integer, got null", "process-start"),
    ),
    ("pid missing", 4, lambda line: _edit(line, pid=_DELETE), ("field `pid`: expected an integer, got nothing",)),
    ("pid 2**70", 4, lambda line: _edit(line, pid=2**70), ("field `pid`: expected an integer, got the number 1180",)),
    ("pid of 5000 digits", 4, lambda line: _edit(line, pid=_DELETE)[:-1] + ',"pid":' + "9" * 5000 + "}", ("digits",)),
    ("pid a float", 4, lambda line: _edit(line, pid=1.5), ("field `pid`: expected an integer, got the number 1.5",)),
    (
        "argv item",
        5,
        lambda line: _edit(line, argv=["node", 3]),
        ("field `argv[1]`: expected a string, got the number 3",),
    ),
    ("argv an object", 5, lambda line: _edit(line, argv={}), ("field `argv`: expected an array of strings",)),
    ("env value", 7, lambda line: _edit(line, env={"a": None}), ("field `env.a`: expected a string, got null",)),
    ("unknown op", 8, lambda line: _edit(line, op="explode"), ('field `op`: expected one of "open"', '"explode"')),
    ("net_mode", 0, lambda line: _edit(line, net_mode="warp"), ('field `net_mode`: expected one of "redirect"',)),
    (
        "header command",
        0,
        lambda line: _edit(line, command=_DELETE),
        ("field `command`: expected an array of strings",),
    ),
    ("end clean", 23, lambda line: _edit(line, clean="yes"), ("field `clean`: expected true or false",)),
    ("counts", 23, lambda line: _edit(line, event_counts={"x": 1.5}), ("field `event_counts.x`: expected an integer",)),
    (
        "deep nesting",
        4,
        lambda line: line[:-1] + ',"deep":' + "[" * 100_000 + "]" * 100_000 + "}",
        ("nested too deep",),
    ),
    ("a second header", 6, lambda _: _line_of(7, sample_events()[0]), ("a second `header` line",)),
    ("event before header", 0, lambda _: '{"seq":1,"t":1,"kind":"process-start","pid":1,"ppid":0}', ("before",)),
    (
        "control and bidi characters, megabytes of them",
        8,
        lambda line: _edit(line, op="\u202e\x1b[2J\x00" + "x" * 3_000_000),
        ("\\u202e\\x1b[2J\\x00x", "(3000006 characters)"),
    ),
    (
        "a long line of tiny arrays",
        4,
        lambda line: line[:-1] + ',"junk":[' + "[]," * 1_000_000 + "[]]}",
        ("holding over 1000000 values: not one ciwatch writes",),
    ),
]


@pytest.fixture(scope="module")
def lines(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    return sample_lines(tmp_path_factory.mktemp("sample"))


def _write(path: Path, lines: list[str]) -> Path:
    path.write_bytes(("\n".join(lines) + "\n").encode("utf-8", "surrogateescape"))
    return path


@pytest.mark.parametrize("command", sorted(COMMANDS))
@pytest.mark.parametrize(("damage", "index", "replace", "fragments"), _LINE_DAMAGE, ids=[d[0] for d in _LINE_DAMAGE])
def test_a_damaged_line_is_a_usage_error_naming_it(
    tmp_path: Path,
    lines: list[str],
    command: str,
    damage: str,
    index: int,
    replace: Callable[[str], str],
    fragments: tuple[str, ...],
) -> None:
    damaged = list(lines)
    damaged[index] = replace(lines[index])
    code, stderr = invoke(command, _write(tmp_path / "record.jsonl", damaged))
    assert_refused(code, stderr, index + 1, *fragments)


# -- what is not an error ------------------------------------------------------------------------


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_unknown_kinds_and_fields_are_skipped(tmp_path: Path, lines: list[str], command: str) -> None:
    """Forward compatible: a newer ciwatch's kinds and fields read as if they weren't there."""
    plain = invoke(command, _write(tmp_path / "plain.jsonl", lines))
    newer = list(lines)
    newer.insert(5, '{"seq":5,"t":1.0,"kind":"from-the-future","pid":{"deep":[1,[2]]},"what":null}')
    newer[6] = _edit(newer[6], a_new_field={"any": ["thing", None]}, another=None)
    record = _write(tmp_path / "newer.jsonl", newer)
    assert len(read_record(record).events) == len(read_record(tmp_path / "plain.jsonl").events)
    assert invoke(command, record)[0] == plain[0]


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_a_last_line_cut_by_a_kill_still_reads(tmp_path: Path, lines: list[str], command: str) -> None:
    cut = [*lines[:10], lines[10][:25]]
    path = tmp_path / "record.jsonl"
    path.write_text("\n".join(cut))  # no newline: the write was cut
    assert read_record(path).truncated_line
    assert invoke(command, path)[0] in VERDICT_CODES


def test_bytes_that_were_not_utf8_in_the_build_read_and_print(tmp_path: Path, lines: list[str]) -> None:
    """The writer keeps such bytes as lone surrogates (PEP 383): a record holding them in a
    package name, a path, an argv or a DNS name reads, and every command prints it."""
    odd = list(lines)
    odd[1] = _edit(odd[1], ecosystem="np\udcffm", host="reg\udcfe.example.internal")
    odd[7] = _edit(odd[7], argv=["sh", "-c", "/x\udcff.sh"], env={**_HOOK_ENV, "npm_package_name": "ev\udcffil"})
    odd[8] = _edit(odd[8], path="/project/node_modules/.bin/t\udcff")
    odd[12] = _edit(odd[12], name="ex\udcfffil.example.net")
    record = _write(tmp_path / "record.jsonl", odd)
    for command in COMMANDS:
        code, stderr = invoke(command, record)
        assert code in VERDICT_CODES, (command, stderr)


def test_an_argv_as_long_as_the_kernel_allows_reads(tmp_path: Path, lines: list[str]) -> None:
    """An exec's argv can be 6 MiB, each byte that isn't UTF-8 written as 6 (``\\udcff``): the
    build must not be able to make its own record unreadable."""
    long_argv = ["\udcff" * (128 * 1024 - 1)] * 48  # MAX_ARG_STRLEN each, 6 MiB in all
    many_args = ["\udcff"] * 600_000
    for name, argv in (("long", long_argv), ("many", many_args)):
        big = list(lines)
        big[5] = _edit(big[5], argv=argv)
        record = _write(tmp_path / f"{name}.jsonl", big)
        assert len(record.read_bytes()) > 3 * 1024 * 1024
        assert invoke("check", record)[0] == POLICY_FAILED


def test_an_empty_file_is_a_usage_error(tmp_path: Path) -> None:
    for content in (b"", b"\n\n  \n"):
        path = tmp_path / "record.jsonl"
        path.write_bytes(content)
        code, stderr = invoke("check", path)
        assert code == USAGE_ERROR
        assert "empty record (no header line)" in stderr


# -- bounded memory, and the real command line -----------------------------------------------------

#: The peak is VmHWM, this program's own: ru_maxrss would start from the size of the process
#: that forked it (a long test session's), which exec doesn't reset.
_PEAK_RSS = """
import sys
from pathlib import Path
from ciwatch.errors import UsageError
from ciwatch.record import read_record
try:
    read_record(Path(sys.argv[1]))
except UsageError as error:
    print(error, file=sys.stderr)
status = Path("/proc/self/status").read_text()
print(int(next(line for line in status.splitlines() if line.startswith("VmHWM:")).split()[1]) // 1024)
"""


#: name -> (opening, a piece repeated, how many times, closing): tens of MB, written piece by piece.
_JUNK = {
    "a 100 MB line": (b'"', b"a" * 1000, 100_000, b'"'),
    "60 MB of tiny arrays": (b"[", b"[]," * 1000, 20_000, b"[]]"),
    "60 MB of short strings": (b"[", b'"ab",' * 1000, 12_000, b'""]'),
}


@pytest.mark.parametrize("name", sorted(_JUNK))
def test_memory_stays_bounded_whatever_a_line_holds(tmp_path: Path, lines: list[str], name: str) -> None:
    """A line costs at most a few times MAX_LINE_BYTES, never 25 times its size once parsed
    (what ``[[],[],...]`` takes): measured in a process of its own."""
    opening, piece, times, closing = _JUNK[name]
    path = tmp_path / "record.jsonl"
    with path.open("wb") as stream:
        stream.write(("\n".join(lines[:3]) + "\n").encode())
        stream.write(b'{"seq":4,"t":1,"kind":"process-start","pid":1,"ppid":0,"junk":' + opening)
        for _ in range(times):
            stream.write(piece)
        stream.write(closing + b"}\n")
        stream.write(("\n".join(lines[3:]) + "\n").encode())
    result = subprocess.run([sys.executable, "-c", _PEAK_RSS, str(path)], capture_output=True, text=True, check=True)
    assert "line 4: " in result.stderr, result.stderr
    peak_mib = int(result.stdout)
    assert peak_mib < 5 * MAX_LINE_BYTES // (1024 * 1024), (name, peak_mib)


@pytest.mark.parametrize("command", ["check", "report", "baseline"])
def test_the_real_command_exits_2_naming_the_line(tmp_path: Path, lines: list[str], command: str) -> None:
    damaged = list(lines)
    damaged[9] = _edit(damaged[9], pid="101")
    record = _write(tmp_path / "record.jsonl", damaged)
    result = subprocess.run(
        [*ciwatch_command(), command, str(record)], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == USAGE_ERROR, result.stderr
    assert result.returncode != INTERNAL_ERROR
    assert f"{record} line 10: field `pid`: expected an integer, got the string " in result.stderr, result.stderr
