"""Fixtures of the evasion tests: hook packages on the test internet, and evil.test's address."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.hooks import Hooks
from tests.support.internet import EVIL, TestInternet


@pytest.fixture
def hooks(internet: TestInternet, tmp_path: Path) -> Hooks:
    """Hook packages published to this test's internet, installed in projects under tmp_path."""
    return Hooks(internet, tmp_path)


@pytest.fixture
def evil_ip(internet: TestInternet) -> str:
    """evil.test's IPv4 address: where the hooks connect by address."""
    return internet.address_of(EVIL).ipv4
