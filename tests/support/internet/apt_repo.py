"""An apt repository on the test internet: a flat repository (``deb [trusted=yes]
https://apt.test/ flat/``) with ``flat/Packages`` and ``flat/Packages.gz`` made by the real
``dpkg-scanpackages``, a ``flat/Release`` that lists their sizes and SHA-256 digests, and the
``.deb`` files under ``pool/`` (``Filename:`` is relative to the repository's URL). Unsigned:
the sources entry says ``[trusted=yes]``.

Served over HTTP and HTTPS alike (every test host answers both).
"""

from __future__ import annotations

import email.utils
import gzip
import hashlib
import shutil
import subprocess
from collections.abc import Iterable
from pathlib import Path

from tests.support.internet.core import APT_REPO, TestInternet

#: The flat repository's directory: its indexes are at ``/flat/Packages``... (``./`` would make
#: apt ask for ``/./Packages``).
FLAT = "flat"


def repository_url(scheme: str) -> str:
    return f"{scheme}://{APT_REPO}/"


def sources_line(scheme: str) -> str:
    """The one-line sources entry of the repository."""
    return f"deb [trusted=yes] {repository_url(scheme)} {FLAT}/\n"


def _release(files: dict[str, bytes]) -> bytes:
    lines = [
        "Origin: ciwatch test internet",
        "Label: ciwatch",
        f"Date: {email.utils.formatdate(usegmt=True)}",
        "SHA256:",
    ]
    lines += [f" {hashlib.sha256(data).hexdigest()} {len(data)} {name}" for name, data in sorted(files.items())]
    return ("\n".join(lines) + "\n").encode()


def publish_debs(internet: TestInternet, debs: Iterable[Path], workdir: Path) -> dict[str, bytes]:
    """Serve ``debs`` from apt.test with their indexes; returns every served path with its bytes."""
    pool = workdir / "pool"
    pool.mkdir(parents=True)
    for deb in debs:
        shutil.copy(deb, pool / deb.name)
    scanned = subprocess.run(
        ["dpkg-scanpackages", "--multiversion", "pool", "/dev/null"], cwd=workdir, check=True, capture_output=True
    )
    indexes = {"Packages": scanned.stdout, "Packages.gz": gzip.compress(scanned.stdout, mtime=0)}
    served = {f"/{FLAT}/{name}": data for name, data in indexes.items()}
    served[f"/{FLAT}/Release"] = _release(indexes)
    served.update({f"/pool/{deb.name}": deb.read_bytes() for deb in pool.iterdir()})
    for path, data in served.items():
        internet.serve(APT_REPO, path, data, content_type="application/octet-stream")
    return served
