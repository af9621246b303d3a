"""A gem source on the test internet: ``https://gems.test/``, the files ``gem generate_index``
makes of a directory of ``.gem`` files (``specs.4.8.gz``, ``latest_specs.4.8.gz``,
``prerelease_specs.4.8.gz``, ``quick/Marshal.4.8/<name>-<version>.gemspec.rz``) and the gems
themselves under ``gems/``.

That is rubygems' full index: ``gem`` and bundler ask for the compact index (``/versions``)
first, get a 404, and fall back to it, as they do with a plain static gem server.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterable
from pathlib import Path

from tests.support.internet.core import GEMS, TestInternet

SOURCE_URL = f"https://{GEMS}/"

_CONTENT_TYPES = {".gz": "application/x-gzip", ".rz": "application/x-deflate", ".gem": "application/octet-stream"}


def publish_gems(internet: TestInternet, gems: Iterable[Path], workdir: Path) -> dict[str, bytes]:
    """Serve ``gems`` (built ``.gem`` files) with the index the real ``gem generate_index``
    makes of them; returns every served path with its bytes."""
    (workdir / "gems").mkdir(parents=True)
    for gem in gems:
        shutil.copy(gem, workdir / "gems" / gem.name)
    subprocess.run(["gem", "generate_index", "--directory", str(workdir)], check=True, capture_output=True)
    served: dict[str, bytes] = {}
    for file in sorted(workdir.rglob("*")):
        if not file.is_file():
            continue
        path = "/" + file.relative_to(workdir).as_posix()
        data = file.read_bytes()
        content_type = _CONTENT_TYPES.get(file.suffix, "application/octet-stream")
        internet.serve(GEMS, path, data, content_type=content_type)
        served[path] = data
    return served
