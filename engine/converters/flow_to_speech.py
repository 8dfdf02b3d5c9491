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
   level) gives each output frame its F0, and the vocoder synthesises the audio: the DSP mel
   vocoder by default, or a neural one exported by ``voxflip export-vocoder`` (``vocoder``:
   :mod:`..vocoder.neural`), which has the same one frame of lookahead.

Analysis runs ``lookahead_frames + 1`` frames ahead of synthesis (the model's lookahead
and the vocoder's interpolation frame), which is part of ``latency_samples``.
Noise for the prior comes from a generator seeded per stream, so a render is repeatable.

Level and rate safety (docs/converters.md, "Level safety"): a frame whose mel window peaks above
full scale is analysed scaled down by ``2**-k`` (:mod:`..features.levels`; ``k`` never falls
within a stream, so a loud stream keeps its level contour), so the model sees the levels it was
trained on whatever the input's, and ``k * ln 2`` is added back to the speech mel of the frames
that came from it: a loud input comes out loud, at about the length a normal-level one gets. The bands above :data:`RESAMPLER_EDGE` of Nyquist (7.2-8 kHz), which a resampler's
transition band attenuates and a native 16 kHz input does not, take the value of the band below
them, so the same content gives the same durations at any input rate (the model's durations
follow that band closely: it alone moved a 4 s sentence from 4.0 s at 22-192 kHz to 4.2 s at 16 kHz).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from ..backends.trt_step import GpuStepModel
from ..errors import ConfigError
from ..features.frames import frame_matrix
from ..features.levels import scale_exponents
from ..features.mel import MelAnalyzer, MelConfig, band_edges_hz
from ..features.pitch import PitchConfig, yin_frames
from ..features.syllables import SyllableConfig, SyllableTracker
from ..vocoder.mel_vocoder import MelVocoder, MelVocoderConfig
from ..vocoder.neural import NeuralVocoder
from .base import ChunkGrid, Converter, ConverterReport, check_transpose
from .intonation import IntonationConfig, SpeechIntonation

#: fraction of the model's Nyquist frequency up to which every resampler is flat (pedalboard's
#: StreamResampler: -0.0 dB at 7.2 kHz, -0.2 dB at 7.5, -3 dB at 7.8 for 16 kHz out); the mel bands
#: reaching above it are not read from the input (see the module docstring)
RESAMPLER_EDGE = 0.9
#: the lowest singing F0 the converters track (Hz). The F0 only steers the speech intonation; its
#: window (two periods of this floor) is the longest reach past a live chunk: 33 ms at 60 Hz, 29 ms
#: at 70 Hz. On dev-data's singing 0.8% of frames change voicing; the converters' CER and DNSMOS
#: did not get worse (docs/results.md)
F0_FLOOR_HZ = 70.0
#: the most speech frames one singing frame may expand to (normal input: at most about 10; a
#: bound on the output's length whatever the model predicts)
MAX_FRAMES_PER_FRAME = 16.0


def flow_chunk_grid() -> ChunkGrid:
    """The chunks a flow converter streams: multiples of its 10 ms mel hop; 20 ms offline, 10 ms live.

    (Offline, two frames per ONNX call halve the calls; live, one frame per call is 10 ms less latency.)
    """
    mel = MelConfig.for_to_speech()   # every flow model's hop (its manifest is checked against it on load)
    return ChunkGrid(mel.hop_samples, mel.sample_rate, default_frames=2, live_frames=1)


@dataclass
class FlowState:
    model: dict[str, np.ndarray]
    decoder: dict[str, np.ndarray]
    synth: Any                     # the vocoder's state (SynthState or NeuralVocoderState)
    tracker: SyllableTracker
    intonation: SpeechIntonation
    rng: np.random.Generator
    chunks: int = 0
    pending_f0: list[float] = field(default_factory=list)    # speech F0 of frames whose mel is still to come
    pending_voiced: list[bool] = field(default_factory=list)
    pending_gain: list[float] = field(default_factory=list)  # log gain taken off each such frame (level safety)
    gain_exponent: int = 0                                    # the largest 2**-k scale used so far
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
                 threads: int = 1, seed: int = 0, transpose_semitones: float = 0.0,
                 vocoder: str | Path | None = None) -> None:
        self.transpose_semitones = check_transpose(transpose_semitones)
        self.model = GpuStepModel(model_path, threads=threads)   # a TensorRT engine where built, else ONNX Runtime
        mel = self.model.mel
        self.predict_durations = bool(predict_durations)
        self.time_preserving = not self.predict_durations
        self.sample_rate = mel.sample_rate
        self.hop_samples = mel.hop_samples
        self.chunk_frames = flow_chunk_grid().check_frames(chunk_frames or self.model.chunk_frames)
        self.chunk_samples = self.chunk_frames * self.hop_samples
        self.ahead = self.model.lookahead_frames + 1
        self.pitch = PitchConfig(f0_min_hz=F0_FLOOR_HZ)
        self._mel = MelAnalyzer(mel)
        self._pitch_win = self.pitch.window_samples(self.sample_rate)
        margin = max(mel.win_samples, self._pitch_win) // 2 + 1
        self.context_samples = margin
        self.lookahead_samples = (self.ahead - 1) * self.hop_samples + margin + 1
        self.vocoder: MelVocoder | NeuralVocoder = MelVocoder(MelVocoderConfig(mel=mel))
        if vocoder is not None:
            self.vocoder = NeuralVocoder(vocoder, threads=threads, seed=seed)
            theirs = self.vocoder.mel
            if theirs != mel:
                hint = (f"train one with model.mel_window = {mel.win_samples}" if theirs == replace(mel, win_samples=
                        theirs.win_samples) else "train one with a hifigan-v3 or pwg-small preset, not *-24k")
                raise ConfigError(f"vocoder {str(vocoder)!r} reads {theirs.sample_rate} Hz mel frames of hop "
                                  f"{theirs.hop_samples}, {theirs.win_samples}-sample windows; this flow model makes "
                                  f"{mel.sample_rate} Hz, hop {mel.hop_samples}, {mel.win_samples}-sample windows ({hint})")
            if self.vocoder.lookahead_frames != MelVocoder.lookahead_frames:
                raise ConfigError(f"vocoder {str(vocoder)!r} looks {self.vocoder.lookahead_frames} frames ahead; the flow "
                                  f"converters take vocoders of {MelVocoder.lookahead_frames} frame (export one trained "
                                  f"with model.lookahead_frames = {MelVocoder.lookahead_frames})")
        self._frame_s = self.hop_samples / self.sample_rate
        self._seed = seed
        upper = band_edges_hz(mel)[2:]
        self._bands_read = max(1, int(np.sum(upper <= RESAMPLER_EDGE * mel.sample_rate / 2)))

    def describe(self) -> str:
        voc = f", {self.vocoder.describe()} vocoder" if isinstance(self.vocoder, NeuralVocoder) else ""
        return f"{self.name} ({self.model.path.name}{voc}) @ {self.sample_rate} Hz"

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
    def _analyse(self, window: np.ndarray, start: int, first: int, count: int,
                 s: FlowState) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Log-mel (level-safe, top bands from below the resampler edge), F0, level in dB and the
        log gain taken off each frame's mel (0 until the stream first goes above full scale)."""
        mel_cfg = self.model.mel
        frames = frame_matrix(window, start, first, count, self.hop_samples, mel_cfg.win_samples)
        # The scale only ever grows: once loud, the stream keeps its own level contour (which the
        # model's durations follow), at the level of its loudest frame so far brought to full scale.
        own = scale_exponents(np.max(np.abs(frames), axis=1)) if count else np.zeros(0, np.int64)
        exponents = np.maximum.accumulate(np.concatenate([[s.gain_exponent], own]))[1:]
        if count:
            s.gain_exponent = int(exponents[-1])
        if exponents.any():
            frames = np.ldexp(frames, -exponents[:, None])
        log_mel = self._mel.log_mel_frames(frames)
        log_mel[:, self._bands_read:] = log_mel[:, self._bands_read - 1 : self._bands_read]
        pitch_frames = frame_matrix(window, start, first, count, self.hop_samples, self._pitch_win)
        f0, _ = yin_frames(pitch_frames, self.sample_rate, self.pitch)
        level_db = 20.0 * np.log10(np.sqrt(np.mean(pitch_frames**2, axis=1)) + 1e-10)
        return log_mel, f0, level_db, exponents * np.log(2.0)

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
        log_mel, f0, level, log_gain = self._analyse(np.asarray(window, dtype=np.float64), c0 - self.context_samples,
                                                     first, count, s)
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
        s.pending_gain.extend(log_gain.tolist())
        m = mu.shape[0]
        src_f0 = np.array(s.pending_f0[:m])
        src_gain = np.array(s.pending_gain[:m])
        del s.pending_f0[:m], s.pending_voiced[:m], s.pending_gain[:m]
        if speech_mel is not None:
            return self._synth(s, speech_mel[drop:] + src_gain[:, None], src_f0)
        end_frame = None if input_end is None else -(-input_end // self.hop_samples)
        skip = None if skip is None else skip[drop:]   # a residual model's singing frames, to add to its output
        return self._expand(s, mu, logs, log_dur, skip, src_f0, src_gain, k * n + 1 if k else 0, end_frame)

    def _expand(self, s: FlowState, mu, logs, log_dur, skip, src_f0, src_gain, first_frame: int,
                end_frame: int | None) -> np.ndarray:
        counts = []
        log_dur = np.asarray(log_dur, dtype=np.float64)
        log_dur = np.where(np.isfinite(log_dur), log_dur, 0.0)
        for i, d in enumerate(np.minimum(np.expm1(np.maximum(log_dur, 0.0)), MAX_FRAMES_PER_FRAME)):
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
        return self._synth(s, mel + src_gain[index][:, None], src_f0[index])

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
