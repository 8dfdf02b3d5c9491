"""Exceptions shared by every voxflip package.

Every message names what was wrong, the value received and what is allowed,
so that the command line can print it as one line and exit with status 2.
"""

from __future__ import annotations


class EngineError(Exception):
    """Base class of every error voxflip raises on purpose."""


class ConfigError(EngineError, ValueError):
    """A configuration value or override is invalid."""


class AudioInputError(EngineError, ValueError):
    """An audio file or buffer cannot be used as input (missing, corrupt, NaN, ...)."""


class AudioOutputError(EngineError, OSError):
    """An output file cannot be written."""


class MelodyError(EngineError, ValueError):
    """A melody file is missing, empty or malformed."""


class ArtifactMismatchError(EngineError):
    """A built artifact (ONNX model, TensorRT plan) does not match this process."""


class MissingDependencyError(EngineError, ImportError):
    """A feature needs a package that is not installed; the message says how to install it."""


def install_hint(extra: str) -> str:
    """How to install one of voxflip's extras, for an installed wheel and for a checkout."""
    return f'pip install "voxflip[{extra}]" (from a checkout: pip install -e ".[{extra}]")'
