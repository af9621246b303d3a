"""Package fixtures for the end-to-end tests, built in tmp dirs, and the loopback servers their hooks reach.

- npm: a package directory with lifecycle scripts, and its ``npm pack`` tarball; a project to
  install it into, whose ``package.json`` allows the package's install scripts the way a user
  would (``allowScripts``, keyed by the ``file:`` spec, since a local package has no trusted
  registry name).
- pip: sdists (``PKG-INFO``, as ``setup.py sdist`` makes them), one with only a ``setup.py`` and
  one with a ``pyproject.toml`` naming setuptools' PEP 517 backend; their build spawns
  ``sh -c`` that writes a file. A venv to install them into that sees the test runner's own
  setuptools and wheel (installed by the ``test`` extra), since ``--no-build-isolation``
  fetches nothing.
- Loopback HTTP and HTTPS servers (127.0.0.1 only), with a throwaway CA the clients trust.

Nothing here reaches a registry: npm installs local paths, pip runs with ``--no-index``.
"""

from __future__ import annotations

import http.server
import io
import json
import os
import ssl
import subprocess
import sysconfig
import tarfile
import textwrap
import threading
import venv
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.internet.ca import TestCA

# -- npm ---------------------------------------------------------------------------------

#: npm settings that keep a local install from reaching out on its own (update check, audit,
#: funding); set in the environment so that the command line stays the one a user types.
NPM_QUIET_ENV = {
    "npm_config_update_notifier": "false",
    "npm_config_audit": "false",
    "npm_config_fund": "false",
}


@dataclass(frozen=True)
class NpmPackage:
    name: str
    version: str
    directory: Path
    tarball: Path

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"


def npm_env(cache: Path) -> dict[str, str]:
    """Environment for running npm in a test: quiet, with its own cache directory."""
    return {**NPM_QUIET_ENV, "npm_config_cache": str(cache)}


def make_npm_package(
    root: Path, name: str, version: str, scripts: Mapping[str, str], files: Mapping[str, str] | None = None
) -> NpmPackage:
    """``root/name/`` with package.json and ``files``, and ``root/name-version.tgz`` from ``npm pack``."""
    directory = root / name
    directory.mkdir(parents=True)
    manifest = {"name": name, "version": version, "description": "ciwatch test package", "scripts": dict(scripts)}
    (directory / "package.json").write_text(json.dumps(manifest, indent=2) + "\n")
    for relative, text in (files or {}).items():
        (directory / relative).write_text(text)
    env = {**os.environ, **npm_env(root / ".npm-cache")}
    subprocess.run(
        ["npm", "pack", "--silent", "--pack-destination", str(root)],
        cwd=directory,
        env=env,
        check=True,
        capture_output=True,
    )
    tarball = root / f"{name}-{version}.tgz"
    assert tarball.is_file(), f"npm pack did not write {tarball}"
    return NpmPackage(name, version, directory, tarball)


def npm_allow_key(source: Path) -> str:
    """The ``allowScripts`` key for a local directory or tarball dependency."""
    return f"file:{source.resolve()}"


def make_npm_project(directory: Path, allow_scripts_from: list[Path]) -> Path:
    """An empty project whose package.json allows install scripts of the given local sources."""
    directory.mkdir(parents=True, exist_ok=True)
    manifest = {
        "name": "ciwatch-test-project",
        "version": "1.0.0",
        "private": True,
        "allowScripts": {npm_allow_key(source): True for source in allow_scripts_from},
    }
    (directory / "package.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return directory


#: The hook package's lifecycle scripts: npm runs each as ``sh -c 'sh ./hook.sh EVENT'``.
HOOK_EVENTS = ("preinstall", "postinstall")

#: Run by each hook: a shell writes an executable into ``$INIT_CWD/hookbin`` and runs it, then
#: curl, wget and node fetch from the loopback servers (URLs and CA from the environment). Every
#: request path starts with the hook's name, so the server's log says which hook made it.
HOOK_SH = textwrap.dedent(
    """\
    set -eu
    event="$1"
    bindir="$INIT_CWD/hookbin"
    sh -c 'mkdir -p "$1" && printf "#!/bin/sh\\necho tool %s\\n" "$2" > "$1/tool-$2" && chmod +x "$1/tool-$2"' \\
        sh "$bindir" "$event"
    "$bindir/tool-$event"
    curl -fsS --noproxy '*' -o /dev/null "$HOOK_HTTP_URL/$event/curl"
    wget -q --no-proxy -O /dev/null "$HOOK_HTTP_URL/$event/wget"
    node ./fetch.js "$HOOK_HTTPS_URL/$event/node"
    curl -fsS --noproxy '*' --cacert "$HOOK_CA" -o /dev/null "$HOOK_HTTPS_URL/$event/curl-tls"
    """
)

#: node's own https module (no proxy, no npm): trusts the test CA through NODE_EXTRA_CA_CERTS.
FETCH_JS = textwrap.dedent(
    """\
    const https = require("https");
    https
      .get(process.argv[2], (response) => {
        response.resume();
        response.on("end", () => process.exit(response.statusCode === 200 ? 0 : 1));
      })
      .on("error", (error) => {
        console.error(`fetch.js: ${error.message}`);
        process.exit(1);
      });
    """
)


def make_hook_package(root: Path, name: str = "hookpkg", version: str = "1.2.3") -> NpmPackage:
    """A package whose preinstall and postinstall run ``hook.sh`` (see HOOK_SH)."""
    scripts = {event: f"sh ./hook.sh {event}" for event in HOOK_EVENTS}
    return make_npm_package(root, name, version, scripts, {"hook.sh": HOOK_SH, "fetch.js": FETCH_JS})


# -- pip ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class PythonSdist:
    name: str
    version: str
    path: Path
    pep517: bool
    """True: pyproject.toml names setuptools.build_meta; False: a setup.py alone."""
    mark: str
    """File name the build writes into ``$BUILD_MARK_DIR``."""


#: setup.py of the sdists: its build spawns ``sh -c`` that writes a file (every time pip runs
#: it: metadata, then the wheel).
_SETUP_PY = textwrap.dedent(
    """\
    import os
    import subprocess

    from setuptools import setup

    mark = os.path.join(os.environ["BUILD_MARK_DIR"], {mark!r})
    subprocess.run(["sh", "-c", 'echo "built $1" > "$2"', "sh", {name!r}, mark], check=True)
    setup(name={name!r}, version={version!r}, py_modules=[{name!r}])
    """
)

_PYPROJECT = textwrap.dedent(
    """\
    [build-system]
    requires = ["setuptools>=40.8"]
    build-backend = "setuptools.build_meta"
    """
)


def make_python_sdist(root: Path, name: str, version: str, *, pep517: bool) -> PythonSdist:
    """``root/name-version.tar.gz``: an sdist laid out as ``setup.py sdist`` makes it."""
    mark = f"{name}-built"
    files = {
        "PKG-INFO": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\nSummary: ciwatch test package\n",
        "setup.py": _SETUP_PY.format(name=name, version=version, mark=mark),
        f"{name}.py": "VALUE = 1\n",
    }
    if pep517:
        files["pyproject.toml"] = _PYPROJECT
    root.mkdir(parents=True, exist_ok=True)
    path = root / f"{name}-{version}.tar.gz"
    with tarfile.open(path, "w:gz") as archive:
        for relative, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(f"{name}-{version}/{relative}")
            info.size = len(data)
            info.mode = 0o644
            archive.addfile(info, io.BytesIO(data))
    return PythonSdist(name, version, path, pep517, mark)


def make_venv(directory: Path) -> Path:
    """A venv for pip to install into; returns its python.

    It has no pip or setuptools of its own: a ``.pth`` file puts the test runner's
    site-packages after its own (``--system-site-packages`` would name the base interpreter's,
    not those of a venv the tests run from), so pip, setuptools and wheel are the runner's,
    and whatever pip installs goes into this venv.
    """
    venv.EnvBuilder(with_pip=False).create(directory)
    python = directory / "bin" / "python"
    own = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    (Path(own) / "_ciwatch_test_runner.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return python


def pip_env(mark_dir: Path, cache: Path) -> dict[str, str]:
    """No pip configuration file (the machine's may name other indexes), no version check, a
    cache of the test's own (pip keeps the wheels it builds), and where the builds write."""
    return {
        "PIP_CONFIG_FILE": os.devnull,
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        "PIP_CACHE_DIR": str(cache),
        "BUILD_MARK_DIR": str(mark_dir),
    }


def pip_install_command(python: Path, sdist: PythonSdist) -> list[str]:
    return [str(python), "-m", "pip", "install", "--no-index", "--no-build-isolation", str(sdist.path)]


# -- loopback servers ----------------------------------------------------------------------


@dataclass
class LoopbackServers:
    """An HTTP and an HTTPS server on 127.0.0.1 that answer 200 to every GET and log the path."""

    http_port: int
    https_port: int
    ca_path: Path
    requests: list[tuple[str, str]] = field(default_factory=list)
    """(scheme, path) of every request served, in order."""

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def https_url(self) -> str:
        return f"https://127.0.0.1:{self.https_port}"

    def hook_env(self, prefix: str = "") -> dict[str, str]:
        """What HOOK_SH reads; ``prefix`` (``/run1``) keeps one run's requests apart."""
        return {
            "HOOK_HTTP_URL": self.http_url + prefix,
            "HOOK_HTTPS_URL": self.https_url + prefix,
            "HOOK_CA": str(self.ca_path),
            "NODE_EXTRA_CA_CERTS": str(self.ca_path),
            "no_proxy": "127.0.0.1",
            "NO_PROXY": "127.0.0.1",
        }


def _certificates(directory: Path) -> tuple[Path, Path, Path]:
    """A CA, and a server certificate for 127.0.0.1 that it signed: (ca.pem, cert.pem, key.pem)."""
    directory.mkdir(parents=True, exist_ok=True)
    authority = TestCA(directory, "ciwatch e2e test CA")
    cert_path, key_path = authority.issue("server", ["localhost"], ["127.0.0.1"])
    return authority.cert_path, cert_path, key_path


@contextmanager
def loopback_servers(directory: Path) -> Iterator[LoopbackServers]:
    ca_path, cert_path, key_path = _certificates(directory)
    lock = threading.Lock()
    log: list[tuple[str, str]] = []

    def handler(scheme: str) -> type[http.server.BaseHTTPRequestHandler]:
        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                with lock:
                    log.append((scheme, self.path))
                body = b"ok\n"
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        return Handler

    plain = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler("http"))
    tls = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler("https"))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_path, key_path)
    tls.socket = context.wrap_socket(tls.socket, server_side=True)
    threads = [threading.Thread(target=server.serve_forever, daemon=True) for server in (plain, tls)]
    for thread in threads:
        thread.start()
    try:
        yield LoopbackServers(plain.server_address[1], tls.server_address[1], ca_path, log)
    finally:
        for server in (plain, tls):
            server.shutdown()
            server.server_close()
        for thread in threads:
            thread.join()


__all__ = [
    "HOOK_EVENTS",
    "LoopbackServers",
    "NpmPackage",
    "PythonSdist",
    "loopback_servers",
    "make_hook_package",
    "make_npm_package",
    "make_npm_project",
    "make_python_sdist",
    "make_venv",
    "npm_env",
    "pip_env",
    "pip_install_command",
]
