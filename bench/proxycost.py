#!/usr/bin/env python3
"""What the egress proxy costs per request: a registry-like download, bare and under ciwatch.

A local HTTPS server (a process of its own, on a non-loopback address of this machine, since
redirect mode leaves loopback alone) serves ~300 tarball-sized bodies (10-200 KB) and a few
packument-like JSON documents that name tarball URLs. The build is ``npm run fetch`` of a
small project whose script is a Node client fetching them all the way npm does: HTTP/1.1
keep-alive, 15 sockets in parallel (npm's ``maxsockets``). npm's configured registry is the
server (``npm_config_registry``), so ciwatch learns it as the job's registry at run time,
exactly as for a real one, and scans its JSON responses for download hosts.

Configurations, interleaved round robin: bare, ``ciwatch --net off`` (tracing only) and
``ciwatch`` (the default: redirect, with the proxy). ciwatch is run through a wrapper that
measures its proxy thread's CPU time (``time.thread_time``: mitmproxy runs on that thread; its
import happens on a worker thread and is not counted) and can profile it (``--profile``).

    python3 bench/proxycost.py                        # 5 rounds
    python3 bench/proxycost.py --rounds 7 --nice -10 --markdown
    python3 bench/proxycost.py --rounds 1 --only redirect --profile /tmp/proxy.prof
    python3 bench/proxycost.py --only redirect --variant http2=false   # a mitmproxy option, interleaved
    python3 bench/proxycost.py --only redirect --tree /tmp/before --tree .   # two trees, interleaved

Needs python3 (with ciwatch's dependencies), node and npm; only the standard library and
cryptography (ciwatch's own dependency) besides.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
WORK = BENCH / "work" / "proxycost"
NAME = "proxycost"

CLIENT = BENCH / "proxycost-client.js"

# -- the server ---------------------------------------------------------------------------


def _bodies(tarballs: int, packuments: int, base: str) -> dict[str, tuple[str, bytes]]:
    """path -> (content type, body): deterministic, so every round fetches the same bytes."""
    rng = random.Random(14)
    found: dict[str, tuple[str, bytes]] = {}
    for index in range(tarballs):
        found[f"/pkg{index}/-/pkg{index}-1.0.0.tgz"] = (
            "application/octet-stream",
            rng.randbytes(rng.randint(10, 200) * 1024),
        )
    for index in range(packuments):
        versions = {
            f"1.0.{v}": {
                "name": f"pkg{index}",
                "dist": {
                    "tarball": f"{base}/pkg{index}/-/pkg{index}-1.0.{v}.tgz",
                    "integrity": "sha512-" + rng.randbytes(64).hex(),
                },
            }
            for v in range(rng.randint(20, 600))
        }
        document = json.dumps({"name": f"pkg{index}", "versions": versions}).encode()
        found[f"/pkg{index}"] = ("application/vnd.npm.install-v1+json", document)
    return found


def serve(address: str, tarballs: int, packuments: int, ready: Path, certs: Path) -> None:
    import ssl
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Server(ThreadingHTTPServer):
        address_family = socket.AF_INET6 if ":" in address else socket.AF_INET
        daemon_threads = True
        connections = 0

        def process_request(self, request: object, client_address: object) -> None:
            # Connections accepted so far: whether the client's (or the proxy's) keep-alive holds.
            Server.connections += 1
            (certs / "server-connections").write_text(str(Server.connections))
            super().process_request(request, client_address)  # type: ignore[arg-type]

    server = Server((address, 0), BaseHTTPRequestHandler)
    port = server.server_address[1]
    bodies = _bodies(tarballs, packuments, _base_url(address, port))

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            found = bodies.get(self.path)
            content_type, body = found if found else ("text/plain", b"not found\n")
            self.send_response(200 if found else 404)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server.RequestHandlerClass = Handler
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certs / "server.pem", certs / "server.key")
    server.socket = context.wrap_socket(server.socket, server_side=True)
    ready.write_text(json.dumps({"port": port, "paths": sorted(bodies)}))
    server.serve_forever()


def _base_url(address: str, port: int) -> str:
    return f"https://[{address}]:{port}" if ":" in address else f"https://{address}:{port}"


def _make_certs(directory: Path, address: str) -> None:
    """A CA and a certificate for ``address`` (an IP SAN), written to ``directory``."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "proxycost bench CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(1)
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, address)]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(2)
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(address))]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    (directory / "ca.pem").write_bytes(ca.public_bytes(pem))
    (directory / "server.pem").write_bytes(cert.public_bytes(pem))
    (directory / "server.key").write_bytes(
        key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )


def _local_address() -> str:
    """An address of this machine that is not loopback (redirect mode leaves loopback alone)."""
    for probe in ("192.0.2.123", "10.255.255.1", "198.51.100.1"):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            try:
                sock.connect((probe, 9))  # no packet is sent: the kernel only picks a source
            except OSError:
                continue
            address = sock.getsockname()[0]
            if not ipaddress.ip_address(address).is_loopback:
                return str(address)
    sys.exit("proxycost: no non-loopback address on this machine; give one with --address")


# -- ciwatch, measured from inside --------------------------------------------------------


def run_ciwatch(stats: Path, profile: str, options: list[str], argv: list[str]) -> None:
    """ciwatch's CLI, its proxy thread measured (and profiled), extra mitmproxy options set."""
    import cProfile

    from ciwatch.egress import proxy

    thread_main = proxy.EgressProxy._thread_main

    def measured(self: proxy.EgressProxy) -> None:
        # CPU time, not wall: on a busy machine wall time is mostly waiting for a CPU.
        profiler = cProfile.Profile(time.thread_time) if profile else None
        if profiler is not None:
            profiler.enable()
        try:
            thread_main(self)
        finally:
            if profiler is not None:
                profiler.disable()
                profiler.dump_stats(profile)
            stats.write_text(json.dumps({"proxy_cpu_s": time.thread_time()}))

    proxy.EgressProxy._thread_main = measured  # type: ignore[method-assign]
    if options:
        from mitmproxy import master

        run = master.Master.run

        async def run_with_options(self: master.Master) -> None:
            updates = dict(option.split("=", 1) for option in options)
            self.options.update(**{k: _option_value(self.options, k, v) for k, v in updates.items()})
            await run(self)

        master.Master.run = run_with_options  # type: ignore[method-assign]
    from ciwatch.cli import main as cli_main

    sys.argv = ["ciwatch", *argv]
    cli_main()


def _option_value(options: object, key: str, text: str) -> object:
    current = getattr(options, key)
    if isinstance(current, bool):
        return text.lower() in ("1", "true", "yes", "on")
    return type(current)(text) if current is not None else text


# -- the measurement ----------------------------------------------------------------------


def _setup(args: argparse.Namespace) -> tuple[subprocess.Popen[bytes], Path, dict[str, str], int]:
    WORK.mkdir(parents=True, exist_ok=True)
    address = args.address or _local_address()
    _make_certs(WORK, address)
    ready = WORK / "server.json"
    ready.unlink(missing_ok=True)
    server = subprocess.Popen(
        [sys.executable, __file__, "_serve", address, str(args.tarballs), str(args.packuments), str(ready), str(WORK)]
    )
    while not ready.exists() or not ready.read_text():
        if server.poll() is not None:
            sys.exit("proxycost: the server did not start")
        time.sleep(0.05)
    served = json.loads(ready.read_text())
    base = _base_url(address, served["port"])
    # Packuments first, as npm asks for them before their tarballs.
    paths = sorted(served["paths"], key=lambda p: (p.endswith(".tgz"), p))
    (WORK / "urls.txt").write_text("".join(f"{base}{path}\n" for path in paths))
    project = WORK / "project"
    project.mkdir(exist_ok=True)
    script = f"node {CLIENT} {WORK / 'urls.txt'} {WORK / 'client-result.json'}"
    (project / "package.json").write_text(
        json.dumps({"name": "proxycost", "private": True, "scripts": {"fetch": script}})
    )
    (WORK / "policy.yml").write_text(f"version: 1\nmode: audit\nallow:\n  registries: auto\n  hosts: ['{address}']\n")
    env = {
        **os.environ,
        "npm_config_registry": f"{base}/",
        "NODE_EXTRA_CA_CERTS": str(WORK / "ca.pem"),
        "npm_config_update_notifier": "false",
        "npm_config_cafile": str(WORK / "ca.pem"),
    }
    return server, project, env, len(paths)


def _options_of(configuration: str) -> list[str]:
    """The mitmproxy options of a configuration "ciwatch (redirect) +KEY=VALUE,KEY=VALUE"."""
    return configuration.rsplit(" +", 1)[1].split(",") if " +" in configuration else []


def _command(configuration: str, args: argparse.Namespace, out: Path) -> list[str]:
    build = ["npm", "run", "--silent", "fetch"]
    if configuration == "bare":
        return build
    ciwatch = [sys.executable, __file__, "_ciwatch", str(WORK / "proxy-stats.json"), args.profile or ""]
    ciwatch += [",".join(_options_of(configuration)), "--", "run", "--quiet", "--out", str(out)]
    ciwatch += ["--policy", str(WORK / "policy.yml"), "--upstream-ca", str(WORK / "ca.pem")]
    if configuration == "ciwatch --net off":
        return [*ciwatch, "--net", "off", "--", *build]
    return [*ciwatch, "--", *build]


def _once(configuration: str, args: argparse.Namespace, project: Path, env: dict[str, str]) -> dict[str, float]:
    out = WORK / "out"
    connections = WORK / "server-connections"
    accepted = int(connections.read_text()) if connections.exists() else 0
    subprocess.run(
        ["rm", "-rf", str(out), str(WORK / "client-result.json"), str(WORK / "proxy-stats.json")], check=True
    )
    started = time.monotonic()
    if configuration.endswith("]"):  # a tree of its own: "ciwatch (redirect) [DIR]"
        env = {**env, "PYTHONPATH": configuration.rsplit(" [", 1)[1][:-1]}
    done = subprocess.run(_command(configuration, args, out), cwd=project, env=env, capture_output=True, text=True)
    wall = time.monotonic() - started
    if done.returncode != 0:
        sys.exit(f"proxycost: {configuration} failed ({done.returncode}): {done.stderr[-2000:]}")
    client = json.loads((WORK / "client-result.json").read_text())
    result = {
        "connections": (int(connections.read_text()) if connections.exists() else 0) - accepted,
        "wall": wall,
        "fetch": client["elapsed"],
        "first": client["first"],
        "requests": client["requests"],
    }
    if configuration != "bare":
        end = [json.loads(line) for line in (out / "record.jsonl").read_text().splitlines() if '"end"' in line]
        result["tracer_cpu"] = end[-1].get("tracer_cpu_s", 0.0) if end else 0.0
        flows = [line for line in (out / "record.jsonl").read_text().splitlines() if '"egress-flow"' in line]
        result["flows"] = len(flows)
    stats = WORK / "proxy-stats.json"
    if stats.exists():
        result["proxy_cpu"] = json.loads(stats.read_text())["proxy_cpu_s"]
    return result


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "_serve":
        serve(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), Path(sys.argv[5]), Path(sys.argv[6]))
        return 0
    if len(sys.argv) > 1 and sys.argv[1] == "_ciwatch":
        stats, profile, options, _dashes, *rest = sys.argv[2:]
        run_ciwatch(Path(stats), profile, [o for o in options.split(",") if o], rest)
        return 0
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--tarballs", type=int, default=300)
    parser.add_argument("--packuments", type=int, default=20)
    parser.add_argument("--address", help="the server's address (default: this machine's non-loopback one)")
    parser.add_argument("--only", help="comma-separated: bare, off, redirect")
    parser.add_argument("--profile", help="write a cProfile of the proxy thread here (last run)")
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="KEY=VALUE[,KEY=VALUE]",
        help="also the proxied run with these mitmproxy options (repeat; interleaved with the rest)",
    )
    parser.add_argument("--nice", type=int, default=0, help="run at this niceness increment (e.g. -10; root)")
    parser.add_argument("--markdown", action="store_true")
    parser.add_argument("--tree", action="append", default=[], help="measure the ciwatch of this directory (repeat)")
    args = parser.parse_args()
    if args.nice:
        sys.path.insert(0, str(BENCH))
        from run import run_at_niceness

        run_at_niceness(args.nice)
    names = {"bare": "bare", "off": "ciwatch --net off", "redirect": "ciwatch (redirect)"}
    chosen = [names[n] for n in (args.only.split(",") if args.only else names)]
    if args.tree:  # the proxied run once per tree, interleaved with the rest
        chosen = [n for n in chosen if n != names["redirect"]] + [f"{names['redirect']} [{t}]" for t in args.tree]
    chosen += [f"{names['redirect']} +{variant}" for variant in args.variant]
    server, project, env, requests = _setup(args)
    results: dict[str, list[dict[str, float]]] = {name: [] for name in chosen}
    try:
        for round_number in range(args.rounds):
            order = chosen[round_number % len(chosen) :] + chosen[: round_number % len(chosen)]
            for name in order:
                results[name].append(_once(name, args, project, env))
                print(f"proxycost: round {round_number + 1} {name}: {results[name][-1]}", file=sys.stderr)
    finally:
        server.terminate()
    print(_report(results, requests, args.markdown))
    (WORK / "results.json").write_text(json.dumps(results, indent=1))
    return 0


def _report(results: dict[str, list[dict[str, float]]], requests: int, markdown: bool) -> str:
    median = statistics.median
    bare = median(r["fetch"] for r in results["bare"]) if results.get("bare") else None
    lines = [
        f"{requests} requests, {len(next(iter(results.values())))} rounds (medians)",
        "",
        "| configuration | fetch wall | vs bare | run wall | ciwatch CPU | proxy thread CPU | per request |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, runs in results.items():
        fetch = median(r["fetch"] for r in runs)
        ratio = f"{fetch / bare:.2f}x" if bare else ""
        proxy = median(r["proxy_cpu"] for r in runs) if all("proxy_cpu" in r for r in runs) else None
        lines.append(
            f"| {name} | {fetch:.2f} s | {ratio} | {median(r['wall'] for r in runs):.2f} s"
            f" | {median(r.get('tracer_cpu', 0.0) for r in runs):.2f} s"
            f" | {f'{proxy:.2f} s' if proxy is not None else ''}"
            f" | {f'{proxy / requests * 1000:.2f} ms' if proxy is not None else ''} |"
        )
    text = "\n".join(lines)
    return text if markdown else text.replace("|", " ").replace("---", "")


if __name__ == "__main__":
    sys.exit(main())
