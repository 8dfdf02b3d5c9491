"""Shared fixtures: small signals made here, the bundled example, the dev recordings."""

from __future__ import annotations

import json
from importlib.resources import files
from pathlib import Path

import numpy as np
import pytest
from helpers import DEV_DATA, synth_from_plan


@pytest.fixture(scope="session")
def sung_held_notes() -> np.ndarray:
    """About 3.4 s of synthetic singing: consonant + vowel syllables on long held notes (no vibrato)."""
    plan = [("-", 0.2, 0), ("s", 0.08, 0), ("a", 0.8, 220.0), ("s", 0.08, 0), ("i", 0.7, 246.9),
            ("s", 0.08, 0), ("u", 0.9, 261.6), ("s", 0.08, 0), ("e", 0.3, 220.0), ("-", 0.2, 0)]
    return synth_from_plan(plan)


@pytest.fixture(scope="session")
def short_voice() -> np.ndarray:
    """1 s of synthetic voice with a glide, for the many-block-size tests (cheap to stream at block size 1)."""
    plan = [("-", 0.05, 0), ("s", 0.06, 0), ("a", 0.35, 200.0), ("s", 0.05, 0), ("i", 0.3, 240.0), ("-", 0.19, 0)]
    return synth_from_plan(plan)


@pytest.fixture(scope="session")
def example_speech() -> tuple[np.ndarray, int]:
    """The bundled CMU ARCTIC sentence (real speech, 16 kHz)."""
    import soundfile as sf

    path = files("voxflip") / "data" / "arctic_a0007.wav"
    audio, rate = sf.read(str(path), dtype="float32")
    return audio, rate


@pytest.fixture(scope="session")
def example_speech_path() -> Path:
    return Path(str(files("voxflip") / "data" / "arctic_a0007.wav"))


@pytest.fixture(scope="session")
def dev_pairs() -> list[dict[str, str]]:
    """The real sung/spoken pairs in ../shared/dev-data (skips where absent; never copied into the repo)."""
    manifest = DEV_DATA / "manifest.jsonl"
    if not manifest.exists():
        pytest.skip(f"development recordings not found at {DEV_DATA}")
    rows = [json.loads(line) for line in manifest.read_text().splitlines() if line.strip()]
    for row in rows:
        row["singing"] = str(DEV_DATA / row["singing"])
        row["speech"] = str(DEV_DATA / row["speech"])
    return rows


