"""``TestInternet``: the servers, names and CA that the tests use instead of the internet."""

from __future__ import annotations

import atexit
import base64
import contextlib
import datetime
import hashlib
import json
import os
import select
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any, NamedTuple

from tests.support.internet import dns, packages
from tests.support.internet.ca import TestCA
from tests.support.internet.netns import Namespace, NetnsError, cleanup_stale
from tests.support.internet.packages import FileContent, SdistBackend

REPO_ROOT = Path(__file__).resolve().parents[3]
STARTUP_TIMEOUT = 15.0

NPM_REGISTRY = "registry.npm.test"
PYPI_INDEX = "pypi.test"
PYPI_FILES = "files.pypi.test"
EVIL = "evil.test"
EXFIL = "exfil.test"
#: Registries served from static files (``serve``): a cargo sparse index and the host its
#: ``config.json`` names for downloads, a gem source, an apt repository (tests/support/internet/
#: crates.py, gems.py, apt_repo.py).
CRATES_INDEX = "crates.test"
CRATES_FILES = "cratefiles.test"
GEMS = "gems.test"
APT_REPO = "apt.test"
VCS = "vcs.test"
"""Serves only what tests publish on it (``serve``), 404 for the rest: a version control host."""
UDP_PORT = 9999
DNS_OCTET = 53

# name, role, last octet of its addresses, answers for every subdomain too
DEFAULT_HOSTS: tuple[tuple[str, str, int, bool], ...] = (
    (NPM_REGISTRY, "npm", 10, False),
    (PYPI_INDEX, "pypi-index", 11, False),
    (PYPI_FILES, "pypi-files", 12, False),
    (EVIL, "recorder", 13, True),
    (EXFIL, "recorder", 14, True),
    (CRATES_INDEX, "static", 15, False),
    (CRATES_FILES, "static", 16, False),
    (GEMS, "static", 17, False),
    (APT_REPO, "static", 18, False),
    (VCS, "static", 20, False),
)


class TestInternetError(RuntimeError):
    __test__ = False


class HostAddresses(NamedTuple):
    ipv4: str
    ipv6: str | None  # None where the machine has no IPv6


@dataclass(frozen=True)
class RecordedRequest:
    host: str  # the test host that received it (``evil.test`` also for ``x.evil.test``)
    scheme: str  # "http" or "https"
    method: str
    path: str  # as sent, query included
    headers: list[tuple[str, str]]
    body: bytes
    client: tuple[str, int]
    sni: str | None
    seq: int

    def header(self, name: str) -> str | None:
        lowered = name.lower()
        return next((value for key, value in self.headers if key.lower() == lowered), None)

    @property
    def host_header(self) -> str | None:
        return self.header("Host")


@dataclass(frozen=True)
class DnsQuery:
    name: str  # as received, no trailing dot; None-named (unparseable) queries are left out
    qtype: str  # "A", "AAAA", "TXT", ... or the number
    transport: str  # "udp" or "tcp"
    client: tuple[str, int]
    rcode: int  # 0 answered, 3 NXDOMAIN
    answers: list[str]
    seq: int


@dataclass(frozen=True)
class UdpDatagram:
    host: str
    port: int
    client: tuple[str, int]
    data: bytes
    seq: int


@dataclass(frozen=True)
class NpmPackage:
    name: str
    version: str
    tarball_url: str
    integrity: str  # sha512-...
    shasum: str  # sha1 hex
    tarball: bytes
    manifest: dict[str, Any]  # the package.json inside the tarball


@dataclass(frozen=True)
class PythonDist:
    project: str  # normalised (PEP 503)
    filename: str
    url: str  # on files.pypi.test
    sha256: str
    data: bytes


RESOLVER_SCRIPT = r"""
resolv=$1; nsswitch=$2; shift 2
fail() { echo "ciwatch test internet: $*; refusing to run with the machine's resolver" >&2; exit 125; }
mount --bind "$resolv" /etc/resolv.conf || fail "cannot bind-mount $resolv over /etc/resolv.conf"
cmp -s "$resolv" /etc/resolv.conf || fail "/etc/resolv.conf is not the test resolver's after the bind mount"
if [ -n "$nsswitch" ]; then
  mount --bind "$nsswitch" /etc/nsswitch.conf || fail "cannot bind-mount $nsswitch over /etc/nsswitch.conf"
fi
for d in /run/nscd /var/run/nscd /run/systemd/resolve; do
  if [ -d "$d" ]; then mount -t tmpfs -o size=64k ciwinet "$d" || fail "cannot hide $d"; fi
done
exec "$@"
"""


def resolver_wrapper(resolv_conf: Path, nsswitch_conf: Path | None, argv: Sequence[str]) -> list[str]:
    """``argv`` run in a private mount namespace where /etc/resolv.conf is ``resolv_conf``.

    nsswitch.conf (when given) is replaced too, so that host lookups are ``files dns`` only,
    and nscd's and systemd-resolved's sockets are hidden. If a bind mount fails, the wrapper
    exits 125 without running ``argv``.
    """
    if not argv:
        raise ValueError("no command to wrap")
    unshare = shutil.which("unshare")
    if unshare is None:
        raise TestInternetError("unshare (util-linux) is not installed")
    return [
        unshare,
        "--mount",
        "--propagation",
        "private",
        "--",
        "/bin/sh",
        "-c",
        RESOLVER_SCRIPT,
        "ciwinet-resolver",
        str(resolv_conf),
        str(nsswitch_conf or ""),
        *argv,
    ]


def _nsswitch_text() -> str | None:
    path = Path("/etc/nsswitch.conf")
    if not path.exists():
        return None
    lines = [line for line in path.read_text().splitlines() if not line.strip().startswith("hosts:")]
    return "\n".join([*lines, "hosts: files dns"]) + "\n"


_LIVE: list[TestInternet] = []
_ATEXIT_REGISTERED = False
_PREVIOUS_HANDLERS: dict[int, Any] = {}


def _close_all() -> None:
    for internet in list(_LIVE):
        if internet.owner_pid != os.getpid():
            continue  # a forked child exiting must not tear down its parent's internet
        with contextlib.suppress(Exception):
            internet.close()


def _on_signal(signum: int, _frame: FrameType | None) -> None:
    # Turn a polite kill into an interrupt: pytest then tears its fixtures down, a script
    # unwinds its finally blocks, and atexit closes whatever is left.
    raise KeyboardInterrupt(f"signal {signum}")


def _install_cleanup_hooks() -> None:
    global _ATEXIT_REGISTERED
    if not _ATEXIT_REGISTERED:
        atexit.register(_close_all)
        _ATEXIT_REGISTERED = True
    if threading_is_main():
        for signum in (signal.SIGTERM, signal.SIGHUP):
            if signal.getsignal(signum) == signal.SIG_DFL:
                _PREVIOUS_HANDLERS[signum] = signal.SIG_DFL
                signal.signal(signum, _on_signal)


def _restore_signal_handlers() -> None:
    if _LIVE or not threading_is_main():
        return
    for signum, handler in list(_PREVIOUS_HANDLERS.items()):
        if signal.getsignal(signum) is _on_signal:
            signal.signal(signum, handler)
        del _PREVIOUS_HANDLERS[signum]


def threading_is_main() -> bool:
    return threading.current_thread() is threading.main_thread()


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    entries = []
    for line in path.read_text().splitlines(keepends=True):
        if line.endswith("\n") and line.strip():
            entries.append(json.loads(line))
    return entries


@dataclass(eq=False)
class TestInternet:
    """Servers at non-loopback addresses in a network namespace, names from a test DNS server,
    TLS from a test CA. Start with ``TestInternet.start(directory)`` (or the ``test_internet``
    fixture); ``close()`` removes everything, and so do atexit and SIGTERM/SIGHUP."""

    __test__ = False  # not a pytest test class

    directory: Path
    namespace: Namespace
    ca: TestCA
    hosts: dict[str, HostAddresses]
    dns_server: str
    dns_server_v6: str | None
    startup_seconds: float = 0.0
    owner_pid: int = field(default_factory=os.getpid)
    _process: subprocess.Popen[bytes] | None = None
    _closed: bool = False
    _npm_order: int = 0
    _wildcards: set[str] = field(default_factory=set)
    _owns_directory: bool = False

    # ------------------------------------------------------------------ start and stop

    @classmethod
    def start(cls, directory: Path | None = None) -> TestInternet:
        """Create the namespace, the CA and the servers, check that they answer, and return.

        Fails loudly (``TestInternetError``) when anything is missing: never a half internet.
        """
        began = time.monotonic()
        if os.geteuid() != 0:
            raise TestInternetError("the test internet needs root (network namespaces, veth, routes)")
        for tool in ("ip", "unshare", "mount"):
            if shutil.which(tool) is None:
                raise TestInternetError(f"{tool} is not installed")
        owns_directory = directory is None
        directory = Path(tempfile.mkdtemp(prefix="ciwinet-")) if directory is None else directory
        directory.mkdir(parents=True, exist_ok=True)
        for sub in ("data", "logs", "tls", "etc"):
            (directory / sub).mkdir(exist_ok=True)
        cleanup_stale()
        namespace = Namespace.for_this_process()
        _install_cleanup_hooks()
        internet: TestInternet | None = None
        try:
            namespace.create([octet for _n, _r, octet, _w in DEFAULT_HOSTS] + [DNS_OCTET])
            v6 = namespace.ipv6
            hosts = {
                name: HostAddresses(namespace.v4(octet), namespace.v6(octet) if v6 else None)
                for name, _role, octet, _wild in DEFAULT_HOSTS
            }
            internet = cls(
                directory=directory,
                namespace=namespace,
                ca=TestCA(directory / "tls", f"ciwatch test internet CA {namespace.name}"),
                hosts=hosts,
                dns_server=namespace.v4(DNS_OCTET),
                dns_server_v6=namespace.v6(DNS_OCTET) if v6 else None,
                _wildcards={name for name, _r, _o, wild in DEFAULT_HOSTS if wild},
                _owns_directory=owns_directory,
            )
            _LIVE.append(internet)
            internet._write_resolver_files()
            internet._start_servers()
            internet._verify()
            internet.reset_logs()
            internet.startup_seconds = time.monotonic() - began
            return internet
        except BaseException:
            if internet is not None:
                internet.close()
            else:
                namespace.destroy()
                _restore_signal_handlers()
                if owns_directory:
                    shutil.rmtree(directory, ignore_errors=True)
            raise

    def __enter__(self) -> TestInternet:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop the servers, delete the namespace, veth and (if no other session has one) the
        blackhole routes. Idempotent."""
        if self._closed or self.owner_pid != os.getpid():
            return
        self._closed = True
        try:
            process = self._process
            if process is not None and process.poll() is None:
                with contextlib.suppress(OSError):
                    if process.stdin:
                        process.stdin.close()
                try:
                    process.wait(timeout=2)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(timeout=5)
        finally:
            try:
                self.namespace.destroy()
            finally:
                if self in _LIVE:
                    _LIVE.remove(self)
                _restore_signal_handlers()
                if self._owns_directory:
                    shutil.rmtree(self.directory, ignore_errors=True)

    def leftovers(self) -> list[str]:
        """What of this internet is still on the machine (empty after ``close``)."""
        return self.namespace.leftovers()

    def _write_resolver_files(self) -> None:
        etc = self.directory / "etc"
        (etc / "resolv.conf").write_text(
            "# the ciwatch test internet's resolver: it answers test names only and forwards nothing\n"
            f"nameserver {self.dns_server}\noptions timeout:2 attempts:2\n"
        )
        nsswitch = _nsswitch_text()
        if nsswitch is not None:
            (etc / "nsswitch.conf").write_text(nsswitch)

    def _server_config(self) -> dict[str, Any]:
        hosts = []
        for name, role, _octet, wildcard in DEFAULT_HOSTS:
            addresses = self.hosts[name]
            dns_names = [name] + ([f"*.{name}"] if wildcard else [])
            ips = [addresses.ipv4] + ([addresses.ipv6] if addresses.ipv6 else [])
            cert, key = self.ca.issue(name, dns_names, ips)
            entry: dict[str, Any] = {
                "name": name,
                "role": role,
                "ipv4": addresses.ipv4,
                "ipv6": addresses.ipv6,
                "cert": str(cert),
                "key": str(key),
                "wildcard": wildcard,
                "udp_ports": [UDP_PORT] if role == "recorder" else [],
            }
            if role == "pypi-index":
                entry["files_base"] = f"https://{PYPI_FILES}"
            hosts.append(entry)
        return {
            "data_dir": str(self.directory / "data"),
            "log_dir": str(self.directory / "logs"),
            "hosts": hosts,
            "dns": {"ipv4": self.dns_server, "ipv6": self.dns_server_v6, "port": 53},
        }

    def _start_servers(self) -> None:
        config = self.directory / "server.json"
        config.write_text(json.dumps(self._server_config(), indent=2))
        log = (self.directory / "server.log").open("wb")
        env = {key: value for key, value in os.environ.items() if not key.lower().endswith("_proxy")}
        env["PYTHONPATH"] = str(REPO_ROOT)
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        try:
            self._process = subprocess.Popen(
                [*self._netns_exec(), sys.executable, "-m", "tests.support.internet.server", str(config)],
                cwd=REPO_ROOT,
                env=env,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
            )
        finally:
            log.close()
        assert self._process.stdout is not None
        ready, _, _ = select.select([self._process.stdout], [], [], STARTUP_TIMEOUT)
        line = self._process.stdout.readline() if ready else b""
        if line.strip() != b"READY":
            self._process.kill()
            self._process.wait(timeout=5)
            raise TestInternetError(f"the test internet's servers did not start: {line!r}\n{self.server_log()[-4000:]}")

    def _netns_exec(self) -> list[str]:
        return ["ip", "netns", "exec", self.namespace.name]

    def server_log(self) -> str:
        """The servers' standard error (tracebacks, one line per HTTP request)."""
        path = self.directory / "server.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def _verify(self) -> None:
        """Every server answers a real request at its address through the veth (HTTPS with a
        certificate that verifies against the CA); the DNS server answers on both families."""
        context = ssl.create_default_context(cafile=str(self.ca_cert))
        for name, addresses in self.hosts.items():
            for address in (addresses.ipv4, addresses.ipv6):
                if address is None:
                    continue
                for port in (80, 443):
                    try:
                        self._probe_http(name, address, port, context if port == 443 else None)
                    except OSError as error:
                        raise TestInternetError(
                            f"the test internet is not reachable: {name} at {address} port {port}: {error}"
                        ) from error
        expected = self.hosts[NPM_REGISTRY]
        for server, qtype, want in (
            (self.dns_server, dns.TYPE_A, expected.ipv4),
            (self.dns_server_v6, dns.TYPE_AAAA, expected.ipv6),
        ):
            if server is None:
                continue
            rcode, answers = self.query_dns(NPM_REGISTRY, qtype, server=server)
            if rcode != 0 or answers != [want]:
                raise TestInternetError(f"the test DNS server at {server} answered {rcode} {answers}")

    @staticmethod
    def _probe_http(name: str, address: str, port: int, context: ssl.SSLContext | None) -> None:
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as raw:
            raw.settimeout(3)
            raw.connect((address, port))
            sock = context.wrap_socket(raw, server_hostname=name) if context else raw
            sock.sendall(f"HEAD /ciwinet-probe HTTP/1.1\r\nHost: {name}\r\nConnection: close\r\n\r\n".encode())
            reply = b""
            for _ in range(100):
                chunk = sock.recv(4096)
                if not chunk:
                    break
                reply += chunk
            if not reply.startswith(b"HTTP/1."):
                raise OSError(f"no HTTP answer: {reply[:100]!r}")

    def query_dns(self, name: str, qtype: int = dns.TYPE_A, *, server: str | None = None) -> tuple[int, list[str]]:
        """Ask the test DNS server directly over UDP (never the machine's resolver)."""
        server = server or self.dns_server
        family = socket.AF_INET6 if ":" in server else socket.AF_INET
        with socket.socket(family, socket.SOCK_DGRAM) as sock:
            sock.settimeout(3)
            sock.sendto(dns.build_query(name, qtype), (server, 53))
            reply, _ = sock.recvfrom(4096)
        return dns.parse_response_addresses(reply)

    # ------------------------------------------------------------------ names and helpers

    @property
    def ca_cert(self) -> Path:
        """PEM of the CA that issued every server certificate."""
        return self.ca.cert_path

    @property
    def registry_url(self) -> str:
        return f"https://{NPM_REGISTRY}/"

    @property
    def simple_index_url(self) -> str:
        return f"https://{PYPI_INDEX}/simple/"

    def url(self, host: str, path: str = "/", scheme: str = "https") -> str:
        return f"{scheme}://{host}{path}"

    def address_of(self, name: str) -> HostAddresses:
        """The addresses the test DNS gives ``name`` (subdomains of evil.test and exfil.test too)."""
        key = name.lower().rstrip(".")
        if key in self.hosts:
            return self.hosts[key]
        for parent in self._wildcards:
            if key.endswith("." + parent):
                return self.hosts[parent]
        raise KeyError(name)

    def resolv_conf(self) -> Path:
        """A resolv.conf naming only the test DNS server."""
        return self.directory / "etc" / "resolv.conf"

    def wrap_with_test_resolver(self, argv: Sequence[str]) -> list[str]:
        """``argv`` run with /etc/resolv.conf bind-mounted to ``resolv_conf()`` (in its own mount
        namespace), so its name lookups reach only the test DNS server. Exits 125 without
        running ``argv`` if the bind mount fails."""
        nsswitch = self.directory / "etc" / "nsswitch.conf"
        return resolver_wrapper(self.resolv_conf(), nsswitch if nsswitch.exists() else None, argv)

    def client_env(self, home: Path, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """An environment for npm, pip, curl, wget and node in which they know only the test
        internet: HOME is ``home``, npm's user/global config and cache are fresh files there,
        pip reads no config file, proxies and inherited npm/pip settings are dropped, and the
        CA bundle is the test CA."""
        home.mkdir(parents=True, exist_ok=True)
        (home / ".npmrc").touch()
        (home / "npmrc-global").touch()
        (home / ".wgetrc").write_text(f"ca_certificate = {self.ca_cert}\n")
        dropped = ("PIP_", "NPM_CONFIG_", "YARN_", "PNPM_", "UV_", "CURL_", "REQUESTS_", "SSL_CERT_")
        env = {
            key: value
            for key, value in (base if base is not None else os.environ).items()
            if not key.lower().endswith("_proxy")
            and not key.upper().startswith(dropped)
            and key != "NODE_EXTRA_CA_CERTS"
        }
        ca = str(self.ca_cert)
        env.update(
            {
                "HOME": str(home),
                "npm_config_registry": self.registry_url,
                "npm_config_cafile": ca,
                "npm_config_userconfig": str(home / ".npmrc"),
                "npm_config_globalconfig": str(home / "npmrc-global"),
                "npm_config_cache": str(home / ".npm"),
                "npm_config_update_notifier": "false",
                "npm_config_audit": "false",
                "npm_config_fund": "false",
                "PIP_CONFIG_FILE": os.devnull,
                "PIP_INDEX_URL": self.simple_index_url,
                "PIP_CERT": ca,
                "PIP_DISABLE_PIP_VERSION_CHECK": "1",
                "PIP_NO_CACHE_DIR": "1",
                "CURL_CA_BUNDLE": ca,
                "SSL_CERT_FILE": ca,
                "NODE_EXTRA_CA_CERTS": ca,
            }
        )
        return env

    # ------------------------------------------------------------------ publishing

    def _atomic_write(self, path: Path, data: bytes) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_bytes(data)
        tmp.replace(path)

    def publish_npm(
        self,
        name: str,
        version: str,
        *,
        package_json_extra: Mapping[str, Any] | None = None,
        files: Mapping[str, FileContent] | None = None,
        executables: Iterable[str] = (),
        tag: str | None = "latest",
        packument_extra: Mapping[str, Any] | None = None,
    ) -> NpmPackage:
        """Build ``name@version`` as ``npm pack`` would and serve it from registry.npm.test.

        ``package_json_extra`` goes into package.json (scripts, dependencies, bin, ...);
        ``files`` are the other files of the package; ``tag`` is pointed at this version;
        ``packument_extra`` changes only the registry's copy of the manifest (a packument that
        disagrees with its tarball)."""
        tarball, manifest = packages.build_npm_tarball(
            name, version, package_json_extra=package_json_extra, files=files, executables=executables
        )
        integrity, shasum = packages.npm_integrity(tarball)
        filename = packages.npm_tarball_name(name, version)
        tarball_url = f"https://{NPM_REGISTRY}/{name}/-/{filename}"
        root = self.directory / "data" / "npm" / name
        self._npm_order += 1
        published = datetime.datetime.now(datetime.UTC).isoformat(timespec="milliseconds")
        entry_manifest = {
            **manifest,
            **dict(packument_extra or {}),
            "_id": f"{name}@{version}",
            "dist": {"tarball": tarball_url, "integrity": integrity, "shasum": shasum},
        }
        self._atomic_write(root / "tarballs" / filename, tarball)
        entry = {"order": self._npm_order, "time": published.replace("+00:00", "Z"), "manifest": entry_manifest}
        self._atomic_write(root / "versions" / f"{version}.json", json.dumps(entry).encode())
        if tag is not None:
            self.set_npm_dist_tag(name, tag, version)
        return NpmPackage(name, version, tarball_url, integrity, shasum, tarball, manifest)

    def set_npm_dist_tag(self, name: str, tag: str, version: str) -> None:
        path = self.directory / "data" / "npm" / name / "dist-tags.json"
        tags = json.loads(path.read_text()) if path.exists() else {}
        tags[tag] = version
        self._atomic_write(path, json.dumps(tags).encode())

    def _publish_python(self, name: str, filename: str, data: bytes, requires_python: str | None) -> PythonDist:
        project = packages.normalize_project(name)
        directory = self.directory / "data" / "pypi" / project
        self._atomic_write(directory / filename, data)
        self._atomic_write(directory / f"{filename}.json", json.dumps({"requires_python": requires_python}).encode())
        url = f"https://{PYPI_FILES}/packages/{project}/{urllib.parse.quote(filename)}"
        return PythonDist(project, filename, url, hashlib.sha256(data).hexdigest(), data)

    def publish_wheel(
        self,
        name: str,
        version: str,
        *,
        files: Mapping[str, FileContent] | None = None,
        dependencies: Iterable[str] = (),
        requires_python: str | None = None,
        entry_points: Mapping[str, Mapping[str, str]] | None = None,
    ) -> PythonDist:
        """A pure-Python ``py3-none-any`` wheel on pypi.test; ``files`` are paths inside
        site-packages (default ``<name>/__init__.py``)."""
        filename, data = packages.build_wheel(
            name,
            version,
            files=files,
            dependencies=dependencies,
            requires_python=requires_python,
            entry_points=entry_points,
        )
        return self._publish_python(name, filename, data, requires_python)

    def publish_sdist(
        self,
        name: str,
        version: str,
        *,
        files: Mapping[str, FileContent] | None = None,
        setup_code: str = "",
        setup_py: str | None = None,
        backend: SdistBackend = "intree",
        dependencies: Iterable[str] = (),
        requires_python: str | None = None,
        entry_points: Mapping[str, Mapping[str, str]] | None = None,
    ) -> PythonDist:
        """An sdist of a setup.py project on pypi.test; ``setup_code`` runs when pip builds it.
        See ``packages.build_sdist`` for ``backend`` ("intree": needs nothing to build;
        "setuptools": a classic setup.py built by the installer's setuptools)."""
        filename, data = packages.build_sdist(
            name,
            version,
            files=files,
            setup_code=setup_code,
            setup_py=setup_py,
            backend=backend,
            dependencies=dependencies,
            requires_python=requires_python,
            entry_points=entry_points,
        )
        return self._publish_python(name, filename, data, requires_python)

    def serve(
        self,
        host: str,
        path: str,
        body: FileContent,
        *,
        status: int = 200,
        content_type: str = "application/octet-stream",
        headers: Mapping[str, str] | None = None,
    ) -> str:
        """Answer ``path`` on ``host`` (any test host, over HTTP and HTTPS) with ``body``; this
        takes precedence over the host's own content. Returns the https URL."""
        if host not in self.hosts:
            raise KeyError(f"{host} is not a test host: {sorted(self.hosts)}")
        entry = {
            "status": status,
            "headers": {"Content-Type": content_type, **dict(headers or {})},
            "body_b64": base64.b64encode(body.encode() if isinstance(body, str) else body).decode(),
        }
        key = hashlib.sha256(path.encode()).hexdigest()
        self._atomic_write(self.directory / "data" / "static" / host / f"{key}.json", json.dumps(entry).encode())
        return self.url(host, path)

    # ------------------------------------------------------------------ what the servers saw

    def _log(self, name: str) -> list[dict[str, Any]]:
        return _read_jsonl(self.directory / "logs" / f"{name}.jsonl")

    def requests_to(self, host: str | None = None) -> list[RecordedRequest]:
        """Every HTTP(S) request that ``host`` (any test host; None: all) received, in order."""
        if host is not None and host not in self.hosts:
            raise KeyError(f"{host} is not a test host: {sorted(self.hosts)}")
        return [
            RecordedRequest(
                host=entry["host"],
                scheme=entry["scheme"],
                method=entry["method"],
                path=entry["path"],
                headers=[(key, value) for key, value in entry["headers"]],
                body=base64.b64decode(entry["body_b64"]),
                client=(entry["client"][0], entry["client"][1]),
                sni=entry.get("sni"),
                seq=entry["seq"],
            )
            for entry in self._log("requests")
            if host is None or entry["host"] == host
        ]

    def tls_errors(self) -> list[dict[str, Any]]:
        """TLS handshakes that failed (a client that rejected the test CA, say)."""
        return self._log("tls_errors")

    def dns_log(self) -> list[DnsQuery]:
        return [
            DnsQuery(
                name=entry["name"],
                qtype=entry["qtype"],
                transport=entry["transport"],
                client=(entry["client"][0], entry["client"][1]),
                rcode=entry["rcode"],
                answers=list(entry["answers"]),
                seq=entry["seq"],
            )
            for entry in self._log("dns")
            if entry.get("name") is not None
        ]

    def dns_queries(self) -> list[str]:
        """The names the test DNS server was asked, in order, as received (no trailing dot)."""
        return [query.name for query in self.dns_log()]

    def udp_datagrams(self, host: str | None = None, *, at_least: int = 0, timeout: float = 5.0) -> list[UdpDatagram]:
        """Datagrams received on the UDP recorders (evil.test and exfil.test, port 9999).

        A sender gets no reply, so ``at_least`` waits (up to ``timeout`` seconds) for that many."""
        deadline = time.monotonic() + timeout
        for _ in range(int(timeout / 0.05) + 2):
            found = [
                UdpDatagram(
                    host=entry["host"],
                    port=entry["port"],
                    client=(entry["client"][0], entry["client"][1]),
                    data=base64.b64decode(entry["data_b64"]),
                    seq=entry["seq"],
                )
                for entry in self._log("udp")
                if host is None or entry["host"] == host
            ]
            if len(found) >= at_least or time.monotonic() >= deadline:
                return found
            time.sleep(0.05)
        return found

    def reset_logs(self) -> None:
        """Forget every request, query and datagram seen so far."""
        for name in ("requests", "dns", "udp", "tls_errors"):
            path = self.directory / "logs" / f"{name}.jsonl"
            if path.exists():
                with path.open("r+b") as handle:
                    handle.truncate(0)


__all__ = [
    "DnsQuery",
    "HostAddresses",
    "NetnsError",
    "NpmPackage",
    "PythonDist",
    "RecordedRequest",
    "TestInternet",
    "TestInternetError",
    "UdpDatagram",
    "resolver_wrapper",
]
