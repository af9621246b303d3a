"""ciwatch's memory stays bounded whatever the traffic (issue 9, item 8): request and response
bodies stream through the proxy (hashed as they pass, never held whole), and the events kept
for the verdict cost a bounded, small amount each."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from mitmproxy import http
from mitmproxy.proxy.layers import http as http_layer
from mitmproxy.proxy.layers import tcp as tcp_layer

from ciwatch.analysis.tree import ProcessTree
from ciwatch.egress.addons.body import HELD_REQUEST_LIMIT, streams_request
from ciwatch.modes import NetMode
from ciwatch.policy.loader import default_policy
from ciwatch.record import RecordWriter, read_record
from ciwatch.record.closing import End
from ciwatch.record.events import (
    DnsQuery,
    EgressFlow,
    Event,
    FileWrite,
    Header,
    ProcessExec,
    ProcessExit,
    ProcessStart,
    Refusal,
)
from ciwatch.record.log import EventLog
from ciwatch.record.reader import Record, RecordedEvent
from ciwatch.record.vocabulary import FileOp
from ciwatch.rules import RULE_CATALOGUE
from ciwatch.verdict import evaluate
from tests.support.internet import EXFIL, TestInternet
from tests.test_rules import NPM_CLI, TODAY, WRITE, npm_env
from tests.unit.egress.test_addons import CLIENT, EVIL, REGISTRY, Proxy, _flow, _response, _tcp_flow

REPO = Path(__file__).resolve().parents[2]

MIB = 1024 * 1024
TRANSFER = 256 * MIB
"""Uploaded once and downloaded once through the proxy."""
TRACER_PEAK_BOUND = 400 * MIB
"""The tracing process (mitmproxy included) stays under this whatever the body sizes: before
bodies streamed, 256 MiB each way took it past 1 GB."""
PORT = 8080
BLOCK = bytes(range(256)) * 4096
"""What the server sends and the build uploads, repeated: 1 MiB."""

# A sink and a source of bodies, inside the test internet's namespace (stdlib only): POST reads
# the body and answers its size and SHA-256; GET /N sends N bytes of BLOCK.
_SERVER = """
import hashlib, http.server, socketserver, sys
BLOCK = bytes(range(256)) * 4096
class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *args):
        pass
    def _answer(self, body, length=None):
        self.send_response(200)
        self.send_header("Content-Length", str(len(body) if length is None else length))
        self.end_headers()
        self.wfile.write(body)
    def _chunks(self):
        if "Content-Length" in self.headers:
            left = int(self.headers["Content-Length"])
            while left:
                chunk = self.rfile.read(min(left, 1 << 20))
                if not chunk:
                    return
                left -= len(chunk)
                yield chunk
            return
        while size := int(self.rfile.readline().split(b";")[0], 16):
            yield self.rfile.read(size)
            self.rfile.readline()
        self.rfile.readline()
    def do_POST(self):
        size, digest = 0, hashlib.sha256()
        for chunk in self._chunks():
            digest.update(chunk)
            size += len(chunk)
        self._answer(f"{size} {digest.hexdigest()}".encode())
    do_PUT = do_POST
    def do_GET(self):
        size = int(self.path.rsplit("/", 1)[-1])
        self._answer(b"", size)
        while size:
            chunk = BLOCK[: min(size, len(BLOCK))]
            self.wfile.write(chunk)
            size -= len(chunk)
class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
server = Server((sys.argv[1], int(sys.argv[2])), Handler)
print("READY", flush=True)
server.serve_forever()
"""

# The build: uploads N bytes (with a Content-Length, then chunked), downloads N bytes, then
# prints what the server received and the tracing process's peak RSS (its parent: the tracer
# forks the build's root).
_BUILD = """
import http.client, json, os, sys
size, host, port = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
block = bytes(range(256)) * 4096
connection = http.client.HTTPConnection(host, port, timeout=600)
def body():
    for _ in range(size // len(block)):
        yield block
connection.request("POST", "/upload", body=body(), headers={"Content-Length": str(size)})
received = connection.getresponse().read().decode()
connection.request("PUT", "/upload", body=body(), encode_chunked=True)
received_chunked = connection.getresponse().read().decode()
connection.request("GET", f"/download/{size}")
response = connection.getresponse()
downloaded = 0
while chunk := response.read(1 << 20):
    downloaded += len(chunk)
status = open(f"/proc/{os.getppid()}/status").read().splitlines()
peak_kib = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
result = {"received": received, "received_chunked": received_chunked, "downloaded": downloaded}
print(json.dumps({**result, "tracer_peak": peak_kib * 1024}))
"""


def _expected_sha256(size: int) -> str:
    digest = hashlib.sha256()
    for _ in range(size // len(BLOCK)):
        digest.update(BLOCK)
    return digest.hexdigest()


@pytest.fixture
def body_server(internet: TestInternet) -> Iterator[tuple[str, int]]:
    address = internet.address_of(EXFIL).ipv4
    server = subprocess.Popen(
        ["ip", "netns", "exec", internet.namespace.name, sys.executable, "-c", _SERVER, address, str(PORT)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None and server.stdout.readline().strip() == "READY"
        yield address, PORT
    finally:
        server.kill()
        server.wait(timeout=10)


@pytest.mark.root
@pytest.mark.slow
def test_large_bodies_stream_through_the_proxy_in_bounded_memory(
    internet: TestInternet, body_server: tuple[str, int], tmp_path: Path
) -> None:
    address, port = body_server
    out = tmp_path / "out"
    command = [sys.executable, "-m", "ciwatch", "run", "--net", "redirect", "--out", str(out), "--"]
    command += [sys.executable, "-c", _BUILD, str(TRANSFER), address, str(port)]
    done = subprocess.run(command, env=internet.client_env(tmp_path / "home"), capture_output=True, timeout=900)
    assert done.returncode == 0, done.stderr.decode(errors="replace")[-4000:]
    result = json.loads(done.stdout.decode().strip().splitlines()[-1])
    expected = _expected_sha256(TRANSFER)
    # The bytes went through whole, both ways.
    assert result["received"] == result["received_chunked"] == f"{TRANSFER} {expected}"
    assert result["downloaded"] == TRANSFER
    flows = [item.event for item in read_record(out).events if isinstance(item.event, EgressFlow)]
    uploads = [flow for flow in flows if flow.method in ("POST", "PUT")]
    download = next(flow for flow in flows if flow.method == "GET")
    assert [(flow.bytes_out, flow.status) for flow in uploads] == [(TRANSFER, 200)] * 2
    assert download.bytes_in == TRANSFER and download.sha256 == expected
    print(f"tracer peak RSS {result['tracer_peak'] / MIB:.0f} MiB")
    assert result["tracer_peak"] < TRACER_PEAK_BOUND, f"tracer peak RSS {result['tracer_peak'] / MIB:.0f} MiB"


# -- bodies through the addons, as mitmproxy's HTTP and TCP layers call them -----------------


def _upload(host: str, size: int | None, content_type: str = "application/octet-stream") -> http.HTTPFlow:
    """A request whose headers came and whose body has not: ``size`` None is chunked."""
    flow = _flow(host, "/upload")
    request = flow.request
    request.method, request.data.content = "POST", None
    request.headers["content-type"] = content_type
    if size is None:
        request.headers.pop("content-length", None)
        request.headers["transfer-encoding"] = "chunked"
    else:
        request.headers["content-length"] = str(size)
    return flow


def test_which_request_bodies_stream() -> None:
    assert streams_request(_upload(REGISTRY, HELD_REQUEST_LIMIT + 1).request)
    assert streams_request(_upload(REGISTRY, None).request)
    assert not streams_request(_upload(REGISTRY, HELD_REQUEST_LIMIT).request)
    # DNS-over-HTTPS is judged by its names before it leaves: held whole, whatever its size.
    assert not streams_request(_upload(REGISTRY, 10 * MIB, "application/dns-message").request)
    in_url = _upload(REGISTRY, 10 * MIB).request
    in_url.path = "/resolve?name=secret.exfil.test&type=A"
    assert not streams_request(in_url)
    # HTTP/2 says whether a body comes only with the data: a POST without a length streams.
    h2 = _upload(REGISTRY, 0).request
    del h2.headers["content-length"]
    h2.http_version = "HTTP/2.0"
    assert streams_request(h2)
    h2.method = "GET"
    assert not streams_request(h2)


def test_a_large_upload_streams_counted_and_a_refused_one_is_cut_off_before_its_body() -> None:
    proxy = Proxy()  # block mode: REGISTRY allowed, EVIL not
    allowed = _upload(REGISTRY, 3 * MIB)
    proxy.hook(http_layer.HttpRequestHeadersHook(allowed))
    assert callable(allowed.request.stream), "the body passes in chunks, never held whole"
    for _ in range(3):
        assert allowed.request.stream(BLOCK) == BLOCK  # each chunk goes on unchanged
    allowed.request.stream(b"")
    assert allowed.request.raw_content is None
    proxy.hook(http_layer.HttpRequestHook(allowed))
    allowed.response = _response("text/plain")
    proxy.hook(http_layer.HttpResponseHeadersHook(allowed))
    proxy.hook(http_layer.HttpResponseHook(allowed))
    [record] = proxy.of(EgressFlow)
    assert isinstance(record, EgressFlow) and (record.bytes_out, record.refused) == (3 * MIB, False)

    # Refused on its headers: a streamed body would reach the server before the request hook.
    refused = _upload(EVIL, None)
    proxy.hook(http_layer.HttpRequestHeadersHook(refused))
    assert not callable(refused.request.stream) and refused.error is not None
    proxy.hook(http_layer.HttpErrorHook(refused))
    [refusal] = proxy.of(Refusal)
    assert isinstance(refusal, Refusal) and refusal.target == EVIL
    cut = proxy.of(EgressFlow)[-1]
    assert isinstance(cut, EgressFlow) and cut.host == EVIL and cut.refused and cut.bytes_out == 0


def test_a_long_tcp_stream_is_counted_without_keeping_its_messages() -> None:
    proxy = Proxy()
    flow = _tcp_flow(REGISTRY)
    flow.messages.clear()
    proxy.hook(tcp_layer.TcpStartHook(flow))
    for number in range(1000):
        from_client = number % 2 == 0  # (two zero bytes first: not the start of a DNS stream)
        flow.messages.append(tcp_layer.tcp.TCPMessage(from_client, b"\0\0" if from_client else b"abc"))
        proxy.hook(tcp_layer.TcpMessageHook(flow))
        assert len(flow.messages) == 1  # the one being sent; those before are gone
    proxy.hook(tcp_layer.TcpEndHook(flow))
    [record] = proxy.of(EgressFlow)
    assert isinstance(record, EgressFlow) and (record.bytes_out, record.bytes_in) == (1000, 1500)
    assert flow.client_conn.peername == CLIENT


# -- events held for the verdict -----------------------------------------------------------

EVENTS = 200_000
PEAK_BYTES_PER_EVENT = 360
"""Memory the verdict's inputs and evaluation take per event of a hook-heavy install
(bench/memory.py: files written by npm and by hooks, processes, downloads, and the paths the
tracer remembers), in the worst case where no file name repeats (``--unique-names``): about
300. It was over 520 while the writer kept (seq, time, event) tuples copied into a record's
list, before the record's compact event log (:mod:`ciwatch.record.log`)."""


def test_the_events_of_a_long_build_and_their_verdict_take_bounded_memory() -> None:
    command = [sys.executable, str(REPO / "bench" / "memory.py"), "--events", str(EVENTS), "--unique-names", "--json"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, check=True)
    result = json.loads(done.stdout)
    assert result["findings"] >= 1  # the hooks' writes were judged, not skipped
    assert result["peak_bytes_per_event"] < PEAK_BYTES_PER_EVENT, result


def _events_of_every_shape() -> list[Event]:
    """A file write of each form the log holds in columns or whole, among other events."""
    return [
        ProcessStart(100, 1),
        FileWrite(100, FileOp.OPEN, "/work/app/node_modules/a/index.js", flags=0o1101),
        FileWrite(100, FileOp.OPEN, "/work/app/node_modules/b/index.js", flags=0o1101),
        DnsQuery(100, "registry.example.test", "A", "10.0.0.2", 53),
        FileWrite(100, FileOp.CHMOD, "/work/app/node_modules/.bin/a", flags=0o755),
        FileWrite(100, FileOp.UNLINK, "/tmp/x"),  # no flags
        FileWrite(100, FileOp.RENAME, "/tmp/partial", target="/out/record.jsonl"),
        FileWrite(100, FileOp.OPEN, "/tmp/y", flags=0o1101, as_written="../tmp/y"),
        FileWrite(100, FileOp.SYMLINK, "/usr/local/bin/a", target="../lib/a"),
        FileWrite(1 << 40, FileOp.OPEN, "/tmp/big-pid"),  # beyond the columns' range: kept whole
        FileWrite(100, FileOp.OPEN, "/tmp/big-flags", flags=1 << 40),
        FileWrite(100, FileOp.OPEN, "/tmp/negative-flags", flags=-5),
        FileWrite(100, FileOp.OPEN, "relative/path"),
        FileWrite(100, FileOp.OPEN, "no-slash"),
        FileWrite(100, FileOp.OPEN, "/"),
        FileWrite(100, FileOp.OPEN, "/out/"),
        FileWrite(100, FileOp.OPEN, "/tmp/\udcff\u00e9.js"),  # not UTF-8 on disk, and not ASCII
        FileWrite(100, FileOp.MEMFD, "memfd:x"),
        ProcessExit(100, 0, None),
    ]


def test_the_event_log_gives_back_every_event_as_it_was_given() -> None:
    given = [RecordedEvent(10 + 3 * n, 1000.5 + n, event) for n, event in enumerate(_events_of_every_shape())]
    log = EventLog()
    for item in given:
        log.append(item)
    assert list(log) == given and len(log) == len(given)
    assert all(type(a.event) is type(b.event) for a, b in zip(log, given, strict=True))
    writes = [(item.seq, item.event) for item in given if isinstance(item.event, FileWrite)]
    assert list(log.file_writes()) == writes
    others = [(item.seq, item.event) for item in given if isinstance(item.event, DnsQuery | ProcessExit)]
    assert list(log.of(DnsQuery, ProcessExit)) == others
    assert list(log.objects()) == [item.event for item in given if not isinstance(item.event, FileWrite)]
    # Filtered by operation, and by path or target, before a write is made into an event.
    chmods_and_renames = [(seq, w) for seq, w in writes if w.op in (FileOp.CHMOD, FileOp.RENAME)]
    assert list(log.file_writes({FileOp.CHMOD, FileOp.RENAME})) == chmods_and_renames
    touching_out = [(seq, w) for seq, w in writes if w.path.startswith("/out") or (w.target or "").startswith("/out")]
    assert [w.path for _, w in touching_out] == ["/tmp/partial", "/out/"]
    assert list(log.file_writes(touching=lambda path: path.startswith("/out"))) == touching_out
    # Paths without the events.
    assert list(log.written_paths()) == [(seq, w.op, w.path, w.target) for seq, w in writes]
    assert [(seq, pid) for seq, pid, event in log.pids() if event is None] == [(seq, w.pid) for seq, w in writes]
    assert [event for _, _, event in log.pids() if event is not None] == list(log.objects())


def test_a_view_of_the_log_is_the_log_as_it_was() -> None:
    log = EventLog()
    for n, event in enumerate(_events_of_every_shape()):
        log.add(n + 1, 0.0, event)
    view = log.view()
    before = list(view)
    log.add(100, 0.0, FileWrite(100, FileOp.OPEN, "/tmp/later"))
    log.add(101, 0.0, DnsQuery(100, "later.example.test", "A", "10.0.0.2", 53))
    assert list(view) == before and len(view) == len(before) and len(log) == len(before) + 2
    assert list(view.file_writes(touching=lambda path: path == "/tmp/later")) == []
    assert [seq for seq, _ in log.file_writes(touching=lambda path: path == "/tmp/later")] == [100]
    with pytest.raises(TypeError):
        view.add(102, 0.0, ProcessExit(100, 0, None))


def test_the_live_verdict_is_the_verdict_of_the_record_read_back(tmp_path: Path) -> None:
    """The writer's compact log judged live gives what ``ciwatch check`` gives from the file,
    findings of every rule that reads file writes in the order of the writes."""
    home, project, out = "/home/ci", "/work/app", str(tmp_path / "out")
    writer = RecordWriter(tmp_path / "record.jsonl", "local:test@host/0")
    started, paths = "2026-03-01T00:00:00+00:00", ["/usr/local/bin", "/usr/bin"]
    header = Header(1, "test", "host", ["npm", "ci"], project, started, {}, {}, NetMode.REDIRECT, path_dirs=paths)
    writer.append(dataclasses.replace(header, home=home, out_dir=out))
    writer.append(ProcessStart(100, 1))
    writer.append(ProcessExec(100, "/usr/bin/node", "/usr/bin/node", ["node", NPM_CLI, "ci"], project))
    writer.append(ProcessStart(101, 100))
    hook_env = npm_env("evil", "1.0.0", "postinstall")
    writer.append(
        ProcessExec(101, "/bin/sh", "/bin/sh", ["sh", "-c", "node x.js"], f"{project}/node_modules/evil", hook_env)
    )
    writes = [
        (f"{home}/.bashrc", FileOp.OPEN, None),
        ("/etc/profile.d/evil.sh", FileOp.OPEN, None),
        (f"{home}/.profile", FileOp.OPEN, None),  # the home directory again, after /etc
        ("/usr/local/bin/evil", FileOp.OPEN, None),
        ("/usr/local/bin/evil", FileOp.CHMOD, None),
        ("/tmp/staged", FileOp.RENAME, f"{out}/verdict.json"),
        (f"{home}/.npmrc", FileOp.OPEN, None),
        ("/tmp/x", FileOp.SYMLINK, "/usr/local/bin/evil"),
    ]
    for path, op, target in writes:
        writer.append(FileWrite(101, op, path, target=target, flags=0o755 if op is FileOp.CHMOD else WRITE))
    for n in range(2000):  # npm's own files, outside the hook
        writer.append(FileWrite(100, FileOp.OPEN, f"{project}/node_modules/dep{n % 7}/file{n}.js", flags=WRITE))
    writer.append(ProcessStart(102, 101))
    writer.append(ProcessExec(102, "/tmp/x", "/usr/local/bin/evil", ["/tmp/x"], project))
    writer.append(End(exit_code=0, build_exit_code=0, build_signal=None, duration_s=1.0, event_counts={}, clean=True))
    policy = default_policy(known_rules=RULE_CATALOGUE)
    live = evaluate(writer.record(), policy, today=TODAY)
    writer.close()
    replayed = evaluate(read_record(tmp_path / "record.jsonl"), policy, today=TODAY)
    assert live.to_json() == replayed.to_json()
    persistence = [f.message.rsplit(": ", 1)[-1] for f in live.findings if f.rule == "persistence-write"]
    assert persistence == [f"{home}/.bashrc", "/etc/profile.d/evil.sh", f"{home}/.profile", f"{home}/.npmrc"]
    rules = {f.rule for f in live.findings}
    assert {"record-tamper", "executable-write", "exec-written-file"} <= rules, rules


def test_the_process_of_each_event_is_found_whatever_the_numbering() -> None:
    header = Header(1, "test", "host", ["true"], "/", "2026-01-01T00:00:00Z", {}, {}, NetMode.OFF)
    record = Record(header=header)
    # In order, a gap of framing lines, then numbers out of order (a record made by hand).
    seqs = [2, 3, 4, 200, 201, 7, 5000]
    record.events.append(RecordedEvent(1, 0.0, ProcessStart(100, 1)))
    for seq in seqs:
        record.events.append(RecordedEvent(seq, 0.0, FileWrite(100, FileOp.OPEN, f"/tmp/{seq}")))
    tree = ProcessTree(record)
    [root] = tree.roots
    assert all(tree.node_at(seq) is root for seq in [1, *seqs])
    assert tree.node_at(6) is None and tree.node_at(4999) is None and tree.node_at(0) is None
