"""Singing -> speech with the trained S2S flow model (ONNX Runtime) and the DSP mel vocoder.

Per chunk of ``chunk_frames`` 10 ms frames at 16 kHz:

1. log-mel and F0 of the new singing frames (frame-local: the engine's own features);
2. the model's step graph turns singing mel into speech mel (``nodur``: one speech frame
   per singing frame, ``lookahead_frames`` later; the graph's state carries the rest);
   ``dur`` instead expands the prior by the predicted durations (carrying fractions from
   frame to frame, so it streams) and runs the flow decoder on the expanded frames; a
   residual model (``"residual": true`` in the manifest) decodes a correction, and the
   decoder graph adds it to the singing frames each expanded frame came from;
3. a speech intonation (the same rules as ``world-nodur``, on the singing's voicing and
   level) gives each output frame its F0, and the mel vocoder synthesises the audio.

Analysis runs ``lookahead_frames + 1`` frames ahead of synthesis (the model's lookahead
and the vocoder's interpolation frame), which is part of ``latency_samples``.
Noise for the prior comes from a generator seeded per stream, so a render is repeatable.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..backends.onnx_step import OnnxStepModel
from ..errors import ConfigError
from ..features.frames import frame_matrix
from ..features.mel import MelAnalyzer, MelConfig
from ..features.pitch import PitchConfig, yin_frames
from ..features.syllables import SyllableConfig, SyllableTracker
from ..vocoder.mel_vocoder import MelVocoder, MelVocoderConfig
from ..vocoder.source_filter import SynthState
from .base import ChunkGrid, Converter, ConverterReport, check_transpose
from .intonation import IntonationConfig, SpeechIntonation


def flow_chunk_grid() -> ChunkGrid:
    """The chunks a flow converter streams: multiples of its 10 ms mel hop; the model's 20 ms, offline and live.

    (One 10 ms frame per ONNX call costs more in call overhead than its 10 ms of latency saves.)
    """
    mel = MelConfig.for_to_speech()   # every flow model's (its manifest is checked against it on load)
    return ChunkGrid(mel.hop_samples, mel.sample_rate, default_frames=2, live_frames=2)


@dataclass
class FlowState:
    model: dict[str, np.ndarray]
    decoder: dict[str, np.ndarray]
    synth: SynthState
    tracker: SyllableTracker
    intonation: SpeechIntonation
    rng: np.random.Generator
    chunks: int = 0
    pending_f0: list[float] = field(default_factory=list)    # speech F0 of frames whose mel is still to come
    pending_voiced: list[bool] = field(default_factory=list)
    carry: float = 0.0                                        # dur: fractional frames owed
    frames_out: int = 0
    last_mel: np.ndarray | None = None
    last_f0: float = 0.0
    transpose_semitones: float = 0.0


class FlowToSpeechConverter(Converter):
    """The S2S flow model, singing -> speech (see the module docstring).

    The registry builds it as ``flow-nodur`` (``predict_durations=False``: one speech frame per
    singing frame) and ``flow-dur`` (the model's predicted durations).
    """

    name = "flow-to-speech"

    def __init__(self, model_path: str | Path, *, predict_durations: bool = True, chunk_frames: int | None = None,
                 threads: int = 1, seed: int = 0, transpose_semitones: float = 0.0) -> None:
        self.transpose_semitones = check_transpose(transpose_semitones)
        self.model = OnnxStepModel(model_path, threads=threads)
        mel = self.model.mel
        self.predict_durations = bool(predict_durations)
        self.time_preserving = not self.predict_durations
        self.sample_rate = mel.sample_rate
        self.hop_samples = mel.hop_samples
        self.chunk_frames = flow_chunk_grid().check_frames(chunk_frames or self.model.chunk_frames)
        self.chunk_samples = self.chunk_frames * self.hop_samples
        self.ahead = self.model.lookahead_frames + 1
        self.pitch = PitchConfig()
        self._mel = MelAnalyzer(mel)
        self._pitch_win = self.pitch.window_samples(self.sample_rate)
        margin = max(mel.win_samples, self._pitch_win) // 2 + 1
        self.context_samples = margin
        self.lookahead_samples = (self.ahead - 1) * self.hop_samples + margin + 1
        self.vocoder = MelVocoder(MelVocoderConfig(mel=mel))
        self._frame_s = self.hop_samples / self.sample_rate
        self._seed = seed

    def describe(self) -> str:
        return f"{self.name} ({self.model.path.name}) @ {self.sample_rate} Hz"

    def init_state(self) -> FlowState:
        return FlowState(
            model=self.model.init_state(), decoder=self.model.init_decoder_state(), synth=self.vocoder.init_state(),
            tracker=SyllableTracker(SyllableConfig(pitch_step_semitones=1.5), self._frame_s),
            intonation=SpeechIntonation(IntonationConfig(), self._frame_s), rng=np.random.default_rng(self._seed),
            transpose_semitones=self.transpose_semitones,
        )

    def set_param(self, state: FlowState, name: str, value: float | str) -> None:
        if name == "transpose":
            state.transpose_semitones = check_transpose(value)
        else:
            raise ConfigError(f"{self.name} has no parameter {name!r}; it has transpose")

    # -- analysis ------------------------------------------------------------------------------------
    def _analyse(self, window: np.ndarray, start: int, first: int, count: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        mel_cfg = self.model.mel
        frames = frame_matrix(window, start, first, count, self.hop_samples, mel_cfg.win_samples)
        log_mel = self._mel.log_mel_frames(frames)
        pitch_frames = frame_matrix(window, start, first, count, self.hop_samples, self._pitch_win)
        f0, _ = yin_frames(pitch_frames, self.sample_rate, self.pitch)
        level_db = 20.0 * np.log10(np.sqrt(np.mean(pitch_frames**2, axis=1)) + 1e-10)
        return log_mel, f0, level_db

    def _speech_f0(self, s: FlowState, f0: np.ndarray, level_db: np.ndarray) -> tuple[list[float], list[bool]]:
        out, voiced = [], []
        for hz, level in zip(f0, level_db, strict=True):
            event = s.tracker.update(hz > 0, float(level), float(hz))
            out.append(s.intonation.next(event, float(hz), float(level), s.transpose_semitones))
            voiced.append(event.voiced)
        return out, voiced

    # -- the step ------------------------------------------------------------------------------------
    def step(self, window: np.ndarray, state: FlowState, *, input_end: int | None = None) -> np.ndarray:
        s = state
        n = self.chunk_frames
        k = s.chunks
        first, count = (0, n + self.ahead) if k == 0 else (k * n + self.ahead, n)
        c0 = k * self.chunk_samples
        log_mel, f0, level = self._analyse(np.asarray(window, dtype=np.float64), c0 - self.context_samples, first, count)
        s.chunks += 1
        speech_mel = skip = None
        if not self.predict_durations:
            noise = s.rng.standard_normal(log_mel.shape).astype(np.float32)
            speech_mel, mu, logs, log_dur, s.model = self.model.step(log_mel.astype(np.float32), noise, s.model)
        else:   # dur draws its noise per expanded frame and decodes those; the step's own flow is not needed
            mu, logs, log_dur, skip, s.model = self.model.encode(log_mel.astype(np.float32), s.model)
        drop = self.model.lookahead_frames if k == 0 else 0     # outputs for frames before the stream
        mu, logs, log_dur = mu[drop:], logs[drop:], log_dur[drop:]
        # the intonation runs on the singing frames; the model's outputs lag them by the lookahead
        sf0, svoiced = self._speech_f0(s, f0, level)
        s.pending_f0.extend(sf0)
        s.pending_voiced.extend(svoiced)
        m = mu.shape[0]
        src_f0 = np.array(s.pending_f0[:m])
        del s.pending_f0[:m], s.pending_voiced[:m]
        if speech_mel is not None:
            return self._synth(s, speech_mel[drop:], src_f0)
        end_frame = None if input_end is None else -(-input_end // self.hop_samples)
        skip = None if skip is None else skip[drop:]   # a residual model's singing frames, to add to its output
        return self._expand(s, mu, logs, log_dur, skip, src_f0, k * n + 1 if k else 0, end_frame)

    def _expand(self, s: FlowState, mu, logs, log_dur, skip, src_f0, first_frame: int,
                end_frame: int | None) -> np.ndarray:
        counts = []
        for i, d in enumerate(np.expm1(np.maximum(log_dur, 0.0))):
            if end_frame is not None and first_frame + i >= end_frame:
                counts.append(0)
                continue
            s.carry += float(d)
            c = int(np.floor(s.carry))
            s.carry -= c
            counts.append(c)
        index = np.repeat(np.arange(mu.shape[0]), counts)
        if index.size == 0:
            return np.zeros(0, np.float32)
        noise = s.rng.standard_normal((index.size, mu.shape[1])).astype(np.float32)
        z = mu[index] + np.exp(logs[index]) * noise * float(self.model.manifest["noise_scale"])
        mel, s.decoder = self.model.decode(z, s.decoder, None if skip is None else skip[index])
        return self._synth(s, mel, src_f0[index])

    def _synth(self, s: FlowState, mel: np.ndarray, f0: np.ndarray) -> np.ndarray:
        if mel.shape[0] == 0:
            return np.zeros(0, np.float32)
        audio, s.synth = self.vocoder.step(mel, f0, s.synth)
        s.last_mel, s.last_f0 = mel[-1:], float(f0[-1])
        s.frames_out += mel.shape[0]
        return audio

    def finish(self, state: FlowState) -> np.ndarray:
        if self.time_preserving or state.last_mel is None:
            return np.zeros(0, np.float32)
        audio, state.synth = self.vocoder.step(state.last_mel, np.array([state.last_f0]), state.synth)
        return audio

    def report(self, state: FlowState) -> ConverterReport:
        return ConverterReport(stats={"frames_out": float(state.frames_out)})
