"""Build the compiled parts of netim.

Everything else lives in pyproject.toml. The frame scanner of the codec is
compiled with Cython. The extension is optional: when it cannot be built
(no C compiler, no Python headers) the install goes on with a warning and
the pure-Python twin is used; ``NETIM_NO_EXTENSIONS=1`` skips the build on
purpose. ``python -c "import codec; print(codec.IMPLEMENTATION)"`` says
which build is loaded.
"""

import os
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext


class OptionalBuildExt(build_ext):
    """build_ext that warns, instead of failing the install, when the
    compiler is missing or fails: netim runs without its extension."""

    def run(self) -> None:
        try:
            super().run()
        except Exception as exc:
            self._skipped(exc)

    def build_extension(self, ext: Extension) -> None:
        try:
            super().build_extension(ext)
        except Exception as exc:
            self._skipped(exc)

    @staticmethod
    def _skipped(exc: Exception) -> None:
        print(
            f"WARNING: netim's compiled codec was not built ({exc}); "
            "the pure-Python twin will be used.",
            file=sys.stderr,
        )


def extensions() -> list[Extension]:
    if os.environ.get("NETIM_NO_EXTENSIONS"):
        return []
    try:
        from Cython.Build import cythonize
    except ImportError:
        return []
    return cythonize(
        [Extension("codec._frame", ["src/codec/_frame.pyx"])],
        compiler_directives={"language_level": "3"},
    )


setup(ext_modules=extensions(), cmdclass={"build_ext": OptionalBuildExt})
