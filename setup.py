"""Declares the C++ extensions only; all other package metadata lives in pyproject.toml."""

from pybind11.setup_helpers import Pybind11Extension
from setuptools import setup

setup(
    ext_modules=[
        Pybind11Extension("voxflip.streaming._ringbuffer", ["streaming/_ringbuffer.cpp"], cxx_std=17),
        Pybind11Extension("voxflip.trainer._mast", ["trainer/_mast.cpp"], cxx_std=17),
    ],
)
