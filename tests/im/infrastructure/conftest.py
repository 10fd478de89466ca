"""Fixtures for the store adapters: ``stores`` runs a test on the
in-memory store and on the SQLite store alike (with and without its
group cache)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from store_harness import Stores, open_stores


@pytest.fixture(params=["memory", "sqlite", "sqlite-uncached"])
def stores(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Stores]:
    opened = open_stores(request.param, tmp_path)
    try:
        yield opened
    finally:
        opened.close()
