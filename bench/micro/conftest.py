"""Fixtures for the microbenchmarks (codec, buffer, pipeline, protocol).

``build`` runs a codec benchmark once per frame-scanner build: compiled
(when it is in use) and pure Python. Run ``pytest bench/micro
--benchmark-only`` to measure, ``pytest bench/micro --benchmark-disable``
to run each once as a test.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import pytest

from codec import _frame_py, _impl


def _builds() -> list[Any]:
    builds = [pytest.param(_frame_py, id="python")]
    if _impl.IMPLEMENTATION == "compiled":
        builds.insert(0, pytest.param(_impl.scanner, id="compiled"))
    return builds


@pytest.fixture(params=_builds(), scope="session")
def build(request: pytest.FixtureRequest) -> ModuleType:
    module: ModuleType = request.param
    return module
