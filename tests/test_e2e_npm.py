"""npm end to end: the real npm installs a local package whose preinstall and postinstall hooks
spawn shells, write an executable and fetch from loopback servers with curl, wget and node's
https module, all under ``ciwatch run --net off``. The record must name each hook, trace every
process back through its hook to npm, hash the executable and attribute every connection.

The package is installed both as a directory dependency and as its ``npm pack`` tarball.
Nothing reaches a registry: the sources are local paths, and the test asserts that every
connection of the run went to the loopback servers.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from ciwatch.analysis.tree import ProcessNode, ProcessTree
from ciwatch.attribution.hooks import HookAttribution
from ciwatch.record import Record
from ciwatch.record.events import DnsQuery, FileHash, FileWrite, NetConnect
from ciwatch.record.vocabulary import FileOp
from tests.conftest import require
from tests.support.packages import (
    HOOK_EVENTS,
    LoopbackServers,
    NpmPackage,
    loopback_servers,
    make_hook_package,
    make_npm_project,
    npm_env,
)
from tests.support.runner import CiwatchRun, ciwatch_command, run_ciwatch

pytestmark = pytest.mark.npm


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LoopbackServers]:
    with loopback_servers(tmp_path_factory.mktemp("npm-servers")) as running:
        yield running


@pytest.fixture(scope="module")
def hook_package(tmp_path_factory: pytest.TempPathFactory) -> NpmPackage:
    for tool in ("npm", "node", "curl", "wget"):
        require(tool)
    return make_hook_package(tmp_path_factory.mktemp("npm-package"))


@dataclass(frozen=True)
class NpmInstall:
    source: str
    """``directory`` or ``tarball``."""
    package: NpmPackage
    project: Path
    prefix: str
    """The path prefix of this run's requests to the servers."""
    run: CiwatchRun
    record: Record
    tree: ProcessTree

    @property
    def bindir(self) -> Path:
        return self.project / "hookbin"

    def hook(self, event: str) -> HookAttribution:
        found = [hook for hook in self.tree.hooks if hook.hook == event]
        assert len(found) == 1, f"{event}: {self.tree.hooks}"
        return found[0]


@pytest.fixture(scope="module", params=["directory", "tarball"])
def install(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    hook_package: NpmPackage,
    servers: LoopbackServers,
) -> NpmInstall:
    source_kind: str = request.param
    source = hook_package.directory if source_kind == "directory" else hook_package.tarball
    base = tmp_path_factory.mktemp(f"npm-{source_kind}")
    project = make_npm_project(base / "project", allow_scripts_from=[source]).resolve()
    prefix = f"/{source_kind}"
    run = run_ciwatch(
        ["--net", "off", "--", "npm", "install", "--no-audit", "--no-fund", str(source)],
        base / "out",
        cwd=project,
        env={**npm_env(base / "npm-cache"), **servers.hook_env(prefix)},
    )
    assert run.code == 0, run.stderr
    record = run.record
    return NpmInstall(source_kind, hook_package, project, prefix, run, record, ProcessTree(record))


def _nodes(tree: ProcessTree, program: str, last_arg_endswith: str) -> list[ProcessNode]:
    """Processes that exec'd ``program`` with a last argument ending so (a URL, a hook's name),
    other than a hook's own boundary and the ``sh ./hook.sh EVENT`` that runs the script."""
    return [
        node
        for node in tree.nodes
        if node.execs
        and os.path.basename(node.argv[0]) == program
        and node.argv[-1].endswith(last_arg_endswith)
        and not node.starts_hook
        and node.argv[1:2] != ["./hook.sh"]
    ]


def test_hooks_ran_allowed_and_fetched(install: NpmInstall, servers: LoopbackServers) -> None:
    # allowScripts covered the package: npm ran its scripts without holding them back or warning.
    assert "allowScripts" not in install.run.stderr
    for event in HOOK_EVENTS:
        assert (install.bindir / f"tool-{event}").is_file()
    served = [(scheme, path) for scheme, path in servers.requests if path.startswith(install.prefix + "/")]
    expected = []
    for event in HOOK_EVENTS:
        base = f"{install.prefix}/{event}"
        expected += [("http", f"{base}/curl"), ("http", f"{base}/wget"), ("https", f"{base}/node")]
        expected += [("https", f"{base}/curl-tls")]
    assert served == expected
    end = install.record.end
    assert end is not None and end.clean and end.exit_code == 0


def test_each_hook_is_named_with_package_version_and_event(install: NpmInstall) -> None:
    found = {(hook.ecosystem, hook.package, hook.version, hook.hook) for hook in install.tree.hooks}
    assert found == {("npm", "hookpkg", "1.2.3", event) for event in HOOK_EVENTS}
    assert len(install.tree.hooks) == len(HOOK_EVENTS)
    for event in HOOK_EVENTS:
        boundary = next(node for node in install.tree.nodes if node.pid == install.hook(event).pid)
        assert boundary.argv == ["sh", "-c", f"sh ./hook.sh {event}"]
        assert install.tree.lineage(boundary) == f"npm install > {event} of hookpkg@1.2.3"


def test_every_tool_traces_back_through_its_hook_to_npm(install: NpmInstall) -> None:
    tree = install.tree
    for event in HOOK_EVENTS:
        hook = install.hook(event)
        through = f"npm install > {event} of hookpkg@1.2.3 > hook.sh"
        expected = {
            "sh": ([n for n in _nodes(tree, "sh", event) if n.argv[1] == "-c"], f"{through} > sh -c"),
            "curl": (_nodes(tree, "curl", f"{install.prefix}/{event}/curl"), f"{through} > curl"),
            "curl (tls)": (_nodes(tree, "curl", f"{install.prefix}/{event}/curl-tls"), f"{through} > curl"),
            "wget": (_nodes(tree, "wget", f"{install.prefix}/{event}/wget"), f"{through} > wget -q"),
            "node": (_nodes(tree, "node", f"{install.prefix}/{event}/node"), f"{through} > fetch"),
        }
        for tool, (nodes, lineage) in expected.items():
            assert len(nodes) == 1, f"{event} {tool}: {[n.argv for n in nodes]}"
            assert nodes[0].hook == hook, f"{event} {tool}"
            assert tree.lineage(nodes[0]) == lineage


def test_written_executable_is_hashed_and_attributed(install: NpmInstall) -> None:
    tree = install.tree
    hashes = [item.event for item in install.record.events if isinstance(item.event, FileHash)]
    writes = [
        (item.seq, item.event)
        for item in install.record.events
        if isinstance(item.event, FileWrite) and item.event.op is FileOp.OPEN
    ]
    for event in HOOK_EVENTS:
        tool = install.bindir / f"tool-{event}"
        content = tool.read_bytes()
        hashed = [found for found in hashes if found.path == str(tool)]
        assert hashed, f"no file-hash for {tool}"
        for found in hashed:
            assert found.sha256 == hashlib.sha256(content).hexdigest()
            assert (found.file_type, found.size) == ("script", len(content))
        # Hashed when run, with its execute bits (and, with fanotify, when first closed, before
        # its chmod).
        assert hashed[-1].mode & 0o111 == 0o111
        opened = [seq for seq, write in writes if write.path == str(tool)]
        assert len(opened) == 1
        writer = tree.node_at(opened[0])
        assert writer is not None and writer.hook == install.hook(event)
        assert tree.lineage(writer) == f"npm install > {event} of hookpkg@1.2.3 > hook.sh > sh -c"


def test_every_connection_is_to_loopback_and_attributed_to_its_hook(
    install: NpmInstall, servers: LoopbackServers
) -> None:
    tree = install.tree
    connects = [(item.seq, item.event) for item in install.record.events if isinstance(item.event, NetConnect)]
    assert {(c.family, c.address, c.protocol) for _, c in connects} == {("inet", "127.0.0.1", "tcp")}
    assert not [item for item in install.record.events if isinstance(item.event, DnsQuery)]
    seen = set()
    for seq, connect in connects:
        node = tree.node_at(seq)
        assert node is not None and node.hook is not None, connect
        url = node.argv[-1]
        (event,) = [event for event in HOOK_EVENTS if f"{install.prefix}/{event}/" in url]
        assert node.hook == install.hook(event), (connect, tree.lineage(node))
        seen.add((event, os.path.basename(node.argv[0]), connect.port))
    expected = set()
    for event in HOOK_EVENTS:
        expected |= {(event, "curl", servers.http_port), (event, "wget", servers.http_port)}
        expected |= {(event, "node", servers.https_port), (event, "curl", servers.https_port)}
    assert seen == expected


def test_report_shows_hooks_executables_and_loopback_servers(install: NpmInstall, servers: LoopbackServers) -> None:
    report = subprocess.run(
        [*ciwatch_command(), "report", "--no-color", str(install.run.out_dir)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for event in HOOK_EVENTS:
        assert f"npm: {event} of hookpkg@1.2.3 -> hook.sh, sh -c" in report
        # Hashed when it ran and again at the end of the run: one line.
        assert report.count(f"{install.bindir / f'tool-{event}'} (script, sha256 ") == 1
    network = report.split("\nNetwork", 1)[1].split("\n\n", 1)[0]
    for event in HOOK_EVENTS:
        hook_and_servers = (
            f"\n  {event} of hookpkg@1.2.3:\n"
            f"    127.0.0.1:{servers.http_port} (local x2) by curl, wget -q\n"
            f"    127.0.0.1:{servers.https_port} (local x2) by curl, fetch"
        )
        assert hook_and_servers in network, network
