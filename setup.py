"""Build the compiled parts of netim.

Everything else lives in pyproject.toml. Two things are compiled with
Cython:

- the frame scanner of the codec, from ``_frame.pyx``, which is written for
  Cython (typed); its pure-Python twin is a separate module;
- the IM server's layers that run without the reactor, from their
  ordinary ``.py`` sources, as they are: the modules that
  ``[tool.netim] compiled`` in pyproject.toml names.
  Each extension sits beside its source and is imported in its place; the
  source stays the one that is read, tested and type-checked.

Both are optional: when they cannot be built (no C compiler, no Python
headers) the install goes on with a warning and the sources are used;
``NETIM_NO_EXTENSIONS=1`` skips the build on purpose, and at run time
``NETIM_PURE_PYTHON=1`` ignores whatever was built.
``python -c "import codec; print(codec.IMPLEMENTATION)"`` says which
scanner is loaded.
"""

import os
import sys
import tomllib

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext


def warn_not_built(exc: Exception) -> None:
    print(
        f"WARNING: a compiled part of netim was not built ({exc}); "
        "its pure-Python source will be used.",
        file=sys.stderr,
    )


class OptionalBuildExt(build_ext):
    """build_ext that warns, instead of failing the install, when the
    compiler is missing or fails: netim runs without its extensions.
    It compiles on every core: there are a few dozen C files."""

    def finalize_options(self) -> None:
        super().finalize_options()
        if not self.parallel:
            self.parallel = os.cpu_count() or 1

    def run(self) -> None:
        try:
            super().run()
        except Exception as exc:
            warn_not_built(exc)

    def build_extension(self, ext: Extension) -> None:
        try:
            super().build_extension(ext)
        except Exception as exc:
            warn_not_built(exc)


def extensions() -> list[Extension]:
    if os.environ.get("NETIM_NO_EXTENSIONS", "") not in ("", "0"):
        return []
    try:
        from Cython.Build import cythonize
    except ImportError:
        return []
    scanner = cythonize(
        [Extension("codec._frame", ["src/codec/_frame.pyx"])],
        compiler_directives={"language_level": "3"},
    )
    with open("pyproject.toml", "rb") as file:
        patterns = tomllib.load(file)["tool"]["netim"]["compiled"]
    try:
        message_path = cythonize(
            [f"src/{pattern}" for pattern in patterns],
            exclude=["src/**/__init__.py"],
            nthreads=os.cpu_count() or 1,
            compiler_directives={
                "language_level": "3",
                # Annotations are for mypy and the reader. Typed by them,
                # Cython would check and convert arguments itself, and
                # behave unlike the source (a bool passed where an int is
                # annotated would no longer reach our own check).
                "annotation_typing": False,
            },
        )
    except Exception as exc:
        # Valid Python that this Cython cannot translate (newer syntax,
        # say) must not stop the install: those modules run as Python.
        warn_not_built(exc)
        return scanner
    return scanner + message_path


setup(ext_modules=extensions(), cmdclass={"build_ext": OptionalBuildExt})
