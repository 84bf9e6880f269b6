"""Builds the Cython extensions in ext/ into kvstore._ext (metadata lives in pyproject.toml)."""
from pathlib import Path

from Cython.Build import cythonize
from setuptools import Extension, setup

extensions = [
    Extension(f"kvstore._ext.{p.stem}", [str(p)], extra_compile_args=["-O3"])
    for p in sorted(Path("ext").glob("*.pyx"))
]

setup(ext_modules=cythonize(extensions, compiler_directives={"language_level": "3"}))
