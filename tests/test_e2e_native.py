"""gem, bundler, cargo, dpkg, go, maven and gradle end to end: each real tool installs or builds a local fixture whose
build hook runs the shared payload (tests/support/ecosystems.py), under ``ciwatch run`` with the
default policy and the default ``--net redirect``, with the test internet's resolver (evil.test).
The verdict must name the ecosystem, the fixture's ``name@version`` and the hook.

- gem: a ``.gem`` (``gem build``) whose ``extconf.rb`` runs the payload and writes a Makefile with
  nothing to compile; installed with ``gem install --local``, and by ``bundle install --local``
  from the project's ``vendor/cache``. Debian's ruby and bundler (.ci/run).
- cargo: a binary crate with a path dependency whose ``build.rs`` runs the payload; ``cargo build
  --offline`` (no crate from any registry).
- dpkg: a ``.deb`` made with ``dpkg-deb --build`` whose ``postinst`` runs the payload, installed
  with ``dpkg -i`` and removed afterwards.
- go (Debian's golang-go): no hooks exist. ``go build`` of a project that imports a module from a
  file-system proxy runs none of its code; ``go generate`` runs the project's own directive, the
  user's command, recorded and judged as the build.
- maven: exec-maven-plugin (from Debian's Maven repository, as a file mirror) runs the payload in
  ``validate``; plugins run inside Maven's JVM, so there is no hook, and what the plugin spawns
  is the build's.
- gradle (Debian's 4.4.1): an ``Exec`` task runs the payload, in Gradle's JVM as with Maven.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from ciwatch.analysis.tree import ProcessTree
from ciwatch.record import read_record
from tests.conftest import require
from tests.support.attacks import Watched, watch
from tests.support.ecosystems import Payload, assert_findings_name_hook, assert_payload_ran
from tests.support.internet import EVIL, TestInternet

pytestmark = [pytest.mark.root]


def _run(internet: TestInternet, tmp_path: Path, cwd: Path, command: list[str], env: dict[str, str]) -> Watched:
    watched = watch(internet, tmp_path / "home", cwd, tmp_path / "out", command, env=env)
    assert watched.code == 0, watched.output[-3000:]
    return watched


# -- gem and bundler -----------------------------------------------------------------------

GEM_VERSION = "1.4.2"

GEMSPEC = """\
Gem::Specification.new do |spec|
  spec.name = {name!r}
  spec.version = {version!r}
  spec.summary = "ciwatch test gem"
  spec.authors = ["ciwatch"]
  spec.license = "MIT"
  spec.files = ["ext/hooked/extconf.rb", "ext/hooked/hook.sh"]
  spec.extensions = ["ext/hooked/extconf.rb"]
end
"""

#: Runs the payload, then leaves a Makefile with nothing to build (no ruby-dev, no compiler).
EXTCONF = """\
system("sh", File.join(__dir__, "hook.sh")) or abort("hook.sh failed")
File.write("Makefile", "all:\\n\\ninstall:\\n\\nclean:\\n")
"""


def _gem(tmp_path: Path, name: str, payload: Payload) -> Path:
    """``name-GEM_VERSION.gem``, built by the real ``gem build``."""
    source = tmp_path / "gem-source"
    ext = source / "ext" / "hooked"
    ext.mkdir(parents=True)
    (ext / "extconf.rb").write_text(EXTCONF)
    (ext / "hook.sh").write_text(payload.script)
    (source / f"{name}.gemspec").write_text(GEMSPEC.format(name=name, version=GEM_VERSION).replace("'", '"'))
    subprocess.run(["gem", "build", f"{name}.gemspec"], cwd=source, check=True, capture_output=True)
    return source / f"{name}-{GEM_VERSION}.gem"


def _gem_env(tmp_path: Path) -> dict[str, str]:
    gem_home = str(tmp_path / "gem-home")
    return {"GEM_HOME": gem_home, "GEM_PATH": gem_home, "BUNDLE_PATH": gem_home, "BUNDLE_DISABLE_SHARED_GEMS": "1"}


def test_gem_install(internet: TestInternet, tmp_path: Path) -> None:
    require("gem")
    payload = Payload("gem", tmp_path / "home" / "bin")
    gem = _gem(tmp_path, "gem-hooked", payload)
    command = ["gem", "install", "--local", "--no-document", str(gem)]
    watched = _run(internet, tmp_path, tmp_path, command, _gem_env(tmp_path))
    assert_payload_ran(payload, internet)
    assert_findings_name_hook(watched, "gem", "gem-hooked", GEM_VERSION, "extconf.rb")


def test_bundle_install(internet: TestInternet, tmp_path: Path) -> None:
    require("bundle")
    payload = Payload("bundler", tmp_path / "home" / "bin")
    gem = _gem(tmp_path, "bundler-hooked", payload)
    project = tmp_path / "project"
    (project / "vendor" / "cache").mkdir(parents=True)
    shutil.copy(gem, project / "vendor" / "cache")
    # No source: the gem comes from vendor/cache, and a registry's name stays out of the repository.
    (project / "Gemfile").write_text(f'gem "bundler-hooked", "{GEM_VERSION}"\n')
    watched = _run(internet, tmp_path, project, ["bundle", "install", "--local"], _gem_env(tmp_path))
    assert_payload_ran(payload, internet)
    assert_findings_name_hook(watched, "gem", "bundler-hooked", GEM_VERSION, "extconf.rb")


# -- cargo ---------------------------------------------------------------------------------

CARGO_VERSION = "0.5.3"

BUILD_RS = """\
fn main() {
    let status = std::process::Command::new("sh")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/hook.sh"))
        .status()
        .expect("sh");
    assert!(status.success());
}
"""


def _crate(directory: Path, name: str, manifest_extra: str = "", files: dict[str, str] | None = None) -> None:
    (directory / "src").mkdir(parents=True)
    (directory / "Cargo.toml").write_text(
        f'[package]\nname = "{name}"\nversion = "{CARGO_VERSION}"\nedition = "2021"\n\n{manifest_extra}'
    )
    for relative, text in (files or {}).items():
        (directory / relative).write_text(text)


def test_cargo_build_script_of_a_path_dependency(internet: TestInternet, tmp_path: Path) -> None:
    require("cargo")
    payload = Payload("cargo", tmp_path / "home" / "bin")
    _crate(
        tmp_path / "hooked", "cargo-hooked", files={"src/lib.rs": "", "build.rs": BUILD_RS, "hook.sh": payload.script}
    )
    app = tmp_path / "app"
    _crate(app, "app", '[dependencies]\ncargo-hooked = { path = "../hooked" }\n', {"src/main.rs": "fn main() {}\n"})
    # The run's HOME is a fresh one: rustup's toolchains stay where the machine keeps them.
    rustup_home = os.environ.get("RUSTUP_HOME", str(Path.home() / ".rustup"))
    env = {"RUSTUP_HOME": rustup_home, "CARGO_HOME": str(tmp_path / "cargo-home"), "CARGO_NET_OFFLINE": "true"}
    watched = _run(internet, tmp_path, app, ["cargo", "build", "--offline"], env)
    assert_payload_ran(payload, internet)
    assert_findings_name_hook(watched, "cargo", "cargo-hooked", CARGO_VERSION, "build.rs")


# -- dpkg ----------------------------------------------------------------------------------

DEB_VERSION = "2.0.1-1"


def _deb(tmp_path: Path, name: str, payload: Payload) -> Path:
    """``name_DEB_VERSION_all.deb`` with a postinst that runs the payload, by ``dpkg-deb --build``."""
    root = tmp_path / "deb-root"
    (root / "DEBIAN").mkdir(parents=True)
    control = f"Package: {name}\nVersion: {DEB_VERSION}\nArchitecture: all\nMaintainer: ciwatch <ci@localhost>\n"
    (root / "DEBIAN" / "control").write_text(control + "Description: ciwatch test package\n")
    postinst = root / "DEBIAN" / "postinst"
    postinst.write_text("#!/bin/sh\n" + payload.script)
    postinst.chmod(0o755)
    deb = tmp_path / f"{name}_{DEB_VERSION}_all.deb"
    subprocess.run(["dpkg-deb", "--root-owner-group", "--build", str(root), str(deb)], check=True, capture_output=True)
    return deb


@pytest.fixture
def deb_name() -> Iterator[str]:
    """The package the test installs into the machine's dpkg database, purged afterwards."""
    name = "ciwatch-dpkg-hooked"
    yield name
    subprocess.run(["dpkg", "--purge", name], capture_output=True, check=False)


@pytest.mark.parametrize("installer", ["dpkg", "apt-get"])
def test_dpkg_install_runs_postinst(internet: TestInternet, tmp_path: Path, deb_name: str, installer: str) -> None:
    """``dpkg -i``, and ``apt-get install ./x.deb`` (apt hands the file to dpkg)."""
    require(installer)
    payload = Payload(installer, tmp_path / "home" / "bin")
    deb = _deb(tmp_path, deb_name, payload)
    command = ["dpkg", "-i", str(deb)] if installer == "dpkg" else ["apt-get", "install", "-y", "-q", str(deb)]
    watched = _run(internet, tmp_path, tmp_path, command, {"DEBIAN_FRONTEND": "noninteractive"})
    assert_payload_ran(payload, internet)
    assert_findings_name_hook(watched, "dpkg", deb_name, DEB_VERSION, "postinst")


# -- go ------------------------------------------------------------------------------------

GO_MODULE = "example.test/hooked"
GO_VERSION = "v1.3.0"
GO_DIRECTIVE = "package hooked\n\n//go:generate sh hook.sh\n\n// Value is what the project uses.\nconst Value = 1\n"


def _go_proxy(directory: Path, payload: Payload) -> Path:
    """A file-system module proxy (``GOPROXY=file://...``) serving GO_MODULE at GO_VERSION, whose
    package has a ``//go:generate`` directive that would run the payload."""
    versions = directory / GO_MODULE / "@v"
    versions.mkdir(parents=True)
    go_mod = f"module {GO_MODULE}\n\ngo 1.19\n"
    files = {"go.mod": go_mod, "hooked.go": GO_DIRECTIVE, "hook.sh": payload.script}
    with zipfile.ZipFile(versions / f"{GO_VERSION}.zip", "w") as archive:
        for name, text in files.items():
            archive.writestr(f"{GO_MODULE}@{GO_VERSION}/{name}", text)
    (versions / f"{GO_VERSION}.mod").write_text(go_mod)
    (versions / f"{GO_VERSION}.info").write_text(json.dumps({"Version": GO_VERSION, "Time": "2026-01-01T00:00:00Z"}))
    (versions / "list").write_text(GO_VERSION + "\n")
    return directory


def _go_project(tmp_path: Path, payload: Payload) -> tuple[Path, dict[str, str]]:
    """A project that imports GO_MODULE (from the file proxy) and has its own directive."""
    proxy = _go_proxy(tmp_path / "goproxy", Payload("go-dependency", payload.bindir))
    project = tmp_path / "project"
    (project / "gen").mkdir(parents=True)
    (project / "go.mod").write_text(f"module example.test/project\n\ngo 1.19\n\nrequire {GO_MODULE} {GO_VERSION}\n")
    (project / "main.go").write_text(f'package main\n\nimport "{GO_MODULE}"\n\nfunc main() {{ _ = hooked.Value }}\n')
    (project / "gen" / "gen.go").write_text("package gen\n\n//go:generate sh hook.sh\n")
    (project / "gen" / "hook.sh").write_text(payload.script)
    env = {
        "GOPROXY": f"file://{proxy}",
        "GOSUMDB": "off",
        "GOFLAGS": "-mod=mod",
        "GOPATH": str(tmp_path / "gopath"),
        "GOCACHE": str(tmp_path / "gocache"),
    }
    return project, env


def test_go_build_runs_no_code_of_its_modules(internet: TestInternet, tmp_path: Path) -> None:
    """``go build`` fetches a module (from the file proxy) and compiles it: no code of any
    module runs (go has no install hooks; a dependency's ``//go:generate`` is never run by
    the build), so the record has no hook and the verdict nothing to say."""
    require("go")
    payload = Payload("go", tmp_path / "home" / "bin")
    project, env = _go_project(tmp_path, payload)
    watched = _run(internet, tmp_path, project, ["go", "build", "-o", str(tmp_path / "app"), "."], env)
    assert (tmp_path / "app").is_file()
    assert not payload.bindir.exists()
    assert ProcessTree(read_record(watched.out)).hooks == []
    assert watched.verdict["verdict"] == "pass", watched.described()


def test_go_generate_is_the_projects_own_command(internet: TestInternet, tmp_path: Path) -> None:
    """``go generate`` (Debian's go 1.19) runs only the directives of the module it runs in, never
    a dependency's: like ``npm run build``, the user's own command, not a package's hook
    (docs/architecture.md, "Where a hook begins"). What the directive does is the build's: it
    is recorded, and the build-wide rules judge it (evil.test is an unfamiliar host)."""
    require("go")
    payload = Payload("go", tmp_path / "home" / "bin")
    project, env = _go_project(tmp_path, payload)
    watched = _run(internet, tmp_path, project, ["go", "generate", "./..."], env)
    assert_payload_ran(payload, internet)
    assert not (payload.bindir / "dropped-go-dependency").exists()
    assert ProcessTree(read_record(watched.out)).hooks == []
    egress = [f for f in watched.findings if f["rule"] == "unfamiliar-egress"]
    assert [(f["host"], f["package"], f["hook"]) for f in egress] == [(EVIL, None, None)], watched.described()


# -- maven ---------------------------------------------------------------------------------

POM = """\
<project>
  <modelVersion>4.0.0</modelVersion>
  <groupId>test.ciwatch</groupId>
  <artifactId>app</artifactId>
  <version>1.0</version>
  <packaging>pom</packaging>
  <build>
    <plugins>
      <plugin>
        <groupId>org.codehaus.mojo</groupId>
        <artifactId>exec-maven-plugin</artifactId>
        <version>3.1.0</version>
        <executions>
          <execution>
            <id>hook</id>
            <phase>validate</phase>
            <goals><goal>exec</goal></goals>
            <configuration>
              <executable>sh</executable>
              <arguments><argument>hook.sh</argument></arguments>
            </configuration>
          </execution>
        </executions>
      </plugin>
    </plugins>
  </build>
</project>
"""

#: Every artifact from the Maven repository Debian's packages install (libexec-maven-plugin-java
#: puts the plugin and its dependencies there), into a local repository of the test's own.
MAVEN_SETTINGS = """\
<settings>
  <localRepository>{local}</localRepository>
  <mirrors>
    <mirror>
      <id>debian</id>
      <mirrorOf>*</mirrorOf>
      <url>file:///usr/share/maven-repo</url>
    </mirror>
  </mirrors>
</settings>
"""


def test_maven_plugin_runs_in_process(internet: TestInternet, tmp_path: Path) -> None:
    """Maven runs plugins inside its own JVM: a plugin is not a process, so there is no hook's
    start to see. What a plugin spawns (exec-maven-plugin running the payload in ``validate``)
    is recorded under mvn and judged as the build's; the limit is documented
    (docs/ecosystems.md)."""
    require("mvn")
    if not Path("/usr/share/maven-repo/org/codehaus/mojo/exec-maven-plugin/3.1.0").is_dir():
        pytest.fail("Debian's libexec-maven-plugin-java is not installed; .ci/run installs it")
    payload = Payload("maven", tmp_path / "home" / "bin")
    project = tmp_path / "project"
    project.mkdir()
    (project / "pom.xml").write_text(POM)
    (project / "hook.sh").write_text(payload.script)
    # Named on the command line: Java's user.home comes from the password database, not HOME.
    settings = project / "settings.xml"
    settings.write_text(MAVEN_SETTINGS.format(local=tmp_path / "m2"))
    watched = _run(internet, tmp_path, project, ["mvn", "-B", "-q", "-s", str(settings), "validate"], {})
    assert_payload_ran(payload, internet)
    tree = ProcessTree(read_record(watched.out))
    assert tree.hooks == []
    (shell,) = [node for node in tree.nodes if node.execs and node.argv == ["sh", "hook.sh"]]
    # The mvn script execs java in the process ciwatch started: the plugin's shell is its child.
    assert shell.parent is not None and shell.parent.parent is None, tree.lineage(shell)
    assert tree.lineage(shell) == "java > hook.sh"
    egress = [f for f in watched.findings if f["rule"] == "unfamiliar-egress"]
    assert [(f["host"], f["package"], f["hook"]) for f in egress] == [(EVIL, None, None)], watched.described()


# -- gradle --------------------------------------------------------------------------------

BUILD_GRADLE = """\
task hook(type: Exec) {
    commandLine 'sh', 'hook.sh'
}
"""


def test_gradle_task_runs_in_process(internet: TestInternet, tmp_path: Path) -> None:
    """Gradle (Debian's 4.4.1) runs build scripts and plugins inside its JVM, as Maven does: an
    ``Exec`` task's shell is recorded and judged as the build's, with no hook. ``--no-daemon``:
    a daemon started before ciwatch would run the build outside the traced tree."""
    require("gradle")
    payload = Payload("gradle", tmp_path / "home" / "bin")
    project = tmp_path / "project"
    project.mkdir()
    (project / "settings.gradle").write_text("rootProject.name = 'app'\n")
    (project / "build.gradle").write_text(BUILD_GRADLE)
    (project / "hook.sh").write_text(payload.script)
    env = {"GRADLE_USER_HOME": str(tmp_path / "gradle-home")}
    watched = _run(internet, tmp_path, project, ["gradle", "--no-daemon", "--offline", "-q", "hook"], env)
    assert_payload_ran(payload, internet)
    tree = ProcessTree(read_record(watched.out))
    assert tree.hooks == []
    (shell,) = [node for node in tree.nodes if node.execs and node.argv == ["sh", "hook.sh"]]
    assert tree.lineage(shell).endswith("java > hook.sh"), tree.lineage(shell)
    egress = [f for f in watched.findings if f["rule"] == "unfamiliar-egress"]
    assert [(f["host"], f["package"], f["hook"]) for f in egress] == [(EVIL, None, None)], watched.described()
