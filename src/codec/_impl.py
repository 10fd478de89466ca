"""Which build of the frame scanner runs.

The compiled module (``codec._frame``, built from ``_frame.pyx``) is used
when it imports. The pure-Python twin (``codec._frame_py``) is used when
it does not, or when the environment sets ``NETIM_PURE_PYTHON`` to
anything but ``""`` or ``"0"`` (for debugging, and to run the test suite
against the twin). Both offer the same classes; see ``_frame_py``.
"""

from __future__ import annotations

import os
from types import ModuleType
from typing import Final

from . import _frame_py

__all__ = ["IMPLEMENTATION", "LOAD_ERROR", "PURE_PYTHON_FORCED", "scanner"]

PURE_PYTHON_FORCED: Final = os.environ.get("NETIM_PURE_PYTHON", "") not in (
    "",
    "0",
)


def _load() -> tuple[ModuleType, str, ImportError | None]:
    if PURE_PYTHON_FORCED:
        return _frame_py, "python", None
    try:
        from . import _frame
    except ImportError as exc:
        # Not built (no compiler, or NETIM_NO_EXTENSIONS at install).
        return _frame_py, "python", exc
    return _frame, "compiled", None


#: The module whose ``FrameSpec`` and ``FrameScanner`` the handlers use.
scanner: ModuleType
#: "compiled" or "python".
IMPLEMENTATION: str
#: Why the compiled build did not load, when it did not and was not
#: switched off on purpose.
LOAD_ERROR: ImportError | None
scanner, IMPLEMENTATION, LOAD_ERROR = _load()
