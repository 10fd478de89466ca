"""Which scanner build is in use, and the switches that choose it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import codec
from codec import _impl


def test_implementation_is_reported():
    assert codec.IMPLEMENTATION in ("compiled", "python")
    assert codec.IMPLEMENTATION == _impl.IMPLEMENTATION
    if _impl.PURE_PYTHON_FORCED:
        assert codec.IMPLEMENTATION == "python"
        assert _impl.LOAD_ERROR is None


def test_compiled_build_loaded_when_required():
    # CI sets NETIM_REQUIRE_COMPILED=1 so that a broken build fails the
    # run instead of silently testing the twin twice.
    if os.environ.get("NETIM_REQUIRE_COMPILED") != "1":
        pytest.skip("NETIM_REQUIRE_COMPILED is not set")
    assert codec.IMPLEMENTATION == "compiled", (
        "the compiled frame scanner was required but is not in use: "
        + (
            "NETIM_PURE_PYTHON forces the twin"
            if _impl.PURE_PYTHON_FORCED
            else f"import failed: {_impl.LOAD_ERROR!r}"
        )
    )


def implementation_in_child(**env: str) -> str:
    child_env = {**os.environ, **env}
    src = str(Path(codec.__file__).resolve().parents[1])
    child_env["PYTHONPATH"] = os.pathsep.join(
        [src, child_env.get("PYTHONPATH", "")]
    )
    result = subprocess.run(
        [sys.executable, "-c", "import codec; print(codec.IMPLEMENTATION)"],
        env=child_env,
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout.strip()


def test_environment_forces_pure_python():
    assert implementation_in_child(NETIM_PURE_PYTHON="1") == "python"


def test_zero_does_not_force_pure_python():
    expected = "python" if _impl.LOAD_ERROR else "compiled"
    if _impl.PURE_PYTHON_FORCED:
        # This process was forced; a child with "0" picks what imports.
        try:
            import codec._frame  # noqa: F401
        except ImportError:
            expected = "python"
        else:
            expected = "compiled"
    assert implementation_in_child(NETIM_PURE_PYTHON="0") == expected
