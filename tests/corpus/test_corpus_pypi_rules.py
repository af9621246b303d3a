"""The rule changes the PyPI corpus asked for, each shown on a built record (tests/test_rules.py's
Build): the ordinary case of a real sdist build is not counted (and stays in the verdict with the
reason), while the attack the rule is there for is still counted.

- exec-written-file: meson's compiler sanity check (``sanity_check_for_c.exe``, linked by ``ld``
  and run by meson) in every meson-python build; a dropper compiled from fetched source is not.
- credential-read: meson reads ~/.netrc as its own configuration at every ``meson setup``; the
  hook's own code reading it is not meson.

The last test is the exec-written-file case end to end: real pip building a local sdist whose
setup.py compiles a program with gcc and runs it (``--net off``, no registry)."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest

from tests.support.packages import make_venv, pip_env
from tests.support.runner import run_ciwatch
from tests.test_rules import HOME, Build, Proc, found, only

BUILD_DIR = "/tmp/pip-install-x1y2/pycairo_" + "0" * 32
PRIVATE = f"{BUILD_DIR}/.mesonpy-abc/meson-private"
SANITY = f"{PRIVATE}/sanity_check_for_c.exe"
ENV_BIN = "/tmp/pip-build-env-q1w2/overlay/bin"
LD = "/usr/bin/x86_64-linux-gnu-ld.bfd"


@pytest.fixture
def build(tmp_path: Path) -> Build:
    return Build(tmp_path)


def _meson(build: Build) -> Proc:
    """pip's build_wheel hook of pycairo running meson from the isolated build environment."""
    pip = build.pip_root()
    build.root.write(f"{ENV_BIN}/meson")  # the build environment is installed by pip, not a hook
    hook = build.pip_hook(pip, "pycairo", "1.29.2")
    return hook.spawn(["/venv/bin/python", f"{ENV_BIN}/meson", "setup", BUILD_DIR], path=f"{ENV_BIN}/meson")


def _link(compiler_parent: Proc, output: str) -> int:
    """``cc -o output`` through collect2 and ld, which writes the output."""
    driver = compiler_parent.spawn(["cc", "-o", output, f"{PRIVATE}/sanity_check_for_c.c"], path="/usr/bin/cc")
    collect2 = driver.spawn(["/usr/lib/gcc/x86_64-linux-gnu/12/collect2", "-o", output])
    ld = collect2.spawn(["/usr/bin/ld", "-o", output], path=LD)
    ld.write(output)
    return ld.write(output, flags=0o755)


# -- exec-written-file: a program the build compiled here ------------------------------------


def test_meson_running_its_compiler_sanity_check_is_kept_but_not_counted(build: Build) -> None:
    meson = _meson(build)
    meson.write(f"{PRIVATE}/sanity_check_for_c.c")  # meson writes the test source itself
    _link(meson, SANITY)
    meson.spawn([SANITY], path=SANITY)
    verdict = build.judge()
    finding = only(verdict, "exec-written-file")
    assert finding.package == "pycairo@1.29.2" and finding.excepted is not None
    assert "linked here by" in finding.excepted and "no hook reached the network" in finding.excepted
    assert [f for f in verdict.findings if f.excepted is None and f.rule == "exec-written-file"] == []


@pytest.mark.parametrize("contact", ["request", "dns"])
def test_a_program_compiled_after_the_hook_reached_the_network_counts(build: Build, contact: str) -> None:
    meson = _meson(build)
    fetcher = meson.spawn(["/venv/bin/python", "-c", "fetch the payload's source"])
    if contact == "request":
        fetcher.request("payload.example")
    else:
        fetcher.dns("payload.example")
    fetcher.write(f"{PRIVATE}/sanity_check_for_c.c")
    _link(meson, SANITY)
    meson.spawn([SANITY], path=SANITY)
    assert only(build.judge(), "exec-written-file").excepted is None


def test_a_download_by_another_packages_hook_counts_too(build: Build) -> None:
    """One hook stages the source, a later hook (of another package, or the same one's next
    hook) compiles and runs it: any hook's contact before the run counts."""
    pip = build.pip_root()
    build.pip_hook(pip, "stager", "1.0.0", "prepare_metadata_for_build_wheel").request("files.example")
    compiler = build.pip_hook(pip, "runner", "1.0.0")
    _link(compiler, "/tmp/runner/dropper")
    compiler.spawn(["/tmp/runner/dropper"], path="/tmp/runner/dropper")
    assert only(build.judge(), "exec-written-file").excepted is None


def test_a_file_the_hook_wrote_itself_counts_even_if_ld_wrote_it_too(build: Build) -> None:
    meson = _meson(build)
    _link(meson, SANITY)
    meson.spawn(["/venv/bin/python", "-c", "open(...).write(payload)"]).write(SANITY)
    meson.spawn([SANITY], path=SANITY)
    assert only(build.judge(), "exec-written-file").excepted is None


def test_a_process_that_wrote_before_it_became_ld_did_not_write_as_ld(build: Build) -> None:
    meson = _meson(build)
    writer = meson.spawn(["/venv/bin/python", "-c", "drop"])
    writer.write(SANITY)
    writer.exec(["/usr/bin/ld", "--version"], path=LD)
    meson.spawn([SANITY], path=SANITY)
    assert only(build.judge(), "exec-written-file").excepted is None


def test_a_linker_the_hook_wrote_is_the_hooks_own_code(build: Build) -> None:
    meson = _meson(build)
    fake_ld = f"{BUILD_DIR}/bin/ld"
    meson.spawn(["/venv/bin/python", "-c", "write ld"]).write(fake_ld)
    meson.spawn([fake_ld, "-o", SANITY], path=fake_ld).write(SANITY)
    meson.spawn([SANITY], path=SANITY)
    findings = [f for f in found(build.judge(), "exec-written-file") if SANITY in f.message]
    assert len(findings) == 1 and findings[0].excepted is None


# -- credential-read: meson's own ~/.netrc --------------------------------------------------


def test_meson_reading_netrc_as_its_configuration_is_kept_but_not_counted(build: Build) -> None:
    _meson(build).read(f"{HOME}/.netrc")
    finding = only(build.judge(), "credential-read")
    assert finding.excepted is not None and "meson reads" in finding.excepted
    assert finding.package == "pycairo@1.29.2"


def test_the_hooks_own_read_of_netrc_still_counts_after_meson_read_it(build: Build) -> None:
    meson = _meson(build)
    meson.read(f"{HOME}/.netrc")
    meson.spawn(["/venv/bin/python", "-c", "steal"]).read(f"{HOME}/.netrc")
    findings = found(build.judge(), "credential-read")
    assert sorted(f.excepted is None for f in findings) == [False, True]


def test_a_meson_the_hook_wrote_is_not_meson(build: Build) -> None:
    hook = build.pip_hook(build.pip_root(), "evil", "1.0.0")
    fake = f"{BUILD_DIR}/meson"
    hook.write(fake)
    hook.spawn(["/venv/bin/python", fake, "setup"], path="/venv/bin/python").read(f"{HOME}/.netrc")
    assert only(build.judge(), "credential-read").excepted is None


def test_a_process_only_calling_itself_meson_is_not_meson(build: Build) -> None:
    hook = build.pip_hook(build.pip_root(), "evil", "1.0.0")
    hook.spawn(["meson", "-c", "steal"], path="/usr/bin/python3").read(f"{HOME}/.netrc")
    assert only(build.judge(), "credential-read").excepted is None


# -- the same, end to end: real pip, real gcc ------------------------------------------------

#: setup.py of a local sdist whose build compiles a C program with gcc and runs it (a configure
#: check). With SEND_FIRST set, the build first sends a datagram to a documentation address: a
#: hook that reached the network before compiling (a dropper shipped as source).
_COMPILING_SETUP_PY = """\
import os, socket, subprocess, tempfile
from setuptools import setup

work = tempfile.mkdtemp()
source = os.path.join(work, "conftest.c")
with open(source, "w") as handle:
    handle.write("int main(void) { return 0; }\\n")
if os.environ.get("SEND_FIRST"):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.sendto(b"x", ("192.0.2.1", 9))
subprocess.run(["gcc", "-o", os.path.join(work, "conftest"), source], check=True)
subprocess.run([os.path.join(work, "conftest")], check=True)
setup(name="compiles", version="0.1.0", py_modules=["compiles"])
"""


def _compiling_sdist(root: Path) -> Path:
    files = {
        "PKG-INFO": "Metadata-Version: 2.1\nName: compiles\nVersion: 0.1.0\n",
        "setup.py": _COMPILING_SETUP_PY,
        "compiles.py": "VALUE = 1\n",
    }
    root.mkdir(parents=True, exist_ok=True)
    path = root / "compiles-0.1.0.tar.gz"
    with tarfile.open(path, "w:gz") as archive:
        for relative, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(f"compiles-0.1.0/{relative}")
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path


@pytest.mark.parametrize("send_first", [False, True], ids=["configure-check", "after-the-network"])
def test_a_real_build_running_what_gcc_linked(tmp_path: Path, send_first: bool) -> None:
    python = make_venv(tmp_path / "venv")
    sdist = _compiling_sdist(tmp_path / "dist")
    env = {**pip_env(tmp_path / "marks", tmp_path / "cache"), **({"SEND_FIRST": "1"} if send_first else {})}
    command = [str(python), "-m", "pip", "install", "--no-index", "--no-build-isolation", str(sdist)]
    run = run_ciwatch(["--net", "off", "--", *command], tmp_path / "out", cwd=tmp_path, env=env)
    assert run.code in (0, 1), run.stderr
    verdict = json.loads((tmp_path / "out" / "verdict.json").read_text())
    ran = [f for f in verdict["findings"] if f["rule"] == "exec-written-file" and "conftest" in f["message"]]
    assert ran and all(f["package"] == "compiles@0.1.0" for f in ran), verdict["findings"]
    if send_first:
        assert all(f["excepted"] is None for f in ran)
    else:
        assert all("linked here by ld" in (f["excepted"] or "") for f in ran)
