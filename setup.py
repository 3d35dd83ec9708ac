"""Only what pyproject.toml cannot say: the cffi extension of the C fast path (userstack._fastpath)."""
from setuptools import setup

setup(cffi_modules=["userstack/_build.py:ffibuilder"])
