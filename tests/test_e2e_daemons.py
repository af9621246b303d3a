"""Build servers started before ``ciwatch run``, outside the traced tree (daemon-outside-trace),
with real servers: a real Gradle daemon (Debian's gradle 4.4.1) and small Python servers.

Each server is started here, outside ciwatch, and stopped in a finalizer; the build under
ciwatch connects to it (loopback TCP, a unix socket). What must be found: the server's name,
its pid and the hint for that server. What must not: a local server that is not a build
server, a server the build starts itself, a Gradle build run with ``--no-daemon``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from ciwatch.record.events import BuildServer, ProcessExec
from tests.conftest import require
from tests.support.attacks import DEFAULT_POLICY, Watched

#: A server that answers every connection, on loopback TCP (its port written to a file) or on
#: a unix socket; with ``--child``, it keeps a child running that command (its "work").
SERVER = """\
import socket, subprocess, sys
kind, where = sys.argv[1], sys.argv[2]
if len(sys.argv) > 3:
    subprocess.Popen(sys.argv[3:], stdin=subprocess.PIPE)  # its work: waits for its input
if kind == "tcp":
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
else:
    server = socket.socket(socket.AF_UNIX)
    server.bind(where)
server.listen()
if kind == "tcp":
    open(where + ".tmp", "w").write(str(server.getsockname()[1]))
    __import__("os").rename(where + ".tmp", where)
else:
    open(where + ".ready", "w").close()
while True:
    connection, _ = server.accept()
    connection.sendall(b"ok")
    connection.close()
"""

#: The build's client: connects to each endpoint given (``tcp:PORTFILE``, ``unix:PATH``) and
#: reads the answer, so each connection is known to have reached its server.
CLIENT = """\
import socket, sys
for endpoint in sys.argv[1:]:
    kind, where = endpoint.split(":", 1)
    if kind == "tcp":
        connection = socket.create_connection(("127.0.0.1", int(open(where).read())))
    else:
        connection = socket.socket(socket.AF_UNIX)
        connection.connect(where)
    assert connection.recv(2) == b"ok", endpoint
"""


def _ciwatch(
    tmp_path: Path, cwd: Path, command: list[str], *options: str, env: dict[str, str] | None = None
) -> Watched:
    out = tmp_path / "out"
    args = [sys.executable, "-m", "ciwatch", "run", "--policy", str(DEFAULT_POLICY), *options, "--out", str(out)]
    done = subprocess.run(
        [*args, "--", *command],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=240,
    )
    watched = Watched(done.returncode, done.stdout, done.stderr, out, DEFAULT_POLICY, None, cwd)
    assert watched.code == 0, watched.output[-3000:]
    return watched


def _wait_for(path: Path, server: subprocess.Popen[bytes]) -> None:
    """Until the server has written ``path`` (it is listening): no timing, only its own word."""
    while not path.exists():
        assert server.poll() is None, "the server exited"
        os.sched_yield()


class Servers:
    """Servers started outside ciwatch (their own sessions), killed when the test ends."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.started: list[subprocess.Popen[bytes]] = []

    def start(self, name: str, kind: str, where: Path, *child: str) -> subprocess.Popen[bytes]:
        """The server script under ``name`` (what ``ps`` shows), listening at ``where``."""
        script = self.directory / name
        script.write_text(SERVER)
        server = subprocess.Popen([sys.executable, str(script), kind, str(where), *child], start_new_session=True)
        self.started.append(server)
        _wait_for(where if kind == "tcp" else Path(f"{where}.ready"), server)
        return server


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[Servers]:
    directory = tmp_path / "servers"
    directory.mkdir()
    started = Servers(directory)
    yield started
    for server in started.started:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait()


def _children_argv0(pid: int) -> list[bytes]:
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return [Path(f"/proc/{child}/cmdline").read_bytes().split(b"\0")[0] for child in children]


def _daemon_findings(watched: Watched) -> list[dict[str, object]]:
    return [f for f in watched.findings if f["rule"] == "daemon-outside-trace"]


def test_a_build_server_started_before_ciwatch_is_found_on_tcp_and_unix(servers: Servers, tmp_path: Path) -> None:
    """An "sccache" server (a Python script of that name) started outside ciwatch, reached over
    loopback TCP by one client and over a unix socket by another: both are medium findings that
    name the sccache server, its pid and how to avoid it."""
    tcp = servers.start("sccache", "tcp", tmp_path / "port")
    unix = servers.start("sccache", "unix", tmp_path / "sccache.sock")
    client = tmp_path / "client.py"
    client.write_text(CLIENT)
    command = [sys.executable, str(client), f"tcp:{tmp_path / 'port'}", f"unix:{tmp_path / 'sccache.sock'}"]
    watched = _ciwatch(tmp_path, tmp_path, command)
    found = _daemon_findings(watched)
    assert {(f["severity"], str(f["message"]).split(",")[0]) for f in found} == {
        ("medium", f"sccache server (pid {tcp.pid}"),
        ("medium", f"sccache server (pid {unix.pid}"),
    }, watched.described()
    assert all("sccache --stop-server" in str(f["hint"]) for f in found)
    endpoints = sorted(event.endpoint for event in watched.events(BuildServer))
    assert endpoints[0].startswith("tcp 127.0.0.1:") and endpoints[1] == f"unix {tmp_path / 'sccache.sock'}"


def test_a_server_of_no_known_name_is_a_build_server_when_it_runs_a_build_tool(
    servers: Servers, tmp_path: Path
) -> None:
    """A server not in the known list is one when it is running a compiler or build tool of its
    own when the build connects (here ``gcc``, waiting for its source); one that runs none is not."""
    builder = servers.start("compile-server", "unix", tmp_path / "builder.sock", "gcc", "-fsyntax-only", "-x", "c", "-")
    servers.start("dev-server", "tcp", tmp_path / "port")
    while b"gcc" not in _children_argv0(builder.pid):
        os.sched_yield()  # until its child runs gcc
    client = tmp_path / "client.py"
    client.write_text(CLIENT)
    command = [sys.executable, str(client), f"unix:{tmp_path / 'builder.sock'}", f"tcp:{tmp_path / 'port'}"]
    watched = _ciwatch(tmp_path, tmp_path, command)
    (finding,) = _daemon_findings(watched)
    assert str(finding["message"]).startswith(f"a server running gcc (pid {builder.pid}"), watched.described()
    assert str(finding["hint"]).startswith("A server started before `ciwatch run`")


def test_local_servers_that_are_not_build_servers_outside_the_trace_are_not_reported(tmp_path: Path) -> None:
    """A server the build starts itself (a test's server, named like a build server: it is traced
    all the same): no finding (the outside server that is not a build server: the test above)."""
    (tmp_path / "sccache").write_text(SERVER)
    client = tmp_path / "client.py"
    client.write_text(CLIENT)
    script = (
        f"{sys.executable} sccache tcp port & server=$!; "
        "while [ ! -e port ]; do :; done; "
        f"{sys.executable} client.py tcp:port; kill $server"
    )
    watched = _ciwatch(tmp_path, tmp_path, ["sh", "-c", script])
    assert _daemon_findings(watched) == [], watched.described()
    assert watched.events(BuildServer) == []


# -- a real Gradle daemon --------------------------------------------------------------------

BUILD_GRADLE = """\
task hook(type: Exec) {
    commandLine 'sh', '-c', 'echo ran > ran.txt'
}
"""


@pytest.fixture(scope="module")
def gradle_daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, dict[str, str]]]:
    """A Gradle project and a Gradle daemon started for it outside ciwatch (``gradle --daemon``
    leaves it running), stopped at the module's end with ``gradle --stop``."""
    require("gradle")
    tmp_path = tmp_path_factory.mktemp("gradle")
    project = tmp_path / "project"
    project.mkdir()
    (project / "settings.gradle").write_text("rootProject.name = 'app'\n")
    (project / "build.gradle").write_text(BUILD_GRADLE)
    env = {**os.environ, "GRADLE_USER_HOME": str(tmp_path / "gradle-home")}
    subprocess.run(["gradle", "--daemon", "--offline", "-q", "help"], cwd=project, env=env, check=True, timeout=240)
    try:
        yield project, {"GRADLE_USER_HOME": env["GRADLE_USER_HOME"]}
    finally:
        subprocess.run(["gradle", "--stop"], cwd=project, env=env, capture_output=True, timeout=120)


def _daemon_pids(gradle_home: str) -> list[int]:
    """The Gradle daemons of ``gradle_home`` (in their environment: their argv doesn't say)."""
    pids = []
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            argv = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
            environ = Path(f"/proc/{entry}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"org.gradle.launcher.daemon.bootstrap.GradleDaemon" in argv and (
            f"GRADLE_USER_HOME={gradle_home}".encode() in environ
        ):
            pids.append(int(entry))
    return pids


def test_a_gradle_daemon_started_before_ciwatch_runs_the_build_outside_the_trace(
    gradle_daemon: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    """``gradle hook`` under ciwatch hands the task to the daemon started before: the task ran
    (ran.txt) but its shell is not in the record, and the finding names the Gradle daemon, its
    pid and ``--no-daemon``. ``--net off``: with a proxy, ciwatch's JAVA_TOOL_OPTIONS trust store
    makes Gradle judge the earlier daemon incompatible, and the client starts its own, traced."""
    project, env = gradle_daemon
    (project / "ran.txt").unlink(missing_ok=True)
    watched = _ciwatch(tmp_path, project, ["gradle", "--offline", "-q", "hook"], "--net", "off", env=env)
    assert (project / "ran.txt").read_text() == "ran\n"
    (finding,) = _daemon_findings(watched)
    (event,) = watched.events(BuildServer)
    assert event.server == "Gradle daemon" and event.server_pid in _daemon_pids(env["GRADLE_USER_HOME"])
    assert str(finding["message"]).startswith(f"Gradle daemon (pid {event.server_pid}"), watched.described()
    assert "--no-daemon" in str(finding["hint"]) and "org.gradle.daemon=false" in str(finding["hint"])
    assert finding["lineage"] == "java", finding["lineage"]  # the gradle script execs the client JVM
    # The task's shell ran in the daemon, outside the trace: not in the record.
    assert ["sh", "-c", "echo ran > ran.txt"] not in [e.argv for e in watched.events(ProcessExec)]


def test_gradle_with_no_daemon_gives_no_finding_while_a_daemon_runs(
    gradle_daemon: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    """The same build with ``--no-daemon`` (the hint's advice), the earlier daemon still running:
    the build runs in a JVM under the trace, its task's shell is in the record, no finding."""
    project, env = gradle_daemon
    (project / "ran.txt").unlink(missing_ok=True)
    watched = _ciwatch(tmp_path, project, ["gradle", "--no-daemon", "--offline", "-q", "hook"], "--net", "off", env=env)
    assert _daemon_findings(watched) == [], watched.described()
    assert watched.events(BuildServer) == []
    assert (project / "ran.txt").read_text() == "ran\n"
    assert ["sh", "-c", "echo ran > ran.txt"] in [e.argv for e in watched.events(ProcessExec)]
