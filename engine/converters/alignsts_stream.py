"""Speech -> singing with an AlignSTS model as the speech arrives: the registry's ``alignsts-stream``.

``alignsts`` hears the whole speech first: Whisper's encoder reads 30 s windows, and the paper's
attention windows are centred on ``t N / T``, which needs both whole lengths. This converter is its
live form. What it changes, each a condition of streaming:

- **Content** from a causal content student (``--content-model``, :mod:`..features.content_student`)
  instead of Whisper: each 20 ms state is known 72.5 ms (the shipped student's lookahead) after it.
- **Windows** on absolute frames (a model trained with ``window_mode = "absolute"``): the windows are
  centred on ``t * ratio`` with the ratio fixed in advance, ``pace`` content frames per frame of real
  time (``pace`` 0.63: the speech is read at 0.63 of the song's length, dev-data's median reading
  against its singing; 1: the song sings at each moment what was said at that moment). Output frames
  ``[a, b)`` read the inputs :class:`~.alignsts_context.AlignSTSContext` names and nothing else, so a
  group of frames is sung once the content it reaches has arrived (:meth:`AlignSTSModel.frames`).
- **Voice and level** from the first :data:`VOICE_S` seconds of the stream (``alignsts`` reads the
  whole speech): the reference encoder's mel, and the active level that sets the song's.
- **Noise**: the diffusion decoder's, drawn per block of frames from the seed (:class:`BlockNoise`), the
  same whenever a frame is sung.

The song follows the melody's clock from the stream's first sample, delayed by :attr:`latency_samples`:
the longest wait, over the song, from a group's first sample's time to the moment its inputs are in,
computed from the model's context, the student's lookahead, the resampler to 16 kHz and the chunk.
Output frames are sung in groups of one chunk's length, at most one group per chunk of input (they
fall due one chunk apart, so this keeps the bound and spreads the work); for a file the output does
not depend on the block size (a test), and equals the model run on the whole song with the same
content and ratio.

**Step graphs.** An export that has them (:mod:`.alignsts_step`) computes each frame once, the state
carried: song frames are fed as soon as the content they read and the voice are in, at most
:data:`FEED_GROUPS` groups' worth a chunk (the context the first group needs catches up over a few
chunks instead of landing in one) and :data:`LEAD_FRAMES` past the next group's need, and a group is
sung once its frames are out; the latency is that
schedule played through (:meth:`_worst_wait_by_step`). An export without them runs the whole graph on
each group's slice with its context (:meth:`AlignSTSModel.frames`). Both sing the same song to float
rounding (a test); the step graphs run in real time at 21 ms chunks, the slices do not
(docs/performance.md).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import ConfigError
from ..features.content import CONTENT_FRAME_S
from ..features.content_student import ContentStream, ContentStudentModel
from ..features.levels import active_rms, limit_output
from ..features.mel import MelAnalyzer
from ..melody import Melody
from .alignsts_context import alignsts_stream_grid
from .alignsts_model import AlignSTSModel, BlockNoise, notes_f0, target_mel
from .alignsts_step import StepStream
from .alignsts_to_singing import MODEL_RMS
from .base import Converter, ConverterReport, check_transpose, joined
from .world_to_singing import WorldToSingingConfig

#: the stream's first seconds, whose mel is the voice the song is sung with and whose level sets the song's
VOICE_S = 2.0
#: seconds of speech per second of song by default: dev-data's readings last 0.63 of their singing (median of 25)
DEFAULT_PACE = 0.63
PACE_RANGE = (0.1, 2.0)
#: through the step graphs, song frames are fed ahead as the content and the voice allow, at most this many
#: groups' worth a chunk: the context the first group needs (152 frames) catches up over a few chunks at
#: this many times real time, where one burst of it overran 21 ms chunks (11 xruns at the voice's arrival)
FEED_GROUPS = 8
#: ... and no further than this many frames (at least a group) past what the next group to sing needs:
#: speech read faster than the song (pace 0.63) would otherwise let the frames fed run ever further ahead
#: of the song, and a transposition with them. Small groups are fed in batches of about this many frames
#: once less than a group is in beyond the next (a call costs about 5 ms whatever its length).
LEAD_FRAMES = 32


@dataclass
class AlignSTSStreamState:
    content: ContentStream             # the student, reading the 24 kHz input
    frames: np.ndarray                 # (capacity, 512): content frames first .. known - 1
    known: int = 0
    first: int = 0
    voice: list[np.ndarray] = field(default_factory=list)
    voice_samples: int = 0
    timbre: np.ndarray | None = None   # the graph's (1, n_mels, M), once the voice is in
    gain: float = 1.0
    samples: int = 0                   # input samples taken (the chunk grid)
    sung: int = 0                      # output frames sung
    speech_samples: int = 0
    last: tuple[np.ndarray, float] | None = None   # the last frame sung and its F0 (the vocoder's lookahead repeats it)
    bins: tuple[float, np.ndarray, np.ndarray] | None = None   # (transpose, F0, the graph's classes) of the song
    vocoder: Any = None
    finished: bool = False
    transpose: float = 0.0
    steps: StepStream | None = None    # the step graphs' stream, for an export that has them
    fed_f0: np.ndarray | None = None   # through them: the song's F0 as fed (transposed then), frame by frame


class AlignSTSStreamToSingingConverter(Converter):
    """AlignSTS speech -> singing as the speech arrives (module docstring)."""

    time_preserving = False
    #: content rows no group reads any more are dropped once there are this many (the copy is then rare)
    drop_after = 1024

    def __init__(self, melody: Melody, model: AlignSTSModel, content: ContentStudentModel, *, vocoder=None,
                 config: WorldToSingingConfig | None = None, chunk_frames: int | None = None, seed: int = 0,
                 pace: float = DEFAULT_PACE) -> None:
        from ..vocoder.mel_vocoder import MelVocoder, MelVocoderConfig

        if not model.streams:
            raise ConfigError(f"alignsts-stream needs a model with absolute windows (window_mode = \"absolute\"); "
                              f"{model.describe()} centres them on the whole lengths: train one with --set "
                              "'model.window_mode=\"absolute\"' (docs/models.md), or render with alignsts")
        if model.needs_target_mel:
            raise ConfigError(f"{model.describe()} reads the real singing's envelope: it cannot stream")
        if isinstance(pace, bool) or not isinstance(pace, int | float) or not PACE_RANGE[0] <= pace <= PACE_RANGE[1]:
            raise ConfigError(f"pace={pace!r} must be a number in {PACE_RANGE[0]}..{PACE_RANGE[1]} (seconds of speech "
                              "per second of song)")
        grid = alignsts_stream_grid()
        self.sample_rate = grid.sample_rate
        self.group = grid.check_frames(chunk_frames or grid.default_frames)
        self.chunk_samples = self.group * grid.hop_samples
        self.model, self.student = model, content
        self.config = config or WorldToSingingConfig()
        check_transpose(self.config.transpose_semitones)
        self.f0 = notes_f0(melody, config=self.config)
        self.bins_total = self.f0.shape[0]
        self.frame_s = target_mel().frame_s
        self.pace = float(pace)
        self.ratio = self.pace * self.frame_s / CONTENT_FRAME_S
        self.seed = int(seed)
        self.vocoder = vocoder if vocoder is not None else MelVocoder(MelVocoderConfig(mel=target_mel()))
        self.analyzer = MelAnalyzer(target_mel())
        self.voice_samples = int(round(VOICE_S * self.sample_rate))
        self.lookahead_frames = int(getattr(self.vocoder, "lookahead_frames", 0))
        #: through the step graphs (each frame computed once) where the export has them, else the sliced graph
        self.by_step = model.has_step_graphs
        self._latency = self._worst_wait_by_step() if self.by_step else self._worst_wait()

    # -- timing ------------------------------------------------------------------------------------
    def _worst_wait(self) -> int:
        """The latency: over every group of the song, how long after its first sample is due (vocoder
        lookahead counted) its inputs are in, on the chunk grid."""
        worst = 0
        for a in range(0, self.bins_total, self.group):
            b = min(self.bins_total, a + self.group)
            need = max(self.voice_samples, self.student.samples_needed(
                self.model.content_needed(a, b, self.bins_total, self.ratio), self.sample_rate))
            ready = math.ceil(need / self.chunk_samples) * self.chunk_samples
            due = max(0, a - self.lookahead_frames) * self.model_hop
            worst = max(worst, ready - due)
        return worst

    def _worst_wait_by_step(self) -> int:
        """The latency through the step graphs: the stream played chunk by chunk as :meth:`step` runs it (rows
        as the student gives them, frames fed ahead at most :data:`FEED_GROUPS` groups a chunk once the voice is
        in, a group sung once fed, one a chunk), the longest wait of a group after it falls due."""
        graphs = self.model.step_graphs()
        delay = graphs.delay
        unknown = 1 << 40
        rows = fed = sung = worst = 0
        chunk = 0
        while sung < self.bins_total:
            chunk += 1
            now = chunk * self.chunk_samples
            while self.student.samples_needed(rows + 1, self.sample_rate) <= now:
                rows += 1
            if now < self.voice_samples:
                continue
            keys = rows - graphs.content_delay
            lo, hi = fed, self._feed_limit(fed, sung)
            while hi > lo:                       # the furthest frame whose keys are in
                mid = (lo + hi + 1) // 2
                lo, hi = (mid, hi) if graphs.key_span(fed, mid - fed, self.ratio, unknown)[1] <= keys else (lo, mid - 1)
            fed = lo
            b = min(self.bins_total, sung + self.group)
            if fed >= b + delay:
                worst = max(worst, now - max(0, sung - self.lookahead_frames) * self.model_hop)
                sung = b
        return worst

    def _feed_limit(self, fed: int, sung: int) -> int:
        """How far the step graphs are fed this chunk: nothing while a group beyond the next one to sing is in;
        else :data:`FEED_GROUPS` groups on at most, :data:`LEAD_FRAMES` past the next group's need, the song's end."""
        need = sung + self.group + self.model.step_graphs().delay
        if fed >= need + self.group:
            return fed
        return min(self.bins_total + self.model.step_graphs().delay, fed + FEED_GROUPS * self.group,
                   need + max(self.group, LEAD_FRAMES))

    @property
    def model_hop(self) -> int:
        return target_mel().hop_samples

    @property
    def latency_samples(self) -> int:
        return self._latency

    def describe(self) -> str:
        return (f"{self.name} @ {self.sample_rate} Hz ({self.model.describe()}, content from the "
                f"{self.student.describe()}, pace {self.pace:g}, "
                f"{'step graphs' if self.by_step else 'sliced graph'}, {self._latency / self.sample_rate:.2f} s behind "
                "the melody)")

    # -- streaming ---------------------------------------------------------------------------------
    def init_state(self) -> AlignSTSStreamState:
        steps = (self.model.step_graphs().stream(self.ratio, self.bins_total, self._noise) if self.by_step else None)
        return AlignSTSStreamState(content=self.student.stream(self.sample_rate),
                                   frames=np.zeros((0 if steps else 256, 512), np.float32),
                                   vocoder=self.vocoder.init_state(), steps=steps)

    def step(self, window: np.ndarray, state: AlignSTSStreamState, *, input_end: int | None = None) -> np.ndarray:
        start = state.samples
        count = self.chunk_samples if input_end is None else max(0, min(self.chunk_samples, input_end - start))
        state.samples += self.chunk_samples
        self._listen(np.asarray(window[:count], np.float32), state)
        if state.steps is not None and state.timbre is not None:
            self._feed(state, state.steps.feedable(self._feed_limit(state.steps.fed, state.sung)))
        # one group per chunk at most: groups fall due one chunk apart, and several ready at once (when the
        # voice is in) would be one burst of work where a device has time for one chunk's
        return self._sing(state, final=False, groups=1)

    def finish(self, state: AlignSTSStreamState) -> np.ndarray:
        return joined(self.finish_chunks(state))

    def finish_chunks(self, state: AlignSTSStreamState) -> Iterator[np.ndarray]:
        """The input has ended: the student's last frames, then the rest of the song group by group."""
        if state.finished:
            return
        state.finished = True
        # a song that runs past the speech (at this pace) hears silence there, as it would live
        last = (self.bins_total - 1) // self.group * self.group
        need = self.model.content_needed(last, self.bins_total, self.bins_total, self.ratio)
        missing = self.student.samples_needed(need, self.sample_rate) - state.speech_samples
        if missing > 0:
            self._listen(np.zeros(missing, np.float32), state)
        self._keep(state, state.content.flush())
        if state.steps is not None:
            state.steps.end_content()
        if state.timbre is None:
            self._voice_in(state)
        while state.sung < self.bins_total:
            yield self._sing(state, final=True, groups=1)
        tail = self.lookahead_frames
        if tail and state.last is not None:
            mel, f0 = state.last
            audio, state.vocoder = self.vocoder.step(np.repeat(mel, tail, axis=0), np.full(tail, f0), state.vocoder)
            yield limit_output(np.asarray(audio, np.float64) * state.gain)

    def _listen(self, x: np.ndarray, state: AlignSTSStreamState) -> None:
        if state.timbre is None:
            take = min(x.shape[0], self.voice_samples - state.voice_samples)
            state.voice.append(x[:take].copy())
            state.voice_samples += take
            if state.voice_samples >= self.voice_samples:
                self._voice_in(state)
        state.speech_samples += x.shape[0]
        if x.shape[0]:
            self._keep(state, state.content.push(x))

    def _voice_in(self, state: AlignSTSStreamState) -> None:
        voice = np.concatenate(state.voice) if state.voice else np.zeros(0, np.float32)
        state.voice = []
        win = self.analyzer.config.win_samples
        if voice.shape[0] < win:
            voice = np.pad(voice, (0, win - voice.shape[0]))
        level = active_rms(voice, self.sample_rate)
        if level > 0:
            voice = (voice.astype(np.float64) / level * MODEL_RMS).astype(np.float32)
            state.gain = level / MODEL_RMS
        state.timbre = self.model.timbre_input(self.analyzer.log_mel(voice))
        if state.steps is not None:
            state.steps.set_voice(state.timbre)

    @staticmethod
    def _keep(state: AlignSTSStreamState, frames: np.ndarray) -> None:
        if state.steps is not None:
            state.steps.push_content(frames)
            state.known += frames.shape[0]
            return
        n, held = frames.shape[0], state.known - state.first
        if held + n > state.frames.shape[0]:
            grown = np.zeros((max(2 * state.frames.shape[0], held + n), 512), np.float32)
            grown[:held] = state.frames[:held]
            state.frames = grown
        state.frames[held : held + n] = frames
        state.known += n

    def _sing(self, state: AlignSTSStreamState, *, final: bool, groups: int | None = None) -> np.ndarray:
        """Every group whose inputs are in (``final``: the input has ended, every remaining one, up to ``groups``)."""
        out = []
        while state.sung < self.bins_total and (groups is None or len(out) < groups):
            a = state.sung
            b = min(self.bins_total, a + self.group)
            if not final and (state.timbre is None or (
                    state.steps.fed < b + state.steps.graphs.delay if state.steps is not None
                    else self.model.content_needed(a, b, self.bins_total, self.ratio) > state.known)):
                break
            out.append(self._sing_group(state, a, b))
            state.sung = b
        return np.concatenate(out) if out else np.zeros(0, np.float32)

    def _feed(self, state: AlignSTSStreamState, upto: int) -> None:
        """Feed the step graphs the song's frames up to ``upto``, at the transposition now; their F0 is kept, for
        the vocoder to sing the notes the model was given."""
        steps = state.steps
        if upto <= steps.fed:
            return
        f0, bins = self._bins(state)
        if state.fed_f0 is None:
            state.fed_f0 = np.zeros(self.bins_total, np.float32)
        state.fed_f0[steps.fed : upto] = f0[steps.fed : upto]
        steps.feed(bins, upto)

    def _bins(self, state: AlignSTSStreamState) -> tuple[np.ndarray, np.ndarray]:
        """The song's F0 and the graph's F0 classes, at the transposition now."""
        if state.bins is None or state.bins[0] != state.transpose:
            f0 = (self.f0 * 2.0 ** (state.transpose / 12.0)).astype(np.float32)
            state.bins = (state.transpose, f0, self.model.f0_input(f0))
        return state.bins[1], state.bins[2]

    def _sing_group(self, state: AlignSTSStreamState, a: int, b: int) -> np.ndarray:
        f0, bins = self._bins(state)
        if state.steps is not None:
            # live, the frames were fed ahead (step); once the input has ended, what is left is fed here
            self._feed(state, b + state.steps.graphs.delay)
            mel = state.steps.take(a, b).T
            f0 = state.fed_f0              # the notes as they were fed: what the mel sings
        else:
            mel = self._sliced(state, bins, a, b)
        state.last = (mel[-1:], float(f0[b - 1]))
        audio, state.vocoder = self.vocoder.step(mel, f0[a:b].astype(np.float64), state.vocoder)
        return limit_output(np.asarray(audio, np.float64) * state.gain)

    def _sliced(self, state: AlignSTSStreamState, bins: np.ndarray, a: int, b: int) -> np.ndarray:
        """Frames ``[a, b)`` by the whole graph on the slices they reach (an export without step graphs)."""
        rows = state.frames[: max(1, state.known - state.first)]
        mel = self.model.frames(rows, bins, state.timbre, a, b, ratio=self.ratio, noise=self._noise,
                                first=state.first).T
        # the rows no later group reads go (an hour of content would otherwise be 360 MB)
        drop = min(self.model.content_first(b, self.ratio), state.known) - state.first
        if drop > self.drop_after:
            keep = state.known - state.first - drop
            state.frames[:keep] = state.frames[drop : drop + keep]
            state.first += drop
        return mel

    @property
    def _noise(self) -> BlockNoise | None:
        if self.model.decoder != "diffusion":
            return None
        if not hasattr(self, "_block_noise"):
            self._block_noise = BlockNoise(self.seed, self.model.steps, self.model.n_mels)
        return self._block_noise

    def set_param(self, state: AlignSTSStreamState, name: str, value: float | str) -> None:
        """``transpose`` (semitones, -24..24): moves the notes from the next group sung, or through the step
        graphs from the next frame fed (sung ``delay`` and at most ``group + max(group, LEAD_FRAMES)`` frames
        later; the model's context blends it in over ``delay`` frames either side, as a melody that changed
        there would)."""
        if name != "transpose":
            super().set_param(state, name, value)
        state.transpose = check_transpose(value, "transpose")

    def report(self, state: AlignSTSStreamState) -> ConverterReport:
        return ConverterReport(stats={"speech_s": state.speech_samples / self.sample_rate,
                                      "song_s": self.bins_total * self.frame_s,
                                      "behind_melody_s": self._latency / self.sample_rate})

