"""Legitimate install hooks don't fail a build under the default policy (policies/default.yaml).

Three packages whose hooks do what real ones do, installed by the real npm or pip from the test
internet under ``ciwatch run``: a native module that node-gyp compiles against the node headers
already on the machine; a package whose postinstall runs a binary shipped in its own tarball;
and a Python sdist built with setup.py. Each verdict is pass or warn, never fail; none reaches
a host outside the job's registries (no unfamiliar-egress finding at all); and ``ciwatch check``
on the record gives the same verdict and findings.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.support.attacks import (
    DEFAULT_POLICY,
    STRICT_POLICY,
    Watched,
    assert_replay_agrees,
    findings_of,
    npm_install,
    npm_project,
    pip_install,
    watch,
)
from tests.support.internet import EVIL, EXFIL, NPM_REGISTRY, PYPI_FILES, PYPI_INDEX, TestInternet

pytestmark = [pytest.mark.npm, pytest.mark.pip, pytest.mark.root]

ADDON_C = """\
#include <node_api.h>

static napi_value Add(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value args[2], sum;
  double a, b;
  napi_get_cb_info(env, info, &argc, args, NULL, NULL);
  napi_get_value_double(env, args[0], &a);
  napi_get_value_double(env, args[1], &b);
  napi_create_double(env, a + b, &sum);
  return sum;
}

static napi_value Init(napi_env env, napi_value exports) {
  napi_value fn;
  napi_create_function(env, "add", NAPI_AUTO_LENGTH, Add, NULL, &fn);
  napi_set_named_property(env, exports, "add", fn);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, Init)
"""

BINDING_GYP = {"targets": [{"target_name": "adder", "sources": ["src/adder.c"]}]}


def _node_headers_dir() -> Path:
    """The directory node-gyp takes as ``nodedir``: the one whose include/node holds the headers
    of the node that runs (Debian's nodejs puts them in /usr/include/node), so that node-gyp
    builds against them and downloads nothing."""
    node = shutil.which("node")
    assert node is not None
    version = subprocess.run([node, "-p", "process.versions.node"], capture_output=True, text=True).stdout.strip()
    candidates = [Path(node).resolve().parent.parent, Path("/usr"), Path("/usr/local")]
    for prefix in candidates:
        header = prefix / "include" / "node" / "node_version.h"
        if header.exists() and (prefix / "include" / "node" / "common.gypi").exists():
            text = header.read_text()
            wanted = zip(("MAJOR", "MINOR", "PATCH"), version.split("."), strict=True)
            if all(f"#define NODE_{part}_VERSION {number}\n" in text for part, number in wanted):
                return prefix
    pytest.fail(f"no headers for node {version} under {[str(c) for c in candidates]}: install the node headers")


def _judged(watched: Watched) -> None:
    """Not fail, nothing outside the registries, and the replay agrees."""
    assert watched.code == 0, watched.stderr[-4000:]
    verdict = watched.verdict
    assert verdict["verdict"] in ("pass", "warn"), watched.described()
    assert findings_of(watched, "unfamiliar-egress") == [], watched.described()
    assert_replay_agrees(watched)


def _only_registries_were_reached(internet: TestInternet) -> None:
    hosts = {request.host for request in internet.requests_to()}
    assert hosts <= {NPM_REGISTRY, PYPI_INDEX, PYPI_FILES}, hosts
    assert not [n for n in internet.dns_queries() if n.endswith((EVIL, EXFIL))]


def test_native_module_built_by_node_gyp_against_local_headers(internet: TestInternet, tmp_path: Path) -> None:
    internet.publish_npm(
        "native-adder",
        "1.2.0",
        package_json_extra={"main": "index.js", "gypfile": True},
        files={
            "binding.gyp": json.dumps(BINDING_GYP, indent=2),
            "src/adder.c": ADDON_C,
            "index.js": "module.exports = require('./build/Release/adder.node');\n",
        },
    )
    project = npm_project(tmp_path / "project")
    watched = watch(
        internet,
        tmp_path / "home",
        project,
        tmp_path / "out",
        npm_install("native-adder@1.2.0"),
        policy=DEFAULT_POLICY,
        env={"npm_config_nodedir": str(_node_headers_dir())},
    )
    _judged(watched)
    # node-gyp really ran as the package's install hook, and built a module that works.
    record_text = (watched.out / "record.jsonl").read_text()
    assert "node-gyp" in record_text
    added = subprocess.run(
        ["node", "-p", "require('native-adder').add(2, 40)"], cwd=project, capture_output=True, text=True
    )
    assert added.stdout.strip() == "42", added.stderr
    _only_registries_were_reached(internet)


def test_postinstall_runs_its_own_bundled_binary(internet: TestInternet, tmp_path: Path) -> None:
    setup = textwrap.dedent(
        """\
        #!/bin/sh
        # Check that the prebuilt binary for this platform runs, then record that it does.
        set -e
        here=$(dirname "$0")
        "$here/prebuilt/linux-x64/helper" --version > /dev/null
        echo '{"binary": "prebuilt/linux-x64/helper"}' > "$here/prebuilt/selected.json"
        """
    )
    internet.publish_npm(
        "prebuilt-helper",
        "3.0.1",
        package_json_extra={"bin": {"helper": "prebuilt/linux-x64/helper"}, "scripts": {"postinstall": "./install.sh"}},
        files={"install.sh": setup, "prebuilt/linux-x64/helper": Path("/bin/true").read_bytes()},
        executables=["install.sh", "prebuilt/linux-x64/helper"],
    )
    project = npm_project(tmp_path / "project")
    watched = watch(
        internet,
        tmp_path / "home",
        project,
        tmp_path / "out",
        npm_install("prebuilt-helper@3.0.1"),
        policy=DEFAULT_POLICY,
    )
    _judged(watched)
    assert (project / "node_modules" / "prebuilt-helper" / "prebuilt" / "selected.json").exists()
    _only_registries_were_reached(internet)


def test_pip_sdist_built_with_setup_py(internet: TestInternet, tmp_path: Path) -> None:
    setup_code = textwrap.dedent(
        """\
        import os
        import platform

        # Record how the package was built, as many setup.py files do.
        with open(os.path.join("cleanpkg", "_build.py"), "w") as handle:
            handle.write(f"PYTHON = {platform.python_version()!r}\\n")
        """
    )
    internet.publish_sdist(
        "cleanpkg",
        "1.4.0",
        files={"cleanpkg/__init__.py": "from cleanpkg._build import PYTHON\n"},
        setup_code=setup_code,
        backend="setuptools",
    )
    site = tmp_path / "site"
    watched = watch(
        internet,
        tmp_path / "home",
        tmp_path,
        tmp_path / "out",
        pip_install(site, "cleanpkg==1.4.0"),
        policy=DEFAULT_POLICY,
    )
    _judged(watched)
    imported = subprocess.run(
        [sys.executable, "-c", "import cleanpkg; print(cleanpkg.PYTHON)"],
        env={"PYTHONPATH": str(site)},
        capture_output=True,
        text=True,
    )
    assert imported.stdout.strip() and imported.returncode == 0, imported.stderr
    _only_registries_were_reached(internet)


@pytest.mark.parametrize("declared", [True, False], ids=["allowed-by-the-project", "not-allowed"])
def test_strict_policy_passes_a_clean_project_that_allows_its_hooks(
    internet: TestInternet, tmp_path: Path, declared: bool
) -> None:
    """Under policies/strict.yaml (block) a clean project passes when it allows its packages'
    hooks itself (npm's allowScripts, imported by `hooks.import: auto`); the same install
    without that allowance fails the job on unapproved-hook, after the build succeeded."""
    internet.publish_npm(
        "quiet-hook",
        "1.4.0",
        package_json_extra={"scripts": {"postinstall": "node -e \"require('fs').writeFileSync('ok', '1')\""}},
    )
    allow = {"allowScripts": {"quiet-hook": True}} if declared else {}
    project = npm_project(tmp_path / "project", **allow)
    watched = watch(
        internet, tmp_path / "home", project, tmp_path / "out", npm_install("quiet-hook@1.4.0"), policy=STRICT_POLICY
    )
    assert (project / "node_modules" / "quiet-hook" / "ok").exists(), watched.stderr[-4000:]
    if declared:
        assert watched.code == 0, watched.described()
        assert watched.verdict["verdict"] == "pass", watched.described()
    else:
        assert watched.code == 3, watched.described()
        assert watched.verdict["verdict"] == "fail"
        assert "unapproved-hook" in watched.rules()
    assert_replay_agrees(watched)
    _only_registries_were_reached(internet)
