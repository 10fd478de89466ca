"""The compiled part of ``im``: which modules are built, and when the
package imports their sources instead (asked to, or the build is out of
date)."""

from __future__ import annotations

import glob
import importlib
import os
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Sequence
from importlib.machinery import EXTENSION_SUFFIXES
from pathlib import Path

import pytest

import im

SOURCE_ROOT = Path(im.__file__).resolve().parents[1]
# The checkout's, also when the tests run against an installed package.
PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"


def compiled_module_names() -> list[str]:
    """The modules that pyproject.toml asks setup.py to compile."""
    with PYPROJECT.open("rb") as file:
        patterns = tomllib.load(file)["tool"]["netim"]["compiled"]
    names = []
    for pattern in patterns:
        for path in sorted(glob.glob(str(SOURCE_ROOT / pattern))):
            relative = Path(path).relative_to(SOURCE_ROOT).with_suffix("")
            if relative.name != "__init__":
                names.append(".".join(relative.parts))
    return names


def is_extension(module_file: str) -> bool:
    return any(module_file.endswith(suffix) for suffix in EXTENSION_SUFFIXES)


def test_the_list_names_modules_of_the_message_path():
    names = compiled_module_names()
    assert "im.protocol.codec" in names
    assert "im.application.messaging" in names
    assert not any(name.endswith("__init__") for name in names)


def test_forced_pure_python_imports_only_sources():
    if not im.PURE_PYTHON_FORCED:
        pytest.skip("NETIM_PURE_PYTHON is not set")
    for name in compiled_module_names():
        module = importlib.import_module(name)
        assert module.__file__ is not None
        assert module.__file__.endswith(".py"), module.__file__


def test_compiled_build_loaded_when_required():
    # CI sets NETIM_REQUIRE_COMPILED=1 so that a build that failed (and
    # only warned) fails the run instead of testing the sources twice.
    if os.environ.get("NETIM_REQUIRE_COMPILED") != "1":
        pytest.skip("NETIM_REQUIRE_COMPILED is not set")
    assert not im.PURE_PYTHON_FORCED, "NETIM_PURE_PYTHON forces the sources"
    interpreted = [
        name
        for name in compiled_module_names()
        if not is_extension(importlib.import_module(name).__file__ or "")
    ]
    assert interpreted == [], "built to be compiled, imported from source"


# Prints the file each module named on the command line was loaded from.
PRINT_FILES = (
    "import importlib, sys\n"
    "for name in sys.argv[1:]:\n"
    "    print(importlib.import_module(name).__file__)\n"
)


def files_in_child(
    names: list[str], *, path: Sequence[Path] = (), **env: str
) -> subprocess.CompletedProcess[str]:
    """Import ``names`` in a new interpreter with ``env`` set and
    ``path`` first on sys.path; its output lists their files."""
    child_env = {**os.environ, **env}
    child_env["PYTHONPATH"] = os.pathsep.join(
        [*map(str, path), str(SOURCE_ROOT), child_env.get("PYTHONPATH", "")]
    )
    return subprocess.run(
        [sys.executable, "-c", PRINT_FILES, *names],
        env=child_env,
        capture_output=True,
        text=True,
        check=True,
    )


def files_with(**env: str) -> list[str]:
    return files_in_child(compiled_module_names(), **env).stdout.split()


def test_environment_switch_chooses_sources_in_a_new_process():
    pure = files_with(NETIM_PURE_PYTHON="1")
    assert pure and all(path.endswith(".py") for path in pure)
    # "0" does not force anything: whatever is built is used, and the
    # same modules as without the variable.
    assert files_with(NETIM_PURE_PYTHON="0") == files_with(
        NETIM_PURE_PYTHON=""
    )


def copy_of_the_package(tmp_path: Path) -> tuple[Path, Path]:
    """A copy of ``im`` under ``tmp_path``, and its compiled protocol
    codec (skips the test when nothing is compiled)."""
    copy = tmp_path / "im"
    shutil.copytree(SOURCE_ROOT / "im", copy)
    built = [
        path
        for path in (copy / "protocol").iterdir()
        if path.name.startswith("codec.") and is_extension(path.name)
    ]
    if not built:
        pytest.skip("no compiled build to go stale")
    return copy, built[0]


def assert_runs_from_sources(tmp_path: Path, copy: Path, named: str) -> None:
    result = files_in_child(
        ["im.application.messaging"], path=[tmp_path], NETIM_PURE_PYTHON=""
    )
    # Not only the stale module: all of the package.
    assert result.stdout.strip() == str(copy / "application" / "messaging.py")
    assert "compiled build is out of date" in result.stderr
    assert named in result.stderr
    assert "pip install -e ." in result.stderr


def test_a_source_edited_after_the_build_runs_instead_of_it(tmp_path):
    copy, built = copy_of_the_package(tmp_path)
    # Built an hour before its source was last written.
    edited = (copy / "protocol" / "codec.py").stat().st_mtime
    os.utime(built, (edited - 3600, edited - 3600))
    assert_runs_from_sources(tmp_path, copy, "protocol/codec.py")


def test_an_extension_whose_source_is_gone_is_not_imported(tmp_path):
    copy, built = copy_of_the_package(tmp_path)
    orphan = built.with_name(built.name.replace("codec.", "removed.", 1))
    shutil.copy2(built, orphan)
    assert_runs_from_sources(tmp_path, copy, orphan.name)
