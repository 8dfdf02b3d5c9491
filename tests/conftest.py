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


@pytest.fixture(scope="session")
def pair_manifest(tmp_path_factory) -> Path:
    """Three pairs of a voice-like signal: speech 0.8 s, singing 1.2 s on another tune."""
    pytest.importorskip("faster_whisper")
    import soundfile as sf

    folder = tmp_path_factory.mktemp("stsdata")
    rng = np.random.default_rng(0)
    rows = []
    for i in range(3):
        for side, seconds, base in (("speech", 0.8, 140), ("singing", 1.2, 220)):
            n = int(16_000 * seconds)
            t = np.arange(n) / 16_000
            f0 = base * (1 + 0.1 * np.sin(2 * np.pi * (1 + i) * t))
            phase = 2 * np.pi * np.cumsum(f0) / 16_000
            voice = sum(np.sin(k * phase) / k for k in range(1, 16)) * 0.1
            voice[n // 3 : n // 3 + 800] = 0.03 * rng.standard_normal(800)
            sf.write(folder / f"p{i}.{side}.wav", voice.astype(np.float32), 16_000)
        rows.append({"id": f"p{i}", "text": "x", "speech": f"p{i}.speech.wav", "singing": f"p{i}.singing.wav"})
    (folder / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder / "manifest.jsonl"
