"""Package files built by the tests: npm tarballs, Python sdists and wheels (stdlib only).

The layouts are the ones the real tools produce: ``npm pack`` puts every file under
``package/``; an sdist is ``{name}-{version}/`` with ``PKG-INFO``; a wheel has a ``.dist-info``
with METADATA, WHEEL and a RECORD of sha256 digests.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
import re
import tarfile
import textwrap
import zipfile
from collections.abc import Iterable, Mapping
from typing import Any, Literal

FileContent = str | bytes
NPM_MTIME = 499162500  # the fixed date npm pack writes (1985-10-26)
NPM_NAME = re.compile(r"^(@[a-z0-9][a-z0-9._~-]*/)?[a-z0-9][a-z0-9._~-]*$")
PY_NAME = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?$")
VERSION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.+_-]*$")
SdistBackend = Literal["intree", "setuptools"]
WHEEL_FILE = b"Wheel-Version: 1.0\nGenerator: ciwatch-test-internet\nRoot-Is-Purelib: true\nTag: py3-none-any\n\n"


def _bytes(content: FileContent) -> bytes:
    return content.encode() if isinstance(content, str) else content


def _check_relative(path: str) -> None:
    parts = path.split("/")
    if path.startswith("/") or any(part in ("", ".", "..") for part in parts):
        raise ValueError(f"not a plain relative path: {path!r}")


def _tar_gz(entries: Iterable[tuple[str, bytes, int]], mtime: int) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data, mode in entries:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = mode
            info.mtime = mtime
            info.uname = info.gname = ""
            tar.addfile(info, io.BytesIO(data))
    out = io.BytesIO()
    with gzip.GzipFile(fileobj=out, mode="wb", mtime=0) as gz:
        gz.write(raw.getvalue())
    return out.getvalue()


def check_npm_name(name: str) -> None:
    if not NPM_NAME.match(name) or len(name) > 214:
        raise ValueError(f"not a valid npm package name: {name!r}")


def check_version(version: str) -> None:
    if not VERSION.match(version):
        raise ValueError(f"not a usable version: {version!r}")


def npm_tarball_name(name: str, version: str) -> str:
    """``name-1.0.0.tgz``; a scoped package drops its scope (``@s/x`` -> ``x-1.0.0.tgz``)."""
    return f"{name.rsplit('/', 1)[-1]}-{version}.tgz"


def build_npm_tarball(
    name: str,
    version: str,
    *,
    package_json_extra: Mapping[str, Any] | None = None,
    files: Mapping[str, FileContent] | None = None,
    executables: Iterable[str] = (),
) -> tuple[bytes, dict[str, Any]]:
    """The ``.tgz`` as ``npm pack`` lays it out, and the package.json it holds.

    ``files`` maps paths inside the package to contents; ``package.json`` is written from the
    name, version and ``package_json_extra`` (which may hold ``scripts``, ``dependencies``,
    ``bin`` and so on); ``executables`` names files that get mode 0755.
    """
    check_npm_name(name)
    check_version(version)
    manifest: dict[str, Any] = {"name": name, "version": version, **dict(package_json_extra or {})}
    files = dict(files or {})
    if "package.json" in files:
        raise ValueError("package.json is built from name, version and package_json_extra")
    executable = set(executables)
    entries = [("package/package.json", json.dumps(manifest, indent=2).encode() + b"\n", 0o644)]
    for path in sorted(files):
        _check_relative(path)
        entries.append((f"package/{path}", _bytes(files[path]), 0o755 if path in executable else 0o644))
    unknown = executable - set(files)
    if unknown:
        raise ValueError(f"executables not among the files: {sorted(unknown)}")
    return _tar_gz(entries, NPM_MTIME), manifest


def npm_integrity(data: bytes) -> tuple[str, str]:
    """(``sha512-<base64>`` integrity, sha1 hex shasum) as a packument's ``dist`` carries them."""
    return "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode(), hashlib.sha1(data).hexdigest()


# ---------------------------------------------------------------- Python


def normalize_project(name: str) -> str:
    """PEP 503 normalisation: the project's directory under ``/simple/``."""
    return re.sub(r"[-_.]+", "-", name).lower()


def dist_name(name: str) -> str:
    """The name as it appears in sdist and wheel file names (``My.Pkg`` -> ``my_pkg``)."""
    return re.sub(r"[-_.]+", "_", name).lower()


def check_python_name(name: str) -> None:
    if not PY_NAME.match(name):
        raise ValueError(f"not a valid Python project name: {name!r}")


def _metadata(name: str, version: str, summary: str, dependencies: Iterable[str], requires_python: str | None) -> str:
    lines = ["Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}", f"Summary: {summary}"]
    if requires_python:
        lines.append(f"Requires-Python: {requires_python}")
    lines += [f"Requires-Dist: {dependency}" for dependency in dependencies]
    return "\n".join(lines) + "\n\n"


def _default_python_files(name: str, version: str) -> dict[str, FileContent]:
    return {f"{dist_name(name)}/__init__.py": f'__version__ = "{version}"\n'}


def _record_hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def build_wheel_bytes(
    name: str,
    version: str,
    files: Mapping[str, FileContent],
    metadata: str,
    entry_points: Mapping[str, Mapping[str, str]] | None = None,
) -> tuple[str, bytes]:
    """(file name, bytes) of a pure-Python ``py3-none-any`` wheel holding ``files``."""
    stem = f"{dist_name(name)}-{version}"
    info = f"{stem}.dist-info"
    contents: dict[str, bytes] = {}
    for path in sorted(files):
        _check_relative(path)
        contents[path] = _bytes(files[path])
    contents[f"{info}/METADATA"] = metadata.encode()
    contents[f"{info}/WHEEL"] = WHEEL_FILE
    if entry_points:
        text = "".join(
            f"[{group}]\n" + "".join(f"{key} = {value}\n" for key, value in items.items()) + "\n"
            for group, items in entry_points.items()
        )
        contents[f"{info}/entry_points.txt"] = text.encode()
    top = sorted({path.split("/")[0].removesuffix(".py") for path in files if not path.startswith(info)})
    contents[f"{info}/top_level.txt"] = "".join(f"{item}\n" for item in top).encode()
    record = "".join(f"{path},{_record_hash(data)},{len(data)}\n" for path, data in contents.items())
    record += f"{info}/RECORD,,\n"
    contents[f"{info}/RECORD"] = record.encode()
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for path, data in contents.items():
            entry = zipfile.ZipInfo(path, date_time=(2020, 1, 1, 0, 0, 0))
            entry.external_attr = 0o644 << 16
            entry.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(entry, data)
    return f"{stem}-py3-none-any.whl", out.getvalue()


def build_wheel(
    name: str,
    version: str,
    *,
    files: Mapping[str, FileContent] | None = None,
    dependencies: Iterable[str] = (),
    requires_python: str | None = None,
    entry_points: Mapping[str, Mapping[str, str]] | None = None,
    summary: str = "a package built by the ciwatch tests",
) -> tuple[str, bytes]:
    """A pure-Python wheel; ``files`` (paths inside site-packages) default to ``<name>/__init__.py``."""
    check_python_name(name)
    check_version(version)
    files = dict(files) if files else _default_python_files(name, version)
    metadata = _metadata(name, version, summary, dependencies, requires_python)
    return build_wheel_bytes(name, version, files, metadata, entry_points)


INTREE_BACKEND = '''\
"""A PEP 517 build backend with no requirements, written by the ciwatch test internet.

It runs setup.py (if any) in-process, as setuptools would, then packs the listed files.
"""

import base64
import hashlib
import os
import runpy
import sys
import zipfile

NAME = {name!r}
VERSION = {version!r}
FILES = {files!r}
ENTRY_POINTS = {entry_points!r}
DIST = {dist!r}


def get_requires_for_build_wheel(config_settings=None):
    return []


def get_requires_for_build_sdist(config_settings=None):
    return []


def _run_setup_py(command):
    if not os.path.exists("setup.py"):
        return
    saved = sys.argv[:]
    sys.argv = ["setup.py", command]
    try:
        runpy.run_path("setup.py", run_name="__main__")
    finally:
        sys.argv = saved


def _hash(data):
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    _run_setup_py("bdist_wheel")
    info = DIST + "-" + VERSION + ".dist-info"
    contents = {{}}
    for path in FILES:
        with open(path, "rb") as handle:
            contents[path] = handle.read()
    with open("PKG-INFO", "rb") as handle:
        contents[info + "/METADATA"] = handle.read()
    contents[info + "/WHEEL"] = (
        b"Wheel-Version: 1.0\\nGenerator: ciwatch-test-internet\\nRoot-Is-Purelib: true\\nTag: py3-none-any\\n\\n"
    )
    if ENTRY_POINTS:
        contents[info + "/entry_points.txt"] = ENTRY_POINTS.encode()
    record = "".join(p + "," + _hash(d) + "," + str(len(d)) + "\\n" for p, d in contents.items())
    contents[info + "/RECORD"] = (record + info + "/RECORD,,\\n").encode()
    filename = DIST + "-" + VERSION + "-py3-none-any.whl"
    with zipfile.ZipFile(os.path.join(wheel_directory, filename), "w", zipfile.ZIP_DEFLATED) as archive:
        for path, data in contents.items():
            archive.writestr(path, data)
    return filename


def build_sdist(sdist_directory, config_settings=None):
    raise NotImplementedError("this sdist is already built")
'''


def _setup_call(name: str, version: str, files: Mapping[str, FileContent], dependencies: list[str]) -> str:
    packages = sorted({path.rsplit("/", 1)[0].replace("/", ".") for path in files if path.endswith("/__init__.py")})
    modules = sorted(path.removesuffix(".py") for path in files if "/" not in path and path.endswith(".py"))
    return textwrap.dedent(
        f"""\
        from setuptools import setup

        setup(
            name={name!r},
            version={version!r},
            packages={packages!r},
            py_modules={modules!r},
            install_requires={dependencies!r},
        )
        """
    )


def build_sdist(
    name: str,
    version: str,
    *,
    files: Mapping[str, FileContent] | None = None,
    setup_code: str = "",
    setup_py: str | None = None,
    backend: SdistBackend = "intree",
    dependencies: Iterable[str] = (),
    requires_python: str | None = None,
    entry_points: Mapping[str, Mapping[str, str]] | None = None,
    summary: str = "a package built by the ciwatch tests",
) -> tuple[str, bytes]:
    """(file name, bytes) of an sdist ``{name}-{version}.tar.gz`` of a setup.py project.

    ``setup_code`` runs whenever the sdist is built into a wheel, as the top of a setup.py does.
    ``backend="setuptools"``: a classic setup.py project (setup_code, then ``setup(...)``), built
    by the installer's setuptools, which needs ``bdist_wheel`` (setuptools >= 70.1 or the
    ``wheel`` package) where it is built. ``backend="intree"`` (default): pyproject.toml names an
    in-tree PEP 517 backend with no requirements that runs setup.py (just ``setup_code``) in
    the build process, then packs ``files``; it installs with or without build isolation and
    needs nothing from any index. ``setup_py`` replaces the whole setup.py.
    """
    check_python_name(name)
    check_version(version)
    files = dict(files) if files else _default_python_files(name, version)
    deps = list(dependencies)
    stem = f"{dist_name(name)}-{version}"
    metadata = _metadata(name, version, summary, deps, requires_python)
    tree: dict[str, bytes] = {path: _bytes(content) for path, content in files.items()}
    for path in tree:
        _check_relative(path)
    reserved = {"PKG-INFO", "setup.py", "pyproject.toml", "ciwinet_backend.py"} & set(tree)
    if reserved:
        raise ValueError(f"files may not hold {sorted(reserved)}: they are generated")
    tree["PKG-INFO"] = metadata.encode()
    if backend == "setuptools":
        text = setup_py if setup_py is not None else setup_code + "\n" + _setup_call(name, version, files, deps)
        tree["setup.py"] = text.encode()
        if entry_points and setup_py is None:
            raise ValueError("entry_points with the setuptools backend: write them in setup_py")
    elif backend == "intree":
        if setup_py is not None or setup_code:
            tree["setup.py"] = (setup_py if setup_py is not None else setup_code).encode()
        points = "".join(
            f"[{group}]\n" + "".join(f"{key} = {value}\n" for key, value in items.items()) + "\n"
            for group, items in (entry_points or {}).items()
        )
        tree["ciwinet_backend.py"] = INTREE_BACKEND.format(
            name=name, version=version, files=sorted(files), entry_points=points, dist=dist_name(name)
        ).encode()
        tree["pyproject.toml"] = (
            b'[build-system]\nrequires = []\nbuild-backend = "ciwinet_backend"\nbackend-path = ["."]\n'
        )
    else:
        raise ValueError(f"unknown sdist backend {backend!r}")
    entries = [(f"{stem}/{path}", data, 0o644) for path, data in sorted(tree.items())]
    return f"{stem}.tar.gz", _tar_gz(entries, 1577836800)
