"""The version of the package whose dpkg maintainer script starts, read from dpkg's database as
the tracer sees it at the exec (the e2e test is tests/test_e2e_native.py)."""

from __future__ import annotations

import os
from pathlib import Path

from ciwatch.trace.procfs import dpkg_maintscript_package

STATUS = """\
Package: other
Status: install ok installed
Version: 9.9

Package: hooked
Status: install ok unpacked
Priority: optional
Description: a test
 with a continuation line
Version: 1.0-1

"""


def _env(admindir: Path, script: str = "postinst") -> dict[str, str]:
    return {"DPKG_MAINTSCRIPT_PACKAGE": "hooked", "DPKG_MAINTSCRIPT_NAME": script, "DPKG_ADMINDIR": str(admindir)}


def test_status_database_gives_the_version(tmp_path: Path) -> None:
    (tmp_path / "status").write_text(STATUS)
    found = dpkg_maintscript_package(os.getpid(), "/var/lib/dpkg/info/hooked.postinst", _env(tmp_path))
    assert found == {"name": "hooked", "version": "1.0-1"}


def test_newest_journal_entry_wins_over_status(tmp_path: Path) -> None:
    """dpkg writes updates/NNNN before it folds them into status."""
    (tmp_path / "status").write_text(STATUS)
    (tmp_path / "updates").mkdir()
    (tmp_path / "updates" / "0000").write_text("Package: hooked\nStatus: install ok unpacked\nVersion: 1.1-1\n\n")
    (tmp_path / "updates" / "0001").write_text(
        "Package: hooked\nStatus: install ok half-configured\nVersion: 1.2-1\n\n"
    )
    (tmp_path / "updates" / "tmp.i").write_text("Package: hooked\nVersion: 0.0\n")
    found = dpkg_maintscript_package(os.getpid(), "/var/lib/dpkg/tmp.ci/preinst", _env(tmp_path, "preinst"))
    assert found == {"name": "hooked", "version": "1.2-1"}


def test_processes_under_the_script_are_not_looked_up(tmp_path: Path) -> None:
    """They inherit dpkg's variables: only the script itself is the hook's start."""
    (tmp_path / "status").write_text(STATUS)
    assert dpkg_maintscript_package(os.getpid(), "/usr/bin/curl", _env(tmp_path)) == {}


def test_a_package_missing_from_the_database_has_no_version(tmp_path: Path) -> None:
    (tmp_path / "status").write_text(STATUS.replace("Package: hooked", "Package: renamed"))
    found = dpkg_maintscript_package(os.getpid(), "/var/lib/dpkg/info/hooked.postinst", _env(tmp_path))
    assert found == {"name": "hooked"}
