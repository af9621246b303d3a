"""A cargo sparse registry on the test internet: ``https://crates.test/index/`` (its
``config.json`` and one index file per crate) and the ``.crate`` downloads on
cratefiles.test, the host the index's ``dl`` names (a download host only the index tells).

The layout is cargo's registry index format: the index file of a crate is at
``1/<name>``, ``2/<name>``, ``3/<c>/<name>`` or ``<ab>/<cd>/<name>`` (lowercased), one JSON
line per version with the sha256 of its ``.crate``; a ``.crate`` is a gzipped tarball of
``<name>-<version>/`` holding the package's files.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass

from tests.support.internet.core import CRATES_FILES, CRATES_INDEX, TestInternet
from tests.support.internet.packages import FileContent, _bytes, _check_relative, _tar_gz

#: What a project's ``.cargo/config.toml`` names (``sparse+`` and a trailing slash, as cargo wants).
INDEX_URL = f"sparse+https://{CRATES_INDEX}/index/"
CRATE_MTIME = 1577836800


@dataclass(frozen=True)
class PublishedCrate:
    name: str
    version: str
    cksum: str
    download_path: str
    data: bytes


def index_path(name: str) -> str:
    """Where cargo looks for ``name``'s index file, relative to the index root."""
    lowered = name.lower()
    if len(lowered) <= 2:
        return f"{len(lowered)}/{lowered}"
    if len(lowered) == 3:
        return f"3/{lowered[0]}/{lowered}"
    return f"{lowered[:2]}/{lowered[2:4]}/{lowered}"


def build_crate(name: str, version: str, files: Mapping[str, FileContent]) -> bytes:
    """The ``.crate`` archive of ``files`` (which must hold ``Cargo.toml``)."""
    if "Cargo.toml" not in files:
        raise ValueError("a crate needs its Cargo.toml")
    entries = []
    for path in sorted(files):
        _check_relative(path)
        entries.append((f"{name}-{version}/{path}", _bytes(files[path]), 0o644))
    return _tar_gz(entries, CRATE_MTIME)


def publish_crate(internet: TestInternet, name: str, version: str, files: Mapping[str, FileContent]) -> PublishedCrate:
    """Serve ``name@version`` (no dependencies) from the sparse index on crates.test."""
    data = build_crate(name, version, files)
    cksum = hashlib.sha256(data).hexdigest()
    config = {"dl": f"https://{CRATES_FILES}/crates", "api": None}
    internet.serve(CRATES_INDEX, "/index/config.json", json.dumps(config), content_type="application/json")
    entry = {
        "name": name,
        "vers": version,
        "deps": [],
        "cksum": cksum,
        "features": {},
        "yanked": False,
        "links": None,
        "v": 2,
    }
    internet.serve(CRATES_INDEX, f"/index/{index_path(name)}", json.dumps(entry) + "\n", content_type="text/plain")
    # cargo appends /{crate}/{version}/download to a dl that has no markers.
    download = f"/crates/{name}/{version}/download"
    internet.serve(CRATES_FILES, download, data, content_type="application/x-tar")
    return PublishedCrate(name, version, cksum, download, data)
