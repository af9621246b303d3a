"""daemon-outside-trace, judged on records built with tests/test_rules.py's ``Build``: a
``build-server`` event is a medium finding whose hint says how to avoid that server; the
facts that decide which local servers are build servers (facts/buildservers.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ciwatch.facts.buildservers import adopts_orphans, build_tool_among, known_server
from ciwatch.policy.model import Severity
from ciwatch.record.events import BuildServer
from tests.test_rules import Build, found, only

GRADLE_DAEMON = [
    "/usr/lib/jvm/java-17-openjdk-amd64/bin/java",
    "-Xmx512m",
    "-cp",
    "/usr/share/gradle/lib/gradle-launcher-4.4.1.jar",
    "org.gradle.launcher.daemon.bootstrap.GradleDaemon",
    "4.4.1",
]


@pytest.fixture
def build(tmp_path: Path) -> Build:
    return Build(tmp_path, command=("gradle", "build"))


def test_a_build_served_by_a_gradle_daemon_outside_the_trace_is_medium_with_gradles_hint(build: Build) -> None:
    client = build.root.spawn(["java", "-cp", "gradle-launcher.jar", "org.gradle.launcher.GradleMain", "build"])
    seq = build.add(
        BuildServer(
            pid=client.pid, server_pid=4242, server="Gradle daemon", argv=GRADLE_DAEMON, endpoint="tcp 127.0.0.1:41234"
        )
    )
    finding = only(build.judge(), "daemon-outside-trace")
    assert finding.severity is Severity.MEDIUM
    assert finding.evidence == (seq,)
    assert "Gradle daemon (pid 4242" in finding.message and "tcp 127.0.0.1:41234" in finding.message
    assert "--no-daemon" in finding.hint and "org.gradle.daemon=false" in finding.hint
    assert finding.lineage.endswith("java -cp"), finding.lineage


def test_a_generic_server_gets_the_rules_own_hint(build: Build) -> None:
    argv = ["/opt/tools/compile-server", "--listen", "/run/cs.sock"]
    build.add(
        BuildServer(pid=100, server_pid=77, server="a server running gcc", argv=argv, endpoint="unix /run/cs.sock")
    )
    finding = only(build.judge(), "daemon-outside-trace")
    assert "a server running gcc" in finding.message
    assert finding.hint.startswith("A server started before `ciwatch run`")


def test_no_build_server_event_no_finding_and_the_rule_can_be_turned_off(build: Build, tmp_path: Path) -> None:
    build.root.connect("127.0.0.1", 5432)  # a database the tests use: a connect, not a build server
    assert found(build.judge(), "daemon-outside-trace") == []
    (tmp_path / "other").mkdir()
    other = Build(tmp_path / "other", command=("gradle", "build"))
    other.add(
        BuildServer(pid=100, server_pid=1, server="Gradle daemon", argv=GRADLE_DAEMON, endpoint="tcp 127.0.0.1:1")
    )
    assert found(other.judge("version: 1\nrules: {daemon-outside-trace: off}\n"), "daemon-outside-trace") == []


@pytest.mark.parametrize(
    ("argv", "name", "advice"),
    [
        (GRADLE_DAEMON, "Gradle daemon", "--no-daemon"),
        (
            [
                "java",
                "-cp",
                "kotlin-daemon.jar",
                "org.jetbrains.kotlin.daemon.KotlinCompileDaemon",
                "--daemon-runFilesPath",
            ],
            "Kotlin compile daemon",
            "kotlin.compiler.execution.strategy=in-process",
        ),
        (["bazel(app)", "-jar", "/root/.cache/bazel/_bazel_root/install/abc/A-server.jar"], "Bazel server", "--batch"),
        (["/usr/local/bin/sccache"], "sccache server", "sccache --stop-server"),
        (["python3", "/opt/x/sccache", "--serve"], "sccache server", "sccache --stop-server"),
        (["/repo/node_modules/.bin/turbo", "--skip-infer", "daemon"], "turbo daemon", "turbo daemon stop"),
        (["node", "/repo/node_modules/nx/src/daemon/server/start.js"], "Nx daemon", "NX_DAEMON=false"),
    ],
)
def test_known_build_servers_are_named_with_how_to_avoid_them(argv: list[str], name: str, advice: str) -> None:
    server = known_server(argv)
    assert server is not None and server.name == name
    assert advice in server.avoid


@pytest.mark.parametrize(
    "argv",
    [
        ["/usr/sbin/nscd"],
        ["/usr/bin/dbus-daemon", "--system"],
        ["/usr/lib/postgresql/15/bin/postgres", "-D", "/var/lib/postgresql"],
        ["python3", "-m", "http.server"],
        ["/usr/bin/turbo", "run", "build"],  # a turbo client, not its daemon
        ["java", "-jar", "app.jar"],
        [],
    ],
)
def test_ordinary_local_services_are_not_build_servers(argv: list[str]) -> None:
    assert known_server(argv) is None


def test_a_generic_server_is_one_caught_running_a_build_tool() -> None:
    assert (
        build_tool_among([["bash", "-c", "x"], ["/usr/bin/x86_64-linux-gnu-gcc-12", "-c"], ["/usr/bin/cc1"]]) == "cc1"
    )
    assert build_tool_among([["/usr/bin/rustc", "--crate-name", "x"]]) == "rustc"
    assert build_tool_among([["python3", "worker.py"], ["java", "-jar", "svc.jar"], ["sleep", "1"]]) is None


@pytest.mark.parametrize(
    ("argv", "adopts"),
    [
        (["/sbin/init"], True),
        (["/lib/systemd/systemd", "--user"], True),
        (["/usr/bin/tini", "--", "run.sh"], True),
        (["/usr/bin/containerd-shim-runc-v2", "-namespace", "moby"], True),
        (["python3", "compile-server"], False),
        (["/usr/bin/sccache"], False),
    ],
)
def test_orphan_adopters_are_never_generic_build_servers(argv: list[str], adopts: bool) -> None:
    """A build step's orphaned ``make`` is init's child: init is not a build server for it."""
    assert adopts_orphans(argv) is adopts
