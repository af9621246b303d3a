"""pytest plugin: the ``test_internet`` fixture (session-scoped) and ``internet`` (per test).

Load it from tests/conftest.py with ``pytest_plugins = ["tests.support.internet.fixture"]``.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.internet.core import TestInternet, TestInternetError


@pytest.fixture(scope="session")
def test_internet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestInternet]:
    """One test internet for the whole session; removed at the end of the session (and by
    atexit or SIGTERM if the session is cut short; a later session removes what a killed one
    left)."""
    try:
        internet = TestInternet.start(tmp_path_factory.mktemp("internet"))
    except TestInternetError as error:
        pytest.fail(f"the test internet could not start: {error}", pytrace=False)
    try:
        yield internet
    finally:
        internet.close()


@pytest.fixture
def internet(test_internet: TestInternet) -> TestInternet:
    """The session's test internet with its logs emptied for this test."""
    test_internet.reset_logs()
    return test_internet
