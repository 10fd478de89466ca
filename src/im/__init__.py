"""netim's instant-messaging application, laid out domain first.

``domain`` holds the entities, rules and the ports they need (standard
library only); ``application`` the use cases, on the domain;
``infrastructure`` the stores and tokens, implementing the domain's
ports; ``interfaces`` the server's pipeline handlers; ``protocol``
is the wire format that the server, the client library (``client``) and
the load generator share; ``server`` wires it all together and ``cli``
is the ``netim`` command. docs/architecture.md draws the picture.
"""

from __future__ import annotations

import logging
import os
import sys
from importlib.machinery import (
    EXTENSION_SUFFIXES,
    SOURCE_SUFFIXES,
    FileFinder,
    SourceFileLoader,
)

# Part of this package may be compiled: setup.py builds several modules
# with Cython from the same .py files, and an extension module beside its
# source is what Python imports first. Two cases must import the sources
# instead, and this must be settled before any submodule is imported,
# hence here:
#
# - NETIM_PURE_PYTHON=1 asks for it (as for the codec's scanner);
# - a source edited after its extension was built: whoever edited it
#   expects the edit to run, not the build of the code before it. Then
#   the whole package runs from source (half of it compiled from an old
#   version would be worse), and a warning says how to compile again.
#
# Either way every directory of the package gets an import finder that
# knows .py files only.
PURE_PYTHON_FORCED = os.environ.get("NETIM_PURE_PYTHON", "") not in ("", "0")

# An install writes a module's source and its extension within moments
# of each other, in either order; a source newer than this is an edit.
_EDITED_AFTER_BUILD = 2.0  # seconds


def _edited_after_build(root: str) -> list[str]:
    """Sources under ``root`` changed since their extension was built."""
    edited = []
    for directory, subdirectories, files in os.walk(root):
        subdirectories[:] = [d for d in subdirectories if d != "__pycache__"]
        for name in files:
            stem, _, suffix = name.partition(".")
            if "." + suffix not in EXTENSION_SUFFIXES:
                continue
            source = os.path.join(directory, stem + ".py")
            try:
                built = os.stat(os.path.join(directory, name)).st_mtime
                written = os.stat(source).st_mtime
            except FileNotFoundError:
                continue
            if written > built + _EDITED_AFTER_BUILD:
                edited.append(source)
    return edited


def _import_sources_only(root: str) -> None:
    for directory, subdirectories, _ in os.walk(root):
        subdirectories[:] = [d for d in subdirectories if d != "__pycache__"]
        sys.path_importer_cache[directory] = FileFinder(
            directory, (SourceFileLoader, SOURCE_SUFFIXES)
        )


if PURE_PYTHON_FORCED:
    _import_sources_only(__path__[0])
elif _edited := _edited_after_build(__path__[0]):
    _import_sources_only(__path__[0])
    logging.getLogger(__name__).warning(
        "%s%s changed after it was compiled: running im from its Python "
        "sources; `pip install -e .` compiles them again",
        _edited[0],
        f" (and {len(_edited) - 1} more)" if len(_edited) > 1 else "",
    )
