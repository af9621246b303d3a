"""The job's proxy (parsed from ciwatch's environment), NO_PROXY, forward-proxy request lines,
and how the allowlist judges a connection to a proxy."""

from __future__ import annotations

from ciwatch.egress.addons.forward import forward_request_target
from ciwatch.egress.upstream import JobProxy, NoProxy, parse_proxy_url
from ciwatch.gate.allowlist import FORWARD_PROXY_SCHEME, RuntimeAllowlist
from ciwatch.policy.model import Allowlist, HostPattern, Mode, Policy
from ciwatch.record.events import EgressFlow, ProxyReady
from ciwatch.record.vocabulary import TlsHandling

REGISTRY = "registry.example"
PROXY_IP = "198.51.100.7"
JOB_PROXY_IP = "192.0.2.80"


def test_proxy_urls_lose_their_credentials_but_keep_them_for_the_proxy() -> None:
    proxy = parse_proxy_url("http://user:s%40cret@Proxy.Corp:3128")
    assert proxy is not None
    assert (proxy.scheme, proxy.host, proxy.port, proxy.hostport) == ("http", "proxy.corp", 3128, "proxy.corp:3128")
    assert proxy.authorization == "Basic dXNlcjpzQGNyZXQ="
    assert "cret" not in repr(proxy)
    assert parse_proxy_url("proxy:8080") == parse_proxy_url("http://proxy:8080")
    assert parse_proxy_url("http://[fd00::1]:3128").hostport == "[fd00::1]:3128"  # type: ignore[union-attr]
    assert parse_proxy_url("socks5://proxy:1080") is None
    assert parse_proxy_url("") is None


def test_job_proxy_prefers_https_and_keeps_every_configured_one() -> None:
    job = JobProxy.from_environment({"HTTP_PROXY": "http://a:1", "HTTPS_PROXY": "http://b:2", "NO_PROXY": ".corp"})
    assert job is not None
    assert job.upstream.hostport == "b:2"
    assert [p.hostport for p in job.configured] == ["b:2", "a:1"]
    assert JobProxy.from_environment({"PATH": "/bin"}) is None


def test_no_proxy_matches_names_suffixes_addresses_and_cidrs() -> None:
    no_proxy = NoProxy.parse("localhost, .corp.example,10.0.0.0/8, 192.0.2.1:443, [fd00::1]")
    assert no_proxy.bypasses("10.1.2.3")
    assert no_proxy.bypasses("192.0.2.1")
    assert no_proxy.bypasses("fd00::1")
    assert no_proxy.bypasses("203.0.113.9", ["git.corp.example"])
    assert no_proxy.bypasses("203.0.113.9", ["corp.example"])
    assert not no_proxy.bypasses("203.0.113.9", ["evilcorp.example"])
    assert NoProxy.parse("*").bypasses("203.0.113.9")
    assert not NoProxy.parse("").bypasses("203.0.113.9")


def test_forward_proxy_request_lines() -> None:
    assert forward_request_target(b"CONNECT registry.example:443 HTTP/1.1\r\n") == ("CONNECT", "registry.example:443")
    assert forward_request_target(b"GET http://x.example/a HTTP/1.1\r\n") == ("GET", "http://x.example/a")
    assert forward_request_target(b"CONNECT [fd00::1]:443 HTTP/1.1\r\n") == ("CONNECT", "[fd00::1]:443")
    assert forward_request_target(b"GET /a HTTP/1.1\r\nHost: x\r\n") is None
    assert forward_request_target(b"\x16\x03\x01\x02\x00") is None


def _proxy_flow(address: str) -> EgressFlow:
    return EgressFlow(
        1, address, None, address, 3128, FORWARD_PROXY_SCHEME, "CONNECT", f"{REGISTRY}:443", None, 0, 0, None, None,
        TlsHandling.NONE, connected_to=address,
    )  # fmt: skip


def _allowlist(*hosts: str) -> RuntimeAllowlist:
    patterns = tuple(HostPattern(h) for h in (REGISTRY, *hosts))
    return RuntimeAllowlist(Policy(mode=Mode.BLOCK, allow=Allowlist(hosts=patterns)))


def test_the_builds_own_proxy_is_the_contact() -> None:
    allowlist = _allowlist()
    allowlist.observe(_proxy_flow(PROXY_IP))
    assert allowlist.is_forward_proxy(PROXY_IP)
    assert not allowlist.allows_contact(REGISTRY, PROXY_IP)  # an unfamiliar proxy, whatever it is asked for
    assert not allowlist.allows_contact(PROXY_IP, PROXY_IP)


def test_an_allowed_proxy_is_judged_by_what_it_is_asked_for() -> None:
    allowlist = _allowlist(PROXY_IP)
    allowlist.observe(_proxy_flow(PROXY_IP))
    assert allowlist.allows_contact(REGISTRY, PROXY_IP)
    assert not allowlist.allows_contact("evil.example", PROXY_IP)


def test_the_jobs_proxy_is_trusted_from_the_record() -> None:
    allowlist = _allowlist()
    allowlist.observe(ProxyReady("redirect", [], "11", upstream="proxy.corp:3128", upstream_addresses=[JOB_PROXY_IP]))
    assert allowlist.allows_contact(JOB_PROXY_IP, JOB_PROXY_IP)
    assert allowlist.allows_contact(REGISTRY, JOB_PROXY_IP)
    assert not allowlist.allows_contact("evil.example", JOB_PROXY_IP)
