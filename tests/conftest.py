"""Fixtures shared by the tests that start real node processes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from .nodeproc import Cluster


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    """Node processes in this test's directory; every one is killed at the end."""
    c = Cluster(tmp_path)
    try:
        yield c
    finally:
        c.close()
