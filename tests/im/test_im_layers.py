"""What each layer of ``im`` loads, checked in a fresh interpreter
(docs/architecture.md, "What each layer imports of the others")."""

from __future__ import annotations

import subprocess
import sys

import pytest


def modules_loaded_by(module: str) -> set[str]:
    code = (
        f"import sys, {module}\n"
        "print('\\n'.join(m for m in sys.modules if m.split('.')[0] in "
        "('im', 'reactor', 'codec')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
    )
    return set(out.stdout.split())


@pytest.mark.parametrize(
    ("layer", "may_load"),
    [
        ("im.domain", {"im", "im.records"}),
        ("im.protocol", {"im", "im.records"}),
        ("im.application", {"im", "im.records", "im.domain"}),
    ],
)
def test_a_layer_loads_only_what_it_may(
    layer: str, may_load: set[str]
) -> None:
    loaded = modules_loaded_by(layer)
    outside = {
        name
        for name in loaded
        if not name.startswith(layer)
        and name not in may_load
        and not any(
            name.startswith(allowed + ".") for allowed in may_load - {"im"}
        )
    }
    assert outside == set()
