"""Class 1, the open half: the build's own proxy, and a job-level proxy as ciwatch's upstream.

A hook sets ``https_proxy`` to an unfamiliar test host (evil.test) running a small forward
proxy, and curl reaches the allowed registry through it (``CONNECT registry:443``). Bare, the
CONNECT reaches evil.test's proxy. Under ciwatch the connection to the proxy is redirected to
ciwatch's transparent listener, which handles the CONNECT as a forward proxy does: in audit
the tunnel is made (through evil.test's proxy) and the contact is judged by the proxy's
address (``unfamiliar-egress`` naming it, the package and the hook; the CONNECT target is in
the record); in block mode the CONNECT is refused with 403 and the proxy receives nothing.

A job-level proxy (``HTTPS_PROXY`` in ciwatch's own environment, on exfil.test, which the
policy allows): the build installs from the registry through it, its targets are judged, and
a hook's direct connection to evil.test still leaves through the job's proxy and is judged by
evil.test.
"""

from __future__ import annotations

import json
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.attacks import POLICY_FAILED, Watched, assert_found, assert_replay_agrees, findings_of
from tests.support.hooks import HOOK, Hooks, assert_exit, hosts_of, run_bare
from tests.support.internet import EVIL, EXFIL, NPM_REGISTRY, TestInternet
from tests.support.internet.forward_proxy import ForwardProxy

pytestmark = [pytest.mark.npm, pytest.mark.root]


@pytest.fixture
def evil_proxy(internet: TestInternet) -> Iterator[ForwardProxy]:
    with ForwardProxy.start(internet, EVIL) as proxy:
        yield proxy


def _hook_command(proxy_url: str) -> str:
    """curl through the build's own proxy to the allowed registry; a marker if it worked."""
    return f'https_proxy={proxy_url} curl -s -o /dev/null https://{NPM_REGISTRY}/ && touch "$INIT_CWD/tunnel-ok"; true'


def _records(watched: Watched) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (watched.out / "record.jsonl").read_text().splitlines() if line.strip()]


def test_bare_the_hook_reaches_the_registry_through_its_own_proxy(
    internet: TestInternet, evil_proxy: ForwardProxy, tmp_path: Path
) -> None:
    command = ["sh", "-c", _hook_command(evil_proxy.url)]
    run_bare(command, internet=internet, home=tmp_path / "home", env={"INIT_CWD": str(tmp_path)})
    assert (tmp_path / "tunnel-ok").exists()
    assert [(r["method"], r["target"]) for r in evil_proxy.requests()] == [("CONNECT", f"{NPM_REGISTRY}:443")]


def test_audit_tunnels_through_the_builds_proxy_and_judges_its_address(
    hooks: Hooks, evil_proxy: ForwardProxy, tmp_path: Path
) -> None:
    package = hooks.publish("own-proxy", _hook_command(evil_proxy.url))
    watched = hooks.install(package)
    assert_exit(watched, 0)
    assert (tmp_path / "project" / "tunnel-ok").exists(), watched.described()
    assert [(r["method"], r["target"]) for r in evil_proxy.requests()] == [("CONNECT", f"{NPM_REGISTRY}:443")]
    found = assert_found(watched, "unfamiliar-egress", package, HOOK)
    assert evil_proxy.address in hosts_of(found), watched.described()
    flows = [e for e in _records(watched) if e.get("kind") == "egress-flow"]
    connects = [f for f in flows if f.get("method") == "CONNECT"]
    assert any(f["host"] == NPM_REGISTRY and f["connected_to"] == evil_proxy.address for f in connects), connects
    assert_replay_agrees(watched)


@pytest.mark.parametrize("net", [None, "sandbox"])
def test_block_refuses_the_connect_before_the_proxy_gets_it(
    hooks: Hooks, evil_proxy: ForwardProxy, tmp_path: Path, net: str | None
) -> None:
    package = hooks.publish("own-proxy", _hook_command(evil_proxy.url))
    watched = hooks.install(package, mode="block", net=net)
    assert_exit(watched, POLICY_FAILED)
    assert evil_proxy.requests() == []
    assert not (tmp_path / "project" / "tunnel-ok").exists()
    found = assert_found(watched, "unfamiliar-egress", package, HOOK)
    assert evil_proxy.address in hosts_of(found), watched.described()
    assert_replay_agrees(watched)


def _direct_hook(evil_ip: str) -> str:
    return textwrap.dedent(
        f"""\
        require("http").get({{ host: "{evil_ip}", port: 80, path: "/direct" }}, (r) => r.resume())
          .on("error", () => {{}});
        """
    )


def test_job_level_proxy_is_the_upstream(internet: TestInternet, hooks: Hooks, evil_ip: str, tmp_path: Path) -> None:
    package = hooks.publish("direct-contact", "node hook.js", files={"hook.js": _direct_hook(evil_ip)})
    with ForwardProxy.start(internet, EXFIL) as job_proxy:
        policy = tmp_path / "policy.yaml"
        policy.write_text(f"version: 1\nallow:\n  hosts:\n    - {job_proxy.address}\n")
        job_env = {"HTTPS_PROXY": job_proxy.url, "https_proxy": job_proxy.url, "NO_PROXY": "", "no_proxy": ""}
        watched = hooks.install(package, policy=policy, env=job_env)
        assert_exit(watched, 0)
        targets = [(r["method"], r["target"]) for r in job_proxy.requests()]
    # npm's own requests went to the job's proxy (as it was told), and so did the hook's
    # direct connection: ciwatch tunnels it there.
    assert ("CONNECT", f"{NPM_REGISTRY}:443") in targets, targets
    assert ("CONNECT", f"{evil_ip}:80") in targets, targets
    assert [r.path for r in internet.requests_to(EVIL)] == ["/direct"]
    found = assert_found(watched, "unfamiliar-egress", package, HOOK)
    assert hosts_of(found) == {evil_ip}, watched.described()
    hosts = {f["host"] for f in findings_of(watched, "unfamiliar-egress")}
    assert NPM_REGISTRY not in hosts and job_proxy.address not in hosts, watched.described()
    ready = next(e for e in _records(watched) if e.get("kind") == "proxy-ready")
    assert ready["upstream"] == f"{job_proxy.address}:{job_proxy.port}"
    assert_replay_agrees(watched)


def test_job_level_proxy_is_the_upstream_in_env_mode(
    internet: TestInternet, hooks: Hooks, evil_ip: str, tmp_path: Path
) -> None:
    # --net env points the build's proxy variables at ciwatch's own listener: that listener
    # forwards through the job's proxy, so a network that lets only the job's proxy out works.
    package = hooks.publish("direct-contact-env", "node hook.js", files={"hook.js": _direct_hook(evil_ip)})
    with ForwardProxy.start(internet, EXFIL) as job_proxy:
        policy = tmp_path / "policy.yaml"
        policy.write_text(f"version: 1\nallow:\n  hosts:\n    - {job_proxy.address}\n")
        job_env = {"HTTPS_PROXY": job_proxy.url, "https_proxy": job_proxy.url, "NO_PROXY": "", "no_proxy": ""}
        watched = hooks.install(package, policy=policy, env=job_env, net="env")
        assert_exit(watched, 0)
        targets = [(r["method"], r["target"]) for r in job_proxy.requests()]
    assert ("CONNECT", f"{NPM_REGISTRY}:443") in targets, targets
    # The hook ignored the proxy variables: its direct connection is judged by its address.
    found = assert_found(watched, "unfamiliar-egress", package, HOOK)
    assert evil_ip in hosts_of(found), watched.described()
    hosts = {f["host"] for f in findings_of(watched, "unfamiliar-egress")}
    assert NPM_REGISTRY not in hosts and job_proxy.address not in hosts, watched.described()
    ready = next(e for e in _records(watched) if e.get("kind") == "proxy-ready")
    assert ready["upstream"] == f"{job_proxy.address}:{job_proxy.port}"
    assert_replay_agrees(watched)
