"""A tiny forward HTTP proxy on a test host (CONNECT and absolute-form requests), run in the
test internet's namespace. It resolves names only from the test internet's own host table
(``--hosts``): a made-up name never reaches any resolver. Each request is a JSON line in
``--log`` (method, target, the Proxy-Authorization it got, whether it was tunnelled).

    with ForwardProxy.start(internet, EVIL) as proxy:
        ...  # https_proxy=proxy.url
        assert proxy.requests()[0]["target"] == "registry.npm.test:443"
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import select
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tests.support.internet.core import REPO_ROOT, TestInternet

PORT = 3128


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(OSError, asyncio.IncompleteReadError):
        while chunk := await reader.read(65536):
            writer.write(chunk)
            await writer.drain()
    with contextlib.suppress(OSError):
        writer.close()


class _Proxy:
    def __init__(self, hosts: dict[str, str], log: Path) -> None:
        self.hosts = hosts
        self.log = log

    def _write(self, entry: dict[str, Any]) -> None:
        with self.log.open("a") as out:
            out.write(json.dumps(entry) + "\n")

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, OSError):
            writer.close()
            return
        lines = head.decode("latin-1").split("\r\n")
        method, target, version = [*lines[0].split(" "), "", ""][:3]
        headers = dict(line.split(":", 1) for line in lines[1:] if ":" in line)
        auth = next((v.strip() for k, v in headers.items() if k.lower() == "proxy-authorization"), None)
        if method == "CONNECT":
            host, _, port = target.rpartition(":")
            path_rest = b""
        else:
            rest = target.split("://", 1)[-1]
            authority, _, path = rest.partition("/")
            host, _, port = authority.rpartition(":") if ":" in authority else (authority, "", "80")
            kept = [line for line in lines[1:] if line and not line.lower().startswith("proxy-")]
            path_rest = ("\r\n".join([f"{method} /{path} {version}", *kept]) + "\r\n\r\n").encode("latin-1")
        address = self.hosts.get(host.strip("[]").lower())
        self._write({"method": method, "target": target, "authorization": auth, "resolved": address})
        if address is None:
            writer.write(b"HTTP/1.1 502 Bad Gateway\r\ncontent-length: 0\r\n\r\n")
            writer.close()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(address, int(port or 80))
        except OSError:
            writer.write(b"HTTP/1.1 502 Bad Gateway\r\ncontent-length: 0\r\n\r\n")
            writer.close()
            return
        if method == "CONNECT":
            writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        else:
            up_writer.write(path_rest)
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))


async def _serve(listen: str, port: int, hosts: dict[str, str], log: Path) -> None:
    proxy = _Proxy(hosts, log)
    server = await asyncio.start_server(proxy.handle, listen, port)
    print("READY", flush=True)
    async with server:
        loop = asyncio.get_running_loop()
        # Ends when the test closes our stdin.
        await loop.run_in_executor(None, sys.stdin.read)


class ForwardProxy:
    __test__ = False

    def __init__(self, process: subprocess.Popen[bytes], address: str, port: int, log: Path) -> None:
        self.process = process
        self.address = address
        self.port = port
        self.log = log

    @property
    def url(self) -> str:
        return f"http://{self.address}:{self.port}"

    @classmethod
    def start(cls, internet: TestInternet, host: str, port: int = PORT) -> ForwardProxy:
        address = internet.address_of(host).ipv4
        log = internet.directory / "logs" / f"forward-proxy-{host}-{port}.jsonl"
        log.unlink(missing_ok=True)
        log.touch()
        hosts = {name: addresses.ipv4 for name, addresses in internet.hosts.items()}
        hosts.update({addresses.ipv4: addresses.ipv4 for addresses in internet.hosts.values()})
        argv = [
            *internet._netns_exec(),
            sys.executable,
            "-m",
            "tests.support.internet.forward_proxy",
            address,
            str(port),
            json.dumps(hosts),
            str(log),
        ]
        process = subprocess.Popen(argv, cwd=REPO_ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        assert process.stdout is not None
        ready, _, _ = select.select([process.stdout], [], [], 20)
        if not ready or process.stdout.readline().strip() != b"READY":
            process.kill()
            raise RuntimeError("the forward proxy did not start")
        return cls(process, address, port, log)

    def requests(self) -> list[dict[str, Any]]:
        time.sleep(0.2)  # the last line of a request that just ended
        return [json.loads(line) for line in self.log.read_text().splitlines() if line.strip()]

    def close(self) -> None:
        with contextlib.suppress(OSError):
            if self.process.stdin:
                self.process.stdin.close()
        try:
            self.process.wait(timeout=3)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5)

    def __enter__(self) -> ForwardProxy:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("listen")
    parser.add_argument("port", type=int)
    parser.add_argument("hosts")
    parser.add_argument("log", type=Path)
    args = parser.parse_args()
    asyncio.run(_serve(args.listen, args.port, json.loads(args.hosts), args.log))


if __name__ == "__main__":
    main()
