"""Speech -> singing with the AlignSTS model (Li et al. 2023): the registry's ``alignsts``.

The model (:class:`~.alignsts_model.AlignSTSModel`, an export of ``voxflip train-alignsts``) reads
what was said from the speech's Whisper encoder states (:mod:`voxflip.engine.features.content`),
the voice from the speech's log-mel, and the tune from the melody's F0 contour (each note's pitch
with the WORLD converters' portamento and vibrato, rests unvoiced); its rhythm adaptor and
cross-modal aligner decide where each sound of the speech goes in the song, and its decoder
predicts the sung log-mel, which a mel vocoder (the DSP one, or a neural one exported by
``voxflip export-vocoder`` for the 24 kHz setup) turns into audio with the melody's F0.

Whisper reads 30 s windows and the paper's windows follow the lengths of both the speech and the
song, so ``alignsts`` listens to the whole speech first, like ``psola``: its output comes once
the input has ended (the same whatever the block size). A model with the paper's relative
windows sings at most 60 s from at most 60 s of speech at once. The song is as long as the melody.
"""

from __future__ import annotations

import numbers
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from ..errors import AudioInputError, ConfigError
from ..features.content import CONTENT_FRAME_S, check_encoder, whisper_states
from ..features.levels import active_rms, limit_output
from ..features.mel import MelAnalyzer
from ..melody import Melody
from .alignsts_context import alignsts_chunk_grid
from .alignsts_model import MAX_CONTENT_FRAMES, MAX_TARGET_FRAMES, AlignSTSModel, notes_f0, target_mel
from .base import Converter, ConverterReport, check_transpose, joined
from .world_to_singing import WorldToSingingConfig

#: the longest speech the converter takes with a relative-window model, in seconds (it reads all at once)
MAX_SPEECH_S = MAX_CONTENT_FRAMES * CONTENT_FRAME_S
#: output frames vocoded per piece of the tail (about 1 s)
PIECE_FRAMES = 187
#: the level the model hears the speech at: the active RMS of the training corpus's speech (median -20.5
#: dBFS); the song comes out at the speech's own level relative to it (loud in, loud out; silence, silence)
MODEL_RMS = 10.0 ** (-20.5 / 20.0)


@dataclass
class AlignSTSState:
    pieces: list[np.ndarray] = field(default_factory=list)   # the speech so far, at the model's rate
    samples: int = 0           # where the next chunk starts (chunks are whole, past the input's end too)
    speech_samples: int = 0    # the speech kept
    finished: bool = False
    transpose: float = 0.0     # semitones on the melody, set at run time; the song takes the last value


class AlignSTSToSingingConverter(Converter):
    """Whole-input AlignSTS speech -> singing (module docstring)."""

    time_preserving = False

    def __init__(self, melody: Melody | None, model: AlignSTSModel, *, f0_hz: np.ndarray | None = None, vocoder=None,
                 config: WorldToSingingConfig | None = None, chunk_frames: int | None = None, seed: int = 0,
                 reference_mel: np.ndarray | None = None, content=None) -> None:
        """Args:
            melody: the tune; the song lasts until its last note ends (at most 60 s).
            model: the exported model.
            f0_hz: instead of a melody, the target F0 itself on the model's frame grid (0 unvoiced):
                the paper's condition, the F0 of a reference singing, consonant gaps and all.
            vocoder: a neural vocoder for the 24 kHz mel setup (``None``: the DSP mel vocoder).
            config: portamento, vibrato and transposition of the target F0 (the WORLD converters' settings).
            chunk_frames: input chunk in hops of 128 samples at 24 kHz (``None``: 1 s).
            seed: the diffusion decoder's noise.
            reference_mel: with ``f0_hz``, the reference singing's log-mel on the same frames, for a model that
                reads the target's envelope (the SpeechSplit 2.0 "w/ SE" baseline, an oracle).
            content: a causal content student (:class:`~..features.content_student.ContentStudentModel`) that
                reads the speech in place of Whisper's encoder (``None``: Whisper, as the model was trained).
        """
        from ..vocoder.mel_vocoder import MelVocoder, MelVocoderConfig

        grid = alignsts_chunk_grid()
        self.sample_rate = grid.sample_rate
        self.chunk_samples = grid.check_frames(chunk_frames or grid.default_frames) * grid.hop_samples
        self.model = model
        self.config = config or WorldToSingingConfig()
        check_transpose(self.config.transpose_semitones)
        if (melody is None) == (f0_hz is None):
            raise ConfigError("alignsts sings either a melody or a target F0 contour (exactly one of them)")
        self.f0 = notes_f0(melody, config=self.config) if melody is not None else np.asarray(f0_hz, np.float32)
        if self.f0.ndim != 1 or self.f0.shape[0] == 0 or not np.all(np.isfinite(self.f0)):
            raise ConfigError(f"a target F0 contour is a non-empty 1-D array of finite Hz values, got shape {self.f0.shape}")
        if self.f0.shape[0] > MAX_TARGET_FRAMES and not model.streams:
            where = f"the melody {melody.source}" if melody is not None else "the target F0"
            raise AudioInputError(f"alignsts sings at most {MAX_TARGET_FRAMES * target_mel().frame_s:.0f} s at once; "
                                  f"{where} lasts {self.f0.shape[0] * target_mel().frame_s:.1f} s: cut it into phrases")
        self.reference_mel = None if reference_mel is None else np.asarray(reference_mel, np.float32)
        bands = target_mel().n_mels
        if model.needs_target_mel and (self.reference_mel is None
                                       or self.reference_mel.shape != (self.f0.shape[0], bands)):
            raise ConfigError(f"{model.describe()} reads the real singing's envelope: it sings only with a reference "
                              f"singing's F0 and log-mel ({self.f0.shape[0]}, {bands}); got "
                              f"{None if self.reference_mel is None else self.reference_mel.shape}")
        self.vocoder = vocoder if vocoder is not None else MelVocoder(MelVocoderConfig(mel=target_mel()))
        self.analyzer = MelAnalyzer(target_mel())
        if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or not 0 <= seed < 2**63:
            raise ConfigError(f"seed={seed!r} must be a whole number in 0..2**63-1 (the diffusion decoder's noise)")
        self.seed = int(seed)
        self.content = content
        if content is None:
            check_encoder("AlignSTS")

    def describe(self) -> str:
        heard = "" if self.content is None else f", content from the {self.content.describe()}"
        return f"{self.name} @ {self.sample_rate} Hz ({self.model.describe()}{heard})"

    def init_state(self) -> AlignSTSState:
        return AlignSTSState()

    def step(self, window: np.ndarray, state: AlignSTSState, *, input_end: int | None = None) -> np.ndarray:
        """Listen: keep the chunk's speech; nothing is sung before the input has ended."""
        start = state.samples
        count = self.chunk_samples if input_end is None else max(0, min(self.chunk_samples, input_end - start))
        if not self.model.streams and start + count > MAX_SPEECH_S * self.sample_rate:
            raise AudioInputError(f"alignsts converts at most {MAX_SPEECH_S:.0f} s of speech at once; this input is "
                                  "longer: cut it into phrases")
        state.pieces.append(np.asarray(window[:count], np.float32).copy())
        state.samples += self.chunk_samples
        state.speech_samples += count
        return np.zeros(0, np.float32)

    def finish(self, state: AlignSTSState) -> np.ndarray:
        return joined(self.finish_chunks(state))

    def finish_chunks(self, state: AlignSTSState) -> Iterator[np.ndarray]:
        """Sing the whole song, then vocode it :data:`PIECE_FRAMES` frames at a time."""
        if state.finished:
            return
        state.finished = True
        speech = np.concatenate(state.pieces) if state.pieces else np.zeros(0, np.float32)
        state.pieces = []
        if speech.shape[0] < self.analyzer.config.win_samples:
            speech = np.pad(speech, (0, self.analyzer.config.win_samples - speech.shape[0]))
        level = active_rms(speech, self.sample_rate)
        if level > 0:
            speech = (speech.astype(np.float64) / level * MODEL_RMS).astype(np.float32)
        gain = level / MODEL_RMS
        if self.content is not None:
            content = self.content.states(speech, self.sample_rate)
        else:
            content = whisper_states(speech, self.sample_rate)
        timbre = self.analyzer.log_mel(speech).astype(np.float32)
        f0 = (self.f0 * 2.0 ** (state.transpose / 12.0)).astype(np.float32)
        mel = self.model.sing(content, f0, timbre, seed=self.seed, target_mel=self.reference_mel)
        vocoder_state = self.vocoder.init_state()
        n = mel.shape[0]
        lookahead = int(getattr(self.vocoder, "lookahead_frames", 0))
        # the last frame repeated closes the vocoder's lookahead (as its whole-utterance call does)
        mel = np.concatenate([mel, np.repeat(mel[-1:], lookahead, axis=0)])
        f0 = np.concatenate([f0, np.repeat(f0[-1:], lookahead)]).astype(np.float64)
        for a in range(0, n + lookahead, PIECE_FRAMES):
            audio, vocoder_state = self.vocoder.step(mel[a : a + PIECE_FRAMES], f0[a : a + PIECE_FRAMES], vocoder_state)
            yield limit_output(np.asarray(audio, np.float64) * gain)

    def set_param(self, state: AlignSTSState, name: str, value: float | str) -> None:
        """``transpose`` (semitones, -24..24): moves the whole song, which is sung once the input ends."""
        if name != "transpose":
            super().set_param(state, name, value)
        state.transpose = check_transpose(value, "transpose")

    def report(self, state: AlignSTSState) -> ConverterReport:
        return ConverterReport(stats={"speech_s": state.speech_samples / self.sample_rate,
                                      "song_s": self.f0.shape[0] * target_mel().frame_s})
