"""Build the compiled parts of netim.

Everything else lives in pyproject.toml. The frame scanner of the codec is
compiled with Cython when Cython and a C compiler are available; without
them the package still installs and the pure-Python twin is used (the
codec's selector module says which build was loaded).
"""

import os

from setuptools import Extension, setup


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


setup(ext_modules=extensions())
