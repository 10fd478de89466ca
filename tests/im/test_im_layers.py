"""What each layer of ``im`` loads, checked in a fresh interpreter
(docs/architecture.md, "What each layer imports of the others")."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

# Top-level packages the interpreter loads for itself, not in
# sys.stdlib_module_names; nothing any layer imports.
_STARTUP = {"__main__", "sitecustomize", "usercustomize", "_distutils_hack"}


def modules_loaded_by(module: str) -> set[str]:
    """Every module in sys.modules after ``import module``, in a fresh
    interpreter that finds packages exactly where this one does (so an
    installed copy cannot stand in for the tree under test)."""
    code = (
        f"import json, sys, {module}; print(json.dumps(sorted(sys.modules)))"
    )
    environment = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env=environment,
    )
    return set(json.loads(out.stdout))


@pytest.mark.parametrize(
    ("layer", "ours", "third_party"),
    [
        ("im.domain", {"im.records"}, set()),
        ("im.protocol", {"im.records"}, {"msgpack"}),
        ("im.application", {"im.records", "im.domain"}, set()),
    ],
)
def test_a_layer_loads_only_what_it_may(
    layer: str, ours: set[str], third_party: set[str]
) -> None:
    loaded = modules_loaded_by(layer)
    allowed = {layer, *ours}
    ours_outside = {
        name
        for name in loaded
        if name.split(".")[0] in ("im", "reactor", "codec")
        and name != "im"
        and not any(name == a or name.startswith(a + ".") for a in allowed)
    }
    assert ours_outside == set()
    foreign = {
        name.split(".")[0]
        for name in loaded
        if name.split(".")[0]
        not in (sys.stdlib_module_names | _STARTUP | {"im", "json"})
        # Cython's runtime, loaded with a compiled extension (msgpack's).
        and not name.startswith(("cython_runtime", "_cython_"))
    }
    assert foreign <= third_party
