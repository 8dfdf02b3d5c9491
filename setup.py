"""Finds the packages of each room and declares the C++ extensions; the rest of the metadata is in pyproject.toml.

The top-level folders are the architecture (``../shared/DESIGN.md``, "Layout") and install as one
import namespace: ``voxflip/`` is ``voxflip``, ``engine/`` is ``voxflip.engine``, and so on.
Packages are found by rule, never listed by hand: every folder with an ``__init__.py`` under a
room is a package of that room. CI builds the wheel and renders from a fresh install of it
(``scripts/check_wheel.sh``), so a package or data file missing from the wheel fails CI.
"""

from pybind11.setup_helpers import Pybind11Extension
from setuptools import find_packages, setup

#: room folder -> the package it installs as
ROOMS = {
    "voxflip": "voxflip",
    "engine": "voxflip.engine",
    "streaming": "voxflip.streaming",
    "osc_control": "voxflip.osc_control",
    "trainer": "voxflip.trainer",
    "trt_build": "voxflip.trt_build",
}


def room_packages() -> list[str]:
    packages = []
    for folder, package in ROOMS.items():
        packages.append(package)
        packages += [f"{package}.{sub}" for sub in find_packages(where=folder)]
    return packages


setup(
    package_dir={package: folder for folder, package in ROOMS.items()},
    packages=room_packages(),
    ext_modules=[
        Pybind11Extension("voxflip.streaming._ringbuffer", ["streaming/_ringbuffer.cpp"], cxx_std=17),
        Pybind11Extension("voxflip.streaming._polyphase", ["streaming/_polyphase.cpp"], cxx_std=17),
        Pybind11Extension("voxflip.trainer._mast", ["trainer/_mast.cpp"], cxx_std=17),
        Pybind11Extension("voxflip.engine.features._spectral", ["engine/features/_spectral.cpp"], cxx_std=17,
                          include_dirs=["engine"], depends=["engine/real_fft.h"]),
        Pybind11Extension("voxflip.engine.vocoder._pulses", ["engine/vocoder/_pulses.cpp"], cxx_std=17,
                          include_dirs=["engine"], depends=["engine/real_fft.h"]),
    ],
)
