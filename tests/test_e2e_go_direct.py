"""go with ``GOPROXY=direct`` (Debian's go 1.19): a module fetched straight from its version
control host, under ciwatch, is egress like any other. The host is the test internet's
``vcs.test``: it answers go's ``?go-get=1`` question with a ``go-import`` meta tag and serves a
git repository over git's dumb HTTP protocol (the files of a bare repository after
``git update-server-info``). go asks the meta tag itself, then runs git, which fetches the
repository: both are in the record as flows to vcs.test, from go and from git's https helper
under it, and the host is an ``unfamiliar-egress`` under the default policy (nothing taught
ciwatch about it), and nothing when the policy allows it.

``GOTOOLCHAIN`` downloads are not tested: go 1.19 has no toolchain switching (it came with
go 1.21), and no newer go is in this machine's Debian suites.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from ciwatch.analysis.tree import ProcessTree
from ciwatch.record import read_record
from ciwatch.record.events import EgressFlow
from tests.conftest import require
from tests.support.attacks import DEFAULT_POLICY, Watched, watch
from tests.support.internet import VCS, TestInternet

pytestmark = [pytest.mark.root]

MODULE = f"{VCS}/hooked"
VERSION = "v1.0.0"
GO_IMPORT = f'<html><head><meta name="go-import" content="{MODULE} git https://{VCS}/hooked.git"></head></html>\n'


def _git(cwd: Path, *args: str) -> None:
    env = {"GIT_AUTHOR_NAME": "ci", "GIT_AUTHOR_EMAIL": "ci@example.test", "GIT_COMMITTER_NAME": "ci"}
    env |= {"GIT_COMMITTER_EMAIL": "ci@example.test", "HOME": str(cwd), "PATH": "/usr/bin:/bin"}
    subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True)


def _publish_module(internet: TestInternet, tmp_path: Path) -> None:
    """MODULE at VERSION: a git repository served over dumb HTTP, and go's meta tag for it."""
    work = tmp_path / "module"
    work.mkdir()
    (work / "go.mod").write_text(f"module {MODULE}\n\ngo 1.19\n")
    (work / "hooked.go").write_text("package hooked\n\n// Value is what the project uses.\nconst Value = 1\n")
    _git(work, "init", "-q", "-b", "main")
    _git(work, "add", ".")
    _git(work, "commit", "-q", "-m", "hooked")
    _git(work, "tag", VERSION)
    bare = tmp_path / "hooked.git"
    _git(tmp_path, "clone", "-q", "--bare", str(work), str(bare))
    _git(bare, "update-server-info")
    for file in bare.rglob("*"):
        if file.is_file():
            internet.serve(VCS, f"/hooked.git/{file.relative_to(bare)}", file.read_bytes(), content_type="text/plain")
    internet.serve(VCS, "/hooked", GO_IMPORT, content_type="text/html")


def _download(internet: TestInternet, tmp_path: Path, policy: Path | None = None) -> Watched:
    require("go")
    require("git")
    _publish_module(internet, tmp_path)
    project = tmp_path / "project"
    project.mkdir()
    (project / "go.mod").write_text(f"module example.test/project\n\ngo 1.19\n\nrequire {MODULE} {VERSION}\n")
    env = {
        "GOPROXY": "direct",
        "GOSUMDB": "off",
        "GOPATH": str(tmp_path / "gopath"),
        "GOCACHE": str(tmp_path / "gocache"),
        "GOFLAGS": "-mod=mod",
    }
    command = ["go", "mod", "download", "-x"]
    watched = watch(
        internet, tmp_path / "home", project, tmp_path / "out", command, env=env, policy=policy or DEFAULT_POLICY
    )
    assert watched.code == 0, watched.output[-3000:]
    assert (tmp_path / "gopath" / "pkg" / "mod" / f"{MODULE}@{VERSION}" / "hooked.go").is_file()
    return watched


def test_a_direct_module_fetch_is_egress_of_go_and_git(internet: TestInternet, tmp_path: Path) -> None:
    watched = _download(internet, tmp_path)
    record = read_record(watched.out)
    tree = ProcessTree(record)
    flows = [(item.seq, item.event) for item in record.events if isinstance(item.event, EgressFlow)]
    flows = [(seq, flow) for seq, flow in flows if flow.host == VCS]
    lineages = {tree.lineage_at(seq) for seq, _ in flows}
    urls = {flow.url for _, flow in flows}
    assert f"https://{VCS}/hooked?go-get=1" in urls, urls
    assert any(url and url.startswith(f"https://{VCS}/hooked.git/info/refs") for url in urls), urls
    # go asks for the meta tag itself; git's https helper, under go's git, fetches the repository.
    assert lineages == {"go mod download", "go mod download > git > git-remote-https"}, lineages
    assert [request.path for request in internet.requests_to(VCS)], "the test host saw no request"
    egress = [f for f in watched.findings if f["rule"] == "unfamiliar-egress"]
    assert {f["host"] for f in egress} == {VCS}, watched.described()


def test_a_direct_module_host_the_policy_allows_is_no_finding(internet: TestInternet, tmp_path: Path) -> None:
    """The same download with the module's host in ``allow.hosts``: the flows are recorded, no finding."""
    policy = tmp_path / "policy.yml"
    policy.write_text(DEFAULT_POLICY.read_text().replace("  hosts: []", f"  hosts: [{VCS}]"))
    assert f"hosts: [{VCS}]" in policy.read_text()
    watched = _download(internet, tmp_path, policy)
    assert [flow for flow in watched.events(EgressFlow) if flow.host == VCS]
    assert watched.findings == [], watched.described()
    assert watched.verdict["verdict"] == "pass"
