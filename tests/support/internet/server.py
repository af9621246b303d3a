"""The test internet's servers, run inside the fixture's network namespace (stdlib only).

    ip netns exec NS python3 -m tests.support.internet.server CONFIG.json

One process serves every host: HTTP on port 80 and HTTPS on 443 at each host's own addresses,
UDP recorders, and the DNS server on UDP and TCP port 53. Every HTTP request, DNS query and
UDP datagram is appended to a JSON-lines log before it is answered, so a client that got its
answer can read its own entry back at once. Published packages are read from the data
directory at each request: the fixture publishes by writing files. The process prints
``READY`` once every socket is bound, and exits when its standard input closes (the fixture
went away, however it went).
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import os
import socket
import socketserver
import ssl
import struct
import sys
import threading
import time
import traceback
import urllib.parse
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

from tests.support.internet import dns
from tests.support.internet.packages import normalize_project

MAX_BODY = 64 * 1024 * 1024


class Logs:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.lock = threading.Lock()
        self.seq = 0

    def append(self, log: str, entry: dict[str, Any]) -> None:
        with self.lock:
            self.seq += 1
            entry = {"seq": self.seq, "time": time.time(), **entry}
            line = json.dumps(entry, sort_keys=True) + "\n"
            fd = os.open(self.directory / f"{log}.jsonl", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, line.encode())
            finally:
                os.close(fd)


class Config:
    def __init__(self, raw: dict[str, Any]) -> None:
        self.data = Path(raw["data_dir"])
        self.logs = Logs(Path(raw["log_dir"]))
        self.hosts: list[dict[str, Any]] = raw["hosts"]
        self.dns: dict[str, Any] = raw["dns"]
        self.zone: dict[str, list[str]] = {}
        self.wildcards: dict[str, list[str]] = {}
        for host in self.hosts:
            addresses = [host["ipv4"]] + ([host["ipv6"]] if host.get("ipv6") else [])
            self.zone[host["name"]] = addresses
            if host.get("wildcard"):
                self.wildcards[host["name"]] = addresses

    def lookup(self, name: str) -> list[str] | None:
        key = name.lower().rstrip(".")
        if key in self.zone:
            return self.zone[key]
        for parent, addresses in self.wildcards.items():
            if key.endswith("." + parent):
                return addresses
        return None


# ------------------------------------------------------------------------------------ HTTP


class Server(socketserver.ThreadingMixIn, socketserver.TCPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(
        self, address: tuple[str, int], family: int, host: dict[str, Any], config: Config, tls: ssl.SSLContext | None
    ) -> None:
        self.address_family = family
        self.host = host
        self.config = config
        self.tls = tls
        super().__init__(address, Handler)

    def finish_request(self, request: Any, client_address: Any) -> None:
        # The handshake runs on the connection's own thread, never on the accept loop.
        if self.tls is not None:
            request.settimeout(30)
            try:
                request = self.tls.wrap_socket(request, server_side=True)
            except (OSError, ssl.SSLError) as error:
                self.config.logs.append(
                    "tls_errors",
                    {"host": self.host["name"], "client": list(client_address[:2]), "sni": None, "error": str(error)},
                )
                request.close()
                return
        super().finish_request(request, client_address)


def _tls_context(host: dict[str, Any]) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(host["cert"], host["key"])

    def remember_sni(sock: Any, server_name: str | None, _context: ssl.SSLContext) -> None:
        sock.ciwinet_sni = server_name
        return None

    context.sni_callback = remember_sni
    return context


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "ciwinet/1"
    server: Server
    timeout = 60
    requests_seen = 0

    def handle(self) -> None:
        # A TLS 1.3 client checks the certificate after the handshake: one that refuses it
        # sends an alert or just closes, before any request. Both are recorded.
        self.requests_seen = 0
        error = "closed before sending a request"
        try:
            super().handle()
        except ssl.SSLError as exc:
            error = str(exc)
        except (ConnectionError, TimeoutError) as exc:
            error = str(exc) or type(exc).__name__
        if self.server.tls is not None and self.requests_seen == 0:
            self.server.config.logs.append(
                "tls_errors",
                {
                    "host": self.server.host["name"],
                    "client": list(self.client_address[:2]),
                    "sni": getattr(self.connection, "ciwinet_sni", None),
                    "error": error,
                },
            )

    def log_message(self, format: str, *args: Any) -> None:
        sys.stderr.write(f"{self.server.host['name']} {self.address_string()} {format % args}\n")

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            body = b""
            for _ in range(1_000_000):
                size_line = self.rfile.readline(1024)
                size = int(size_line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    for _ in range(100):  # trailers
                        if self.rfile.readline(8192) in (b"\r\n", b"\n", b""):
                            break
                    return body
                body += self.rfile.read(size)
                self.rfile.readline(8)
                if len(body) > MAX_BODY:
                    raise ValueError("body too large")
            raise ValueError("too many chunks")
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            raise ValueError("body too large")
        return self.rfile.read(length) if length else b""

    def _handle(self) -> None:
        host = self.server.host
        self.requests_seen += 1
        try:
            body = self._read_body()
        except ValueError:
            self.send_error(400)
            return
        self.server.config.logs.append(
            "requests",
            {
                "host": host["name"],
                "scheme": "https" if self.server.tls else "http",
                "server": [self.server.server_address[0], self.server.server_address[1]],
                "client": [self.client_address[0], self.client_address[1]],
                "sni": getattr(self.connection, "ciwinet_sni", None),
                "method": self.command,
                "path": self.path,
                "version": self.request_version,
                "headers": [[key, value] for key, value in self.headers.items()],
                "body_b64": base64.b64encode(body).decode(),
            },
        )
        try:
            status, headers, payload = self._route(host)
        except Exception:  # noqa: BLE001 - a bug here must answer 500, not kill the connection
            traceback.print_exc()
            status, headers, payload = 500, {"Content-Type": "text/plain"}, b"internal error\n"
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _handle

    def _route(self, host: dict[str, Any]) -> tuple[int, dict[str, str], bytes]:
        config = self.server.config
        static = _static(config.data, host["name"], self.path)
        if static is not None:
            return static
        path = urllib.parse.urlsplit(self.path).path
        role = host["role"]
        if role == "npm":
            return _npm(config.data, urllib.parse.unquote(path))
        if role == "pypi-index":
            return _simple(config.data, path, host["files_base"])
        if role == "pypi-files":
            return _pypi_file(config.data, path)
        if role == "static":  # a registry made of published files only: anything else is missing
            return _not_found()
        return 200, {"Content-Type": "text/plain"}, b"ok\n"


def _not_found() -> tuple[int, dict[str, str], bytes]:
    return 404, {"Content-Type": "application/json"}, b'{"error":"Not found"}\n'


def _static(data: Path, host: str, path: str) -> tuple[int, dict[str, str], bytes] | None:
    directory = data / "static" / host
    for candidate in (path, urllib.parse.urlsplit(path).path):
        meta = directory / (hashlib.sha256(candidate.encode()).hexdigest() + ".json")
        if meta.is_file():
            entry = json.loads(meta.read_text())
            return entry["status"], entry["headers"], base64.b64decode(entry["body_b64"])
    return None


def _npm(data: Path, path: str) -> tuple[int, dict[str, str], bytes]:
    path = path.lstrip("/")
    if "/-/" in path:  # a tarball: <name>/-/<file>.tgz
        name, filename = path.split("/-/", 1)
        if ".." in name or "/" in filename or ".." in filename:
            return _not_found()
        file = data / "npm" / name / "tarballs" / filename
        if not file.is_file():
            return _not_found()
        return 200, {"Content-Type": "application/octet-stream"}, file.read_bytes()
    if ".." in path or not path:
        return _not_found()
    directory = data / "npm" / path
    versions_dir = directory / "versions"
    if not versions_dir.is_dir():
        return _not_found()
    entries = sorted((json.loads(f.read_text()) for f in versions_dir.glob("*.json")), key=lambda e: e["order"])
    if not entries:
        return _not_found()
    tags_file = directory / "dist-tags.json"
    tags = json.loads(tags_file.read_text()) if tags_file.is_file() else {}
    times = {entry["manifest"]["version"]: entry["time"] for entry in entries}
    packument = {
        "_id": path,
        "name": path,
        "dist-tags": tags,
        "versions": {entry["manifest"]["version"]: entry["manifest"] for entry in entries},
        "time": {"created": entries[0]["time"], "modified": entries[-1]["time"], **times},
    }
    return 200, {"Content-Type": "application/json"}, json.dumps(packument).encode()


def _simple(data: Path, path: str, files_base: str) -> tuple[int, dict[str, str], bytes]:
    root = data / "pypi"
    parts = [part for part in path.split("/") if part]
    if parts == ["simple"]:
        projects = sorted(p.name for p in root.iterdir()) if root.is_dir() else []
        links = "".join(f'<a href="/simple/{p}/">{p}</a>\n' for p in projects)
        return 200, {"Content-Type": "text/html"}, _page("Simple index", links)
    if len(parts) != 2 or parts[0] != "simple":
        return _not_found()
    project = normalize_project(parts[1])
    directory = root / project
    if project != parts[1]:
        return 301, {"Location": f"/simple/{project}/", "Content-Type": "text/plain"}, b""
    if not directory.is_dir():
        return _not_found()
    links = ""
    for file in sorted(directory.iterdir()):
        if file.name.endswith(".json") or file.name.startswith("."):
            continue
        meta_file = directory / (file.name + ".json")
        meta = json.loads(meta_file.read_text()) if meta_file.is_file() else {}
        digest = hashlib.sha256(file.read_bytes()).hexdigest()
        extra = ""
        if meta.get("requires_python"):
            extra = f' data-requires-python="{html.escape(meta["requires_python"])}"'
        url = f"{files_base}/packages/{project}/{urllib.parse.quote(file.name)}#sha256={digest}"
        links += f'<a href="{html.escape(url)}"{extra}>{html.escape(file.name)}</a>\n'
    return 200, {"Content-Type": "text/html"}, _page(f"Links for {project}", links)


def _page(title: str, body: str) -> bytes:
    return (
        f'<!DOCTYPE html>\n<html><head><meta name="pypi:repository-version" content="1.0">'
        f"<title>{html.escape(title)}</title></head><body>\n<h1>{html.escape(title)}</h1>\n{body}</body></html>\n"
    ).encode()


def _pypi_file(data: Path, path: str) -> tuple[int, dict[str, str], bytes]:
    parts = [urllib.parse.unquote(part) for part in path.split("/") if part]
    if len(parts) != 3 or parts[0] != "packages" or any(p in (".", "..") or "/" in p for p in parts):
        return _not_found()
    file = data / "pypi" / parts[1] / parts[2]
    if not file.is_file() or file.name.endswith(".json"):
        return _not_found()
    return 200, {"Content-Type": "application/octet-stream"}, file.read_bytes()


# ------------------------------------------------------------------------------------ DNS


def answer_dns(config: Config, message: bytes, transport: str, client: Any) -> bytes:
    try:
        question = dns.parse_question(message)
    except dns.DnsFormatError as error:
        config.logs.append("dns", {"name": None, "error": str(error), "transport": transport, "client": client})
        return dns.error_response(message, dns.RCODE_FORMERR)
    addresses = config.lookup(question.name)
    opcode = (question.flags >> 11) & 0xF
    answers: list[str] = []
    if opcode != 0:
        rcode = dns.RCODE_NOTIMP
    elif addresses is None:
        rcode = dns.RCODE_NXDOMAIN
    else:
        family = {dns.TYPE_A: 4, dns.TYPE_AAAA: 6}.get(question.qtype) if question.qclass == dns.CLASS_IN else None
        answers = [a for a in addresses if (":" in a) == (family == 6)] if family else []
        rcode = dns.RCODE_OK
    config.logs.append(
        "dns",
        {
            "name": question.name,
            "qtype": question.type_name,
            "transport": transport,
            "client": client,
            "rcode": rcode,
            "answers": answers,
        },
    )
    return dns.build_response(message, question, rcode, answers)


class DnsUdp(socketserver.ThreadingMixIn, socketserver.UDPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], family: int, config: Config) -> None:
        self.address_family = family
        self.config = config
        super().__init__(address, DnsUdpHandler)


class DnsUdpHandler(socketserver.BaseRequestHandler):
    server: DnsUdp

    def handle(self) -> None:
        data, sock = self.request
        reply = answer_dns(self.server.config, data, "udp", list(self.client_address[:2]))
        sock.sendto(reply, self.client_address)


class DnsTcp(socketserver.ThreadingMixIn, socketserver.TCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], family: int, config: Config) -> None:
        self.address_family = family
        self.config = config
        super().__init__(address, DnsTcpHandler)


class DnsTcpHandler(socketserver.BaseRequestHandler):
    server: DnsTcp

    def handle(self) -> None:
        sock: socket.socket = self.request
        sock.settimeout(10)
        for _ in range(1000):
            header = _recv_exact(sock, 2)
            if header is None:
                return
            message = _recv_exact(sock, struct.unpack("!H", header)[0])
            if message is None:
                return
            reply = answer_dns(self.server.config, message, "tcp", list(self.client_address[:2]))
            sock.sendall(struct.pack("!H", len(reply)) + reply)


def _recv_exact(sock: socket.socket, size: int) -> bytes | None:
    data = b""
    for _ in range(size + 1):
        if len(data) == size:
            return data
        try:
            chunk = sock.recv(size - len(data))
        except OSError:
            return None
        if not chunk:
            return None
        data += chunk
    return data if len(data) == size else None


# ------------------------------------------------------------------------------------ UDP


class UdpRecorder(socketserver.ThreadingMixIn, socketserver.UDPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], family: int, host: dict[str, Any], config: Config) -> None:
        self.address_family = family
        self.host = host
        self.config = config
        super().__init__(address, UdpRecorderHandler)


class UdpRecorderHandler(socketserver.BaseRequestHandler):
    server: UdpRecorder

    def handle(self) -> None:
        data, _sock = self.request
        self.server.config.logs.append(
            "udp",
            {
                "host": self.server.host["name"],
                "port": self.server.server_address[1],
                "client": list(self.client_address[:2]),
                "data_b64": base64.b64encode(data).decode(),
            },
        )


# ------------------------------------------------------------------------------------ main


def _families(entry: dict[str, Any]) -> list[tuple[str, int]]:
    out: list[tuple[str, int]] = [(entry["ipv4"], socket.AF_INET)]
    if entry.get("ipv6"):
        out.append((entry["ipv6"], socket.AF_INET6))
    return out


def build_servers(config: Config) -> list[socketserver.BaseServer]:
    servers: list[socketserver.BaseServer] = []
    for host in config.hosts:
        tls = _tls_context(host)
        for address, family in _families(host):
            servers.append(Server((address, host.get("http_port", 80)), family, host, config, None))
            servers.append(Server((address, host.get("https_port", 443)), family, host, config, tls))
            for port in host.get("udp_ports", []):
                servers.append(UdpRecorder((address, port), family, host, config))
    for address, family in _families(config.dns):
        servers.append(DnsUdp((address, config.dns.get("port", 53)), family, config))
        servers.append(DnsTcp((address, config.dns.get("port", 53)), family, config))
    return servers


def main(argv: list[str]) -> int:
    config = Config(json.loads(Path(argv[1]).read_text()))
    servers = build_servers(config)
    for server in servers:
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.5}, daemon=True).start()
    sys.stdout.write("READY\n")
    sys.stdout.flush()
    # Serve until the fixture closes our standard input (or dies, which closes it too).
    for _ in iter(lambda: sys.stdin.buffer.read(4096), b""):
        pass
    sys.stderr.write("standard input closed: stopping\n")
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
