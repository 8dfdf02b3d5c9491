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


#: stands for "no value given" in an :class:`OptionError`
MISSING: object = object()


class OptionError(ConfigError):
    """A converter option is out of range, missing, or does not apply to the chosen converter.

    The message names the option as the Python API spells it (``chunk_ms=1e9 must be ...``);
    a front end that spells options otherwise (the CLI's ``--chunk-ms``) rewords it with
    :meth:`worded`, so the user reads the name they typed.

    Attributes:
        param: the option's name in the API (``chunk_ms``).
        value: the value received, or :data:`MISSING` when the option is required but absent.
        problem: what is wrong and what is allowed, without the option's name.
        see: other options the problem refers to (listed after it, spelled like ``param``).
    """

    def __init__(self, param: str, value: object, problem: str, *, see: tuple[str, ...] = ()) -> None:
        self.param, self.value, self.problem, self.see = param, value, problem, tuple(see)
        super().__init__(self.worded())

    def worded(self, spell=None) -> str:
        """The message with each option name passed through ``spell`` (default: the API's names)."""
        spell = spell or (lambda name: name)
        if self.value is MISSING:
            text = f"{spell(self.param)} {self.problem}"
        else:
            shown = str(self.value) if hasattr(self.value, "__fspath__") else repr(self.value)
            text = f"{spell(self.param)}={shown} {self.problem}"
        if self.see:
            text += ": " + ", ".join(spell(name) for name in self.see)
        return text
