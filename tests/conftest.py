from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support.runner import CiwatchRun, run_ciwatch

pytest_plugins = ["tests.support.internet.fixture"]


@pytest.fixture
def ciwatch(tmp_path: Path) -> Callable[..., CiwatchRun]:
    """Run the real CLI: ``ciwatch("--", "sh", "-c", "exit 7")``; the record goes to a fresh dir."""
    counter = iter(range(1000))

    def run(*args: str, **kwargs: object) -> CiwatchRun:
        out_dir = kwargs.pop("out_dir", None) or tmp_path / f"out{next(counter)}"
        return run_ciwatch(list(args), Path(str(out_dir)), **kwargs)  # type: ignore[arg-type]

    return run


def require(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        pytest.fail(f"{tool} is not installed; .ci/run installs it")
    return path
