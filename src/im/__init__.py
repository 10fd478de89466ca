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
# - NETIM_PURE_PYTHON=1 asks for it (as for the codec's scanner), to
#   debug, trace or profile the Python code: pdb, coverage and py-spy do
#   not see inside a compiled module;
# - a build older than its source: an edited source (more than a moment
#   newer than its extension), or an extension whose source is gone.
#   Whoever edited the file expects the edit to run, not the build of
#   the code before it. Then the whole package runs from source (half of
#   it compiled from an old version would be worse), and a warning says
#   how to compile again. Copies that keep old timestamps (cp -p, tar,
#   rsync -a) can hide an edit from this check; NETIM_PURE_PYTHON=1 is
#   the sure way.
#
# Either way every directory of the package gets an import finder that
# knows .py files only. The variable is read here rather than taken from
# codec._impl: importing codec would load the reactor with every import
# of im, and the domain is meant to load nothing of ours.
PURE_PYTHON_FORCED = os.environ.get("NETIM_PURE_PYTHON", "") not in ("", "0")

# An install writes a module's source and its extension within moments
# of each other, in either order; a source newer than this is an edit.
_EDITED_AFTER_BUILD = 2.0  # seconds


def _directories(root: str) -> list[tuple[str, list[str]]]:
    """Each directory of the package under ``root``, with its files."""
    found = []
    for directory, subdirectories, files in os.walk(root):
        subdirectories[:] = [d for d in subdirectories if d != "__pycache__"]
        found.append((directory, files))
    return found


def _out_of_date(directories: list[tuple[str, list[str]]]) -> list[str]:
    """Sources changed since their extension was built, and extensions
    whose source is gone."""
    stale = []
    for directory, files in directories:
        for name in files:
            stem, _, suffix = name.partition(".")
            if "." + suffix not in EXTENSION_SUFFIXES:
                continue
            source = os.path.join(directory, stem + ".py")
            built = os.stat(os.path.join(directory, name)).st_mtime
            try:
                written = os.stat(source).st_mtime
            except FileNotFoundError:
                stale.append(os.path.join(directory, name))
                continue
            if written > built + _EDITED_AFTER_BUILD:
                stale.append(source)
    return stale


def _import_sources_only(directories: list[tuple[str, list[str]]]) -> None:
    for directory, _ in directories:
        sys.path_importer_cache[directory] = FileFinder(
            directory, (SourceFileLoader, SOURCE_SUFFIXES)
        )


def _choose_sources() -> None:
    directories = _directories(__path__[0])
    if PURE_PYTHON_FORCED:
        _import_sources_only(directories)
    elif stale := _out_of_date(directories):
        _import_sources_only(directories)
        # Logged rather than warnings.warn: it is about the installation,
        # not about the caller's code, and must show even where warnings
        # are filtered.
        logging.getLogger(__name__).warning(
            "the compiled build is out of date (%s%s): running im from "
            "its Python sources; reinstalling (pip install -e . in a "
            "checkout) compiles them again",
            stale[0],
            f" (and {len(stale) - 1} more)" if len(stale) > 1 else "",
        )


_choose_sources()
