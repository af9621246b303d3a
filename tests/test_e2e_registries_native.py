"""cargo, gem, bundler and apt against registries of the test internet, end to end: the real
tool fetches a fixture package over the network (not from a local file), under ``ciwatch run``
with the default policy and the default ``--net redirect``, and the fixture's build hook runs
the shared payload (tests/support/ecosystems.py).

Each test checks the three things tests/test_e2e_native.py can't, as it installs from local files:

- trust: the package came through ciwatch's proxy over HTTPS (an ``EgressFlow`` with a 200 and
  the package's bytes), so the client trusted the run's CA through what ciwatch injected
  (tests/unit/egress/test_trust_native_clients.py pins the variables); apt over plain HTTP too;
- discovery: the registry's host was allowed before the build asked it (a ``RegistryAllowed``
  of the ecosystem, from the tool's configuration or from the build's own command line, or an
  ``AllowlistLearned`` for a download host an allowed index named), and the only unfamiliar
  host is evil.test;
- attribution: the payload's findings name the ecosystem, the package, its version and its
  hook, and nothing else is found (fetching from the registry raises nothing of its own).

The registries: a cargo sparse index (tests/support/internet/crates.py), a gem source made by
``gem generate_index`` (gems.py), an apt repository made by ``dpkg-scanpackages`` (apt_repo.py).
"""

from __future__ import annotations

import hashlib
import os
import shlex
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from ciwatch.record.events import AllowlistLearned, EgressFlow, RegistryAllowed
from tests.conftest import require
from tests.support.attacks import Watched, assert_replay_agrees, watch
from tests.support.ecosystems import Payload, assert_findings_name_hook, assert_payload_ran
from tests.support.internet import APT_REPO, CRATES_FILES, CRATES_INDEX, GEMS, TestInternet
from tests.support.internet.apt_repo import publish_debs, sources_line
from tests.support.internet.crates import INDEX_URL, publish_crate
from tests.support.internet.gems import SOURCE_URL, publish_gems
from tests.test_e2e_native import BUILD_RS, DEB_VERSION, GEM_VERSION, _deb, _gem, _gem_env

pytestmark = [pytest.mark.root]


def _run(internet: TestInternet, tmp_path: Path, cwd: Path, command: list[str], env: dict[str, str]) -> Watched:
    watched = watch(internet, tmp_path / "home", cwd, tmp_path / "out", command, env=env)
    assert watched.code == 0, watched.output[-3000:]
    # The registries discovered (from the command line too) are in the record: a replay
    # judges with the same allowlist, without discovering anything again.
    assert_replay_agrees(watched)
    return watched


def assert_fetched_through_proxy(watched: Watched, host: str, path: str, body: bytes, scheme: str = "https") -> None:
    """``scheme://host/path`` went through ciwatch's proxy and came back whole: over HTTPS, the
    client trusted the run's CA (a client that didn't would have closed the handshake)."""
    flows = [f for f in watched.events(EgressFlow) if f.host == host and f.url and f.url.endswith(path)]
    assert flows, f"no flow to {host}{path}: {[(f.host, f.url) for f in watched.events(EgressFlow)]}"
    (flow,) = flows[-1:]
    assert (flow.scheme, flow.status, flow.sha256) == (scheme, 200, hashlib.sha256(body).hexdigest()), flow


def assert_discovered(watched: Watched, host: str, ecosystem: str) -> None:
    """``host`` was allowed as a registry of ``ecosystem`` (not reported as unfamiliar)."""
    allowed = [(r.host, r.ecosystem) for r in watched.events(RegistryAllowed)]
    assert (host, ecosystem) in allowed, allowed


def assert_only_the_hook_is_found(watched: Watched, package: str, version: str) -> None:
    """Every finding is about the fixture's hook: fetching from the registry (its index, its
    downloads, apt's SRV lookup) raised nothing of its own."""
    others = [f for f in watched.findings if f["package"] != f"{package}@{version}"]
    assert not others, watched.described()


def assert_learned(watched: Watched, host: str) -> None:
    """``host`` was learned from an allowed index's answer (a download host)."""
    learned = [event.host for event in watched.events(AllowlistLearned)]
    assert host in learned, learned


# -- cargo ---------------------------------------------------------------------------------

CRATE = "cargo-reg-hooked"
CRATE_VERSION = "0.7.1"

#: Two ways a project names a registry: a named one its dependency picks, or a replacement of
#: cargo's default (which then never asks the default index).
CARGO_CONFIGS = {
    "named-registry": f'[registries.testreg]\nindex = "{INDEX_URL}"\n',
    "replace-default": f'[source.crates-io]\nreplace-with = "testreg"\n\n[source.testreg]\nregistry = "{INDEX_URL}"\n',
}


@pytest.mark.parametrize("config", sorted(CARGO_CONFIGS))
def test_cargo_build_from_a_sparse_registry(internet: TestInternet, tmp_path: Path, config: str) -> None:
    require("cargo")
    payload = Payload(f"cargo-{config}", tmp_path / "home" / "bin")
    manifest = f'[package]\nname = "{CRATE}"\nversion = "{CRATE_VERSION}"\nedition = "2021"\nbuild = "build.rs"\n'
    crate = publish_crate(
        internet,
        CRATE,
        CRATE_VERSION,
        {"Cargo.toml": manifest, "src/lib.rs": "", "build.rs": BUILD_RS, "hook.sh": payload.script},
    )
    app = tmp_path / "app"
    (app / "src").mkdir(parents=True)
    (app / ".cargo").mkdir()
    (app / ".cargo" / "config.toml").write_text(CARGO_CONFIGS[config])
    registry = ', registry = "testreg"' if config == "named-registry" else ""
    (app / "Cargo.toml").write_text(
        '[package]\nname = "app"\nversion = "0.1.0"\nedition = "2021"\n\n'
        f'[dependencies]\n{CRATE} = {{ version = "={CRATE_VERSION}"{registry} }}\n'
    )
    (app / "src" / "main.rs").write_text("fn main() {}\n")
    # The run's HOME is a fresh one: rustup's toolchains stay where the machine keeps them.
    rustup_home = os.environ.get("RUSTUP_HOME", str(Path.home() / ".rustup"))
    env = {"RUSTUP_HOME": rustup_home, "CARGO_HOME": str(tmp_path / "cargo-home"), "CARGO_TERM_COLOR": "never"}
    watched = _run(internet, tmp_path, app, ["cargo", "build"], env)
    assert_payload_ran(payload, internet)
    assert_fetched_through_proxy(watched, CRATES_FILES, crate.download_path, crate.data)
    assert_discovered(watched, CRATES_INDEX, "cargo")
    assert_learned(watched, CRATES_FILES)
    assert_findings_name_hook(watched, "cargo", CRATE, CRATE_VERSION, "build.rs")
    assert_only_the_hook_is_found(watched, CRATE, CRATE_VERSION)


# -- gem and bundler -----------------------------------------------------------------------

GEM_NAME = "gem-reg-hooked"


def _publish_gem(internet: TestInternet, tmp_path: Path, name: str, payload: Payload) -> tuple[str, bytes]:
    """``name`` at GEM_VERSION on gems.test: its download path and bytes."""
    gem = _gem(tmp_path, name, payload)
    served = publish_gems(internet, [gem], tmp_path / "gem-server")
    path = f"/gems/{gem.name}"
    return path, served[path]


@pytest.mark.parametrize("named_in", ["command-line", "gemrc"])
def test_gem_install_from_a_gem_source(internet: TestInternet, tmp_path: Path, named_in: str) -> None:
    """The source named on gem's command line (``--source``: added to gem's default source,
    whose index gem asks too, at the host bundler's fetcher names for it), or in the user's
    ``~/.gemrc`` (which ``gem sources --list`` reports)."""
    require("gem")
    payload = Payload(f"gem-{named_in}", tmp_path / "home" / "bin")
    path, data = _publish_gem(internet, tmp_path, GEM_NAME, payload)
    command = ["gem", "install", "--no-document", GEM_NAME]
    if named_in == "command-line":
        command[2:2] = ["--source", SOURCE_URL]
    else:
        (tmp_path / "home").mkdir()
        (tmp_path / "home" / ".gemrc").write_text(f":sources:\n- {SOURCE_URL}\n")
    work = tmp_path / "work"
    work.mkdir()
    watched = _run(internet, tmp_path, work, command, _gem_env(tmp_path))
    assert_payload_ran(payload, internet)
    assert_fetched_through_proxy(watched, GEMS, path, data)
    assert_discovered(watched, GEMS, "gem")
    assert_findings_name_hook(watched, "gem", GEM_NAME, GEM_VERSION, "extconf.rb")
    assert_only_the_hook_is_found(watched, GEM_NAME, GEM_VERSION)


def test_bundle_install_from_a_gem_source(internet: TestInternet, tmp_path: Path) -> None:
    require("bundle")
    name = "bundler-reg-hooked"
    payload = Payload("bundler-source", tmp_path / "home" / "bin")
    path, data = _publish_gem(internet, tmp_path, name, payload)
    project = tmp_path / "project"
    project.mkdir()
    (project / "Gemfile").write_text(f'source "{SOURCE_URL.rstrip("/")}"\n\ngem "{name}", "{GEM_VERSION}"\n')
    watched = _run(internet, tmp_path, project, ["bundle", "install"], _gem_env(tmp_path))
    assert_payload_ran(payload, internet)
    assert_fetched_through_proxy(watched, GEMS, path, data)
    assert_discovered(watched, GEMS, "gem")
    assert_findings_name_hook(watched, "gem", name, GEM_VERSION, "extconf.rb")
    assert_only_the_hook_is_found(watched, name, GEM_VERSION)


# -- apt -----------------------------------------------------------------------------------

APT_PACKAGE = "ciwatch-apt-repo-hooked"


@pytest.fixture
def apt_package() -> Iterator[str]:
    """The package the test installs into the machine's dpkg database, purged afterwards."""
    yield APT_PACKAGE
    subprocess.run(["dpkg", "--purge", APT_PACKAGE], capture_output=True, check=False)


def _private_apt(tmp_path: Path, scheme: str) -> list[str]:
    """apt's options for a sources list, lists, archives and caches of the test's own: the
    machine's apt setup is neither read nor changed (dpkg's database is the machine's)."""
    state = tmp_path / "apt"
    for directory in ("lists/partial", "archives/partial"):
        (state / directory).mkdir(parents=True)
    (state / "sources.list").write_text(sources_line(scheme))
    settings = {
        "Dir::Etc::SourceList": state / "sources.list",
        "Dir::Etc::SourceParts": "/dev/null",
        "Dir::State::Lists": state / "lists",
        "Dir::Cache::Archives": state / "archives",
        "Dir::Cache::pkgcache": "",
        "Dir::Cache::srcpkgcache": "",
        # Other tests (and other jobs on the machine) may hold dpkg's lock for a while.
        "DPkg::Lock::Timeout": "300",
    }
    return [word for key, value in settings.items() for word in ("-o", f"{key}={value}")]


@pytest.mark.parametrize("scheme", ["https", "http"])
def test_apt_get_update_and_install_from_a_repository(
    internet: TestInternet, tmp_path: Path, apt_package: str, scheme: str
) -> None:
    """``apt-get update && apt-get install``, as a CI step runs them (one ``sh -c``): discovery
    asks ``apt-get indextargets`` with the step's own ``-o`` options, so it knows the private
    sources list; apt's SRV lookup of the repository (``_http._tcp.apt.test``) is no finding."""
    require("apt-get")
    payload = Payload(f"apt-{scheme}", tmp_path / "home" / "bin")
    deb = _deb(tmp_path, apt_package, payload)
    served = publish_debs(internet, [deb], tmp_path / "apt-repo")
    options = " ".join(shlex.quote(option) for option in _private_apt(tmp_path, scheme))
    step = f"apt-get {options} update && apt-get {options} install -y -q --no-install-recommends {apt_package}"
    watched = _run(internet, tmp_path, tmp_path, ["sh", "-c", step], {"DEBIAN_FRONTEND": "noninteractive"})
    assert_payload_ran(payload, internet)
    deb_path = f"/pool/{deb.name}"
    assert_fetched_through_proxy(watched, APT_REPO, deb_path, served[deb_path], scheme=scheme)
    assert_discovered(watched, APT_REPO, "apt")
    assert f"_http._tcp.{APT_REPO}" in internet.dns_queries() or scheme == "https"
    assert_findings_name_hook(watched, "dpkg", apt_package, DEB_VERSION, "postinst")
    assert_only_the_hook_is_found(watched, apt_package, DEB_VERSION)
