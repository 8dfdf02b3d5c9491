"""Speech -> singing with WORLD analysis/synthesis, driven by a melody.

The speech is cut into syllable units as it arrives (causally, see
:mod:`voxflip.engine.features.syllables`): each unit is an onset (the unvoiced
consonants before a voiced nucleus, stop closures included), the nucleus, and,
before a pause, a coda. Pauses between phrases are dropped.

The output runs on the melody's clock. Note ``j`` takes unit ``j``: the onset
is placed at the note start at its spoken speed (at most half the note), the
coda at the note end, and the nucleus fills the rest -- its first and last
``edge_ms`` (the consonant-vowel transitions) at spoken speed when there is
room, the steady middle stretched or compressed. Voiced frames take the note's
pitch with an optional portamento from the previous note (legato only) and a
delayed vibrato; unvoiced frames stay unvoiced. Rests are silence.

When the melody runs out while speech units remain, the melody is repeated
(and the report says so, with counts); when notes remain after the last
unit, the last vowel is held over them. A note is only sung once its unit is
complete, so an offline render is the same whatever the block size.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import ConfigError, OptionError
from ..features.syllables import SyllableConfig
from ..features.world import AnalysisConfig, Frames
from ..melody import Melody, Note
from ..vocoder.shaping import ShapingConfig
from .base import ConverterReport, check_transpose, joined
from .syllable_units import Unit, UnitTracker
from .world_pipeline import PipelineState, WorldPipelineConverter

_SILENCE_POWER = 1e-14
#: output frames per piece of the tail sung after the speech has ended (2 s at the 5 ms hop; the
#: synthesiser needs about 30 MB per second of frames it is given at once)
TAIL_PIECE_FRAMES = 400


@dataclass(frozen=True)
class WorldToSingingConfig:
    """Settings of the WORLD speech-to-singing converter.

    Attributes:
        transpose_semitones: added to every note.
        vibrato_cents: vibrato depth (peak deviation); 0 disables it.
        vibrato_hz: vibrato rate.
        vibrato_delay_ms: vibrato starts this long after the note starts (then fades in over 100 ms).
        portamento_ms: glide into a note that follows the previous one without a rest; 0 disables it.
        overshoot: with a glide, the fraction of the interval by which the pitch passes the new note
            before it settles (a damped second-order step that peaks ``portamento_ms`` into the note
            instead of the raised-cosine glide), at most :data:`OVERSHOOT_MAX_CENTS`; 0 (the default)
            keeps the plain glide.
        wander: how far the vibrato's rate and depth wander within a note, as a real singer's do (a
            fraction: the rate by up to ``0.25 * wander`` of itself, the depth by up to ``wander``),
            along slow sinusoids of incommensurate periods whose phases follow from the note's pitch
            (the same output for the same input; 0, the default, a steady vibrato). Over 100 dev-data
            songs by ``psola`` neither 0.5 nor 1 changed CER, DNSMOS or RCA beyond their intervals
            (docs/results.md, "A vibrato that wanders"), so it stays 0.
        edge_ms: length of the nucleus transitions kept at spoken speed.
        max_onset_fraction: the onset consonants take at most this fraction of a note.
        onset_stretch: the onset consonants last this many times their spoken length, within
            ``max_onset_fraction`` (1, the default: as spoken; the live-notes singer keeps them as
            spoken whatever it is). Over 100 dev-data songs by ``psola``,
            1.6 followed the notes worse (RCA -0.036, every song) and kept no more words (docs/results.md,
            "Longer onsets"), so it stays 1.
        shaping: the singer's-formant peak and brightness shelf on the output of ``world``, ``psola``
            and ``psola-stream`` (:class:`~voxflip.engine.vocoder.shaping.ShapingConfig`; the
            singers' ``--singers-formant-db`` and ``--brightness-db``).
    """

    transpose_semitones: float = 0.0
    # The median vibrato of dev-data's real singers on their long notes (scripts/measure_vibrato.py:
    # 62 of 69 notes of 0.6 s or more; rate quartiles 4.0-5.6 Hz, depth 12-43 cents).
    vibrato_cents: float = 24.0
    vibrato_hz: float = 4.9
    vibrato_delay_ms: float = 200.0
    portamento_ms: float = 30.0
    overshoot: float = 0.0
    wander: float = 0.0
    edge_ms: float = 30.0
    max_onset_fraction: float = 0.5
    onset_stretch: float = 1.0
    analysis: AnalysisConfig = AnalysisConfig()
    syllables: SyllableConfig = SyllableConfig()
    shaping: ShapingConfig = ShapingConfig()

    def __post_init__(self) -> None:
        if not 0.0 <= self.vibrato_cents <= 200.0:
            raise OptionError("vibrato_cents", self.vibrato_cents, "is outside 0..200 cents")
        if not 0.5 <= self.vibrato_hz <= 12.0:
            raise OptionError("vibrato_hz", self.vibrato_hz, "is outside 0.5..12 Hz")
        if not 0.0 <= self.portamento_ms <= 500.0:
            raise OptionError("portamento_ms", self.portamento_ms, "is outside 0..500 ms")
        if not 0.0 <= self.overshoot <= 0.5:
            raise OptionError("overshoot", self.overshoot, "is outside 0..0.5 of the interval")
        if not 0.0 <= self.wander <= 1.0:
            raise OptionError("wander", self.wander, "is outside 0..1")
        check_transpose(self.transpose_semitones)
        if not 0.0 < self.max_onset_fraction <= 0.9:
            raise OptionError("max_onset_fraction", self.max_onset_fraction, "is outside (0, 0.9]")
        if not 1.0 <= self.onset_stretch <= 4.0:
            raise OptionError("onset_stretch", self.onset_stretch, "is outside 1..4")



#: the slow sinusoids along which ``wander`` moves the vibrato's rate and depth (Hz; incommensurate)
WANDER_RATE_HZ = 0.37
WANDER_DEPTH_HZ = 0.61
#: the most an ``overshoot`` passes the note by (cents): inside the 50-cent band of raw chroma accuracy
OVERSHOOT_MAX_CENTS = 40.0


def overshoot_glide(t_s: float, glide_s: float, overshoot: float) -> float:
    """The step response of a damped second-order system that overshoots by ``overshoot`` (a fraction of
    the step) at ``glide_s``: 0 at the start, with zero slope, then past 1 and back."""
    log_os = math.log(overshoot)
    zeta = -log_os / math.sqrt(math.pi * math.pi + log_os * log_os)
    omega_d = math.pi / glide_s
    sigma = zeta * omega_d / math.sqrt(1.0 - zeta * zeta)
    return 1.0 - math.exp(-sigma * t_s) * (math.cos(omega_d * t_s) + sigma / omega_d * math.sin(omega_d * t_s))


def sung_pitch_hz(midi: float, t_s: float, prev_midi: float | None, cfg: WorldToSingingConfig) -> float:
    """The F0 sung ``t_s`` seconds into a note of pitch ``midi``: a raised-cosine glide of ``portamento_ms``
    from ``prev_midi`` (a legato predecessor; None after a rest), or with ``overshoot`` a glide that passes
    the note and settles; then the delayed vibrato."""
    if prev_midi is not None and cfg.portamento_ms > 0:
        glide_s = cfg.portamento_ms / 1000.0
        if cfg.overshoot > 0.0:
            step = midi - prev_midi
            w = overshoot_glide(t_s, glide_s, cfg.overshoot)
            past = (w - 1.0) * step   # semitones beyond the note, in the step's direction when > 0
            cap = OVERSHOOT_MAX_CENTS / 100.0
            if past * step > 0:
                past = math.copysign(cap * math.tanh(abs(past) / cap), past)
            midi = midi + past
        elif t_s < glide_s:
            w = 0.5 - 0.5 * math.cos(math.pi * t_s / glide_s)
            midi = prev_midi + (midi - prev_midi) * w
    if cfg.vibrato_cents > 0:
        delay = cfg.vibrato_delay_ms / 1000.0
        if t_s > delay:
            fade = min(1.0, (t_s - delay) / 0.1)
            u = t_s - delay
            cycles, depth = cfg.vibrato_hz * u, cfg.vibrato_cents
            if cfg.wander > 0.0:
                # The rate's deviation integrates to a phase: rate(u) = hz (1 + a sin(2 pi f u + p)).
                seed = 2.0 * math.pi * ((midi * 0.618034 + (prev_midi or 0.0) * 0.414214) % 1.0)
                a, f = 0.25 * cfg.wander, WANDER_RATE_HZ
                cycles += cfg.vibrato_hz * a * (math.cos(seed) - math.cos(2.0 * math.pi * f * u + seed)) / (2.0 * math.pi * f)
                depth *= 1.0 + cfg.wander * math.sin(2.0 * math.pi * WANDER_DEPTH_HZ * u + 2.0 * seed)
            midi += fade * (depth / 100.0) * math.sin(2.0 * math.pi * cycles)
    return midi_hz(midi)


def midi_hz(midi: float) -> float:
    return 440.0 * 2.0 ** ((midi - 69.0) / 12.0)


def sung_midi(melody: Melody, t_s: float) -> float | None:
    """The pitch a singer sang at ``t_s`` on the melody's clock (``Melody.sung``), in semitones; None when
    the melody has none there (then the note's own pitch is sung). A melody sung again after its end
    (a speech longer than the tune) follows the same pitch on every pass."""
    sung = melody.sung
    if sung is None:
        return None
    span = melody.span_s
    return sung.at(math.fmod(t_s, span) if t_s >= span > 0 else t_s)


@dataclass
class _Slot:
    """A note being sung: its frame span on the output clock and the unit it uses."""

    note: Note
    start: int
    end: int
    unit: Unit
    held: bool  # True when it re-uses the last unit (melisma)
    prev_midi: float | None
    notes: tuple[Note, ...] = ()  # a melisma over several notes (psola's plan): the pitch follows each in turn
    scored: bool = False          # held because the score's lyrics continue the syllable here


@dataclass
class ToSingingState:
    units: UnitTracker
    transpose_semitones: float
    out_frame: int = 0                                     # next output frame on the melody clock
    note_index: int = 0                                    # next note of the current pass through the melody
    repeat: int = 0                                        # completed passes through the melody
    slot: _Slot | None = None
    last_unit: Unit | None = None
    last_midi: float | None = None
    last_note_end: int = -1
    input_ended: bool = False
    notes_sung: int = 0
    notes_held: int = 0                  # the last vowel held because the speech ran out of syllables
    notes_melisma: int = 0               # held because the score's lyrics say so
    last_frame: Frames | None = None
    sources: list[float] | None = None   # per output frame, its input frame (-1: silence), when traced
    plan: list[_Slot] | None = None      # every slot decided in advance (psola), else None: note by note
    gains: list[float] | None = None
    rest_pool: np.ndarray | None = None  # input frames a rest plays (psola: the speech's own pauses)
    rest_cursor: int = 0                 # next frame of rest_pool
    pauses: Any = None                   # psola-stream: the speech's pauses heard so far
    nucleus_map: Any = None              # psola: the frame map of the nucleus being sung (key, sources, voiced)


class WorldToSingingConverter(WorldPipelineConverter):
    """Melody-driven WORLD speech -> singing (see the module docstring); the registry's ``world``."""

    name = "world-to-singing"
    time_preserving = False

    def __init__(self, melody: Melody, config: WorldToSingingConfig | None = None, *,
                 chunk_frames: int | None = None) -> None:
        config = config or WorldToSingingConfig()
        super().__init__(config.analysis, chunk_frames, shaping=config.shaping)
        self.config = config
        self.melody = melody
        self._frame_s = config.analysis.hop_samples / config.analysis.sample_rate
        self._edge = max(1, round(config.edge_ms / 1000.0 / self._frame_s))
        #: output frames per piece of the tail (:meth:`finish_chunks`)
        self.tail_piece_frames = TAIL_PIECE_FRAMES

    def describe(self) -> str:
        return f"{self.name} @ {self.sample_rate} Hz, melody {self.melody.source} ({len(self.melody.notes)} notes)"

    def init_custom(self) -> ToSingingState:
        return ToSingingState(
            units=UnitTracker(self.config.syllables, self._frame_s, self.analysis.bins),
            transpose_semitones=self.config.transpose_semitones,
        )

    def set_param(self, state: PipelineState, name: str, value: float | str) -> None:
        if name == "transpose":
            state.custom.transpose_semitones = check_transpose(value)
        else:
            raise ConfigError(f"{self.name} has no parameter {name!r}; it has transpose")

    # -- the melody clock ---------------------------------------------------------------------------
    def _frame_of(self, seconds: float) -> int:
        return int(round(seconds / self._frame_s))

    def _next_slot(self, s: ToSingingState) -> _Slot | None | str:
        """The next note to sing with its unit; None to wait for input; "done" at the end."""
        notes = self.melody.notes
        units = s.units
        if s.note_index >= len(notes):
            if units.units:
                s.repeat += 1
                s.note_index = 0
            elif s.input_ended and units.current is None:
                return "done"
            else:
                return None
        note = notes[s.note_index]
        scored = self.melody.has_lyrics and not note.lyric and s.last_unit is not None
        if scored:   # the score's lyrics hold the last syllable over this note (a melisma)
            unit, held = s.last_unit, True
        elif units.units:
            unit, held = units.take(), False
        elif s.input_ended and units.current is None:
            if s.last_unit is None:
                unit, held = None, True
            else:
                unit, held = s.last_unit, True
        else:
            return None
        offset = s.repeat * self.melody.span_s
        start = self._frame_of(note.start_s + offset)
        end = max(self._frame_of(note.end_s + offset), start + 1)
        legato = s.last_note_end >= 0 and start - s.last_note_end <= 1
        slot = _Slot(note, start, end, unit, held, s.last_midi if legato else None,  # type: ignore[arg-type]
                     scored=scored)
        s.note_index += 1
        return slot

    def _generate(self, s: ToSingingState, budget: int | None = None) -> Frames:
        """Output frames for every note whose unit is ready, at most ``budget`` of them.

        A completed unit can release a whole long note at once; live, that would be one slow
        chunk. The budget spreads it over the following chunks (up to twice real time)."""
        bins = s.units.store.bins   # the envelopes the units keep (psola keeps none)
        f0s: list[float] = []
        sources: list[float] = []   # per frame: the input frame its envelope is read at (nan: silence)
        gains: list[float] = []
        read_sp: list[np.ndarray] = []   # the envelopes of sources[:read_count], in pieces
        read_ap: list[np.ndarray] = []

        def read() -> None:
            """The envelopes of the frames not read yet, read before the store forgets their input."""
            done = sum(piece.shape[0] for piece in read_sp)
            if done < len(sources):
                sp, ap = self._read_envelopes(s, sources[done:], gains[done:])
                read_sp.append(sp)
                read_ap.append(ap)

        while budget is None or len(f0s) < budget:
            if s.slot is None:
                slot = self._next_slot(s)
                if slot is None or slot == "done":
                    break
                assert isinstance(slot, _Slot)
                s.slot = slot
                if not slot.held:
                    s.notes_sung += 1
                elif slot.scored:
                    s.notes_melisma += 1
                else:
                    s.notes_held += 1
                if slot.unit is not None:
                    s.last_unit = slot.unit
                    read()
                    s.units.store.drop_before(slot.unit.onset)
            slot = s.slot
            limit = slot.end if budget is None else min(slot.end, s.out_frame + budget - len(f0s))
            while s.out_frame < min(slot.start, limit):  # a rest before the note
                f0s.append(0.0)
                sources.append(math.nan)
                gains.append(1.0)
                self._rest_frame(s)
                s.out_frame += 1
            while s.out_frame < limit:
                pos = s.out_frame - slot.start
                f0, src, gain = self._sing_frame(slot, pos, s)
                f0s.append(f0)
                sources.append(src)
                gains.append(gain)
                s.out_frame += 1
            if s.out_frame < slot.end:
                break  # out of budget: the note goes on in the next chunk
            s.last_note_end = slot.end
            s.last_midi = slot.note.midi_note + s.transpose_semitones
            s.slot = None
        if not f0s:
            return Frames.empty(bins)
        read()
        n = len(f0s)
        sp = read_sp[0] if len(read_sp) == 1 else np.concatenate(read_sp)
        ap = read_ap[0] if len(read_ap) == 1 else np.concatenate(read_ap)
        return Frames(np.array(f0s), np.ones(n), np.zeros(n), sp, ap)

    @staticmethod
    def _read_envelopes(s: ToSingingState, sources: list[float], gains: list[float]) -> tuple[np.ndarray, np.ndarray]:
        """The envelopes and aperiodicities of frames read at ``sources``: silence where the source is nan,
        else the store's envelope there (scaled by the gain) and its aperiodicity."""
        src = np.asarray(sources)
        gain = np.asarray(gains)
        bins = s.units.store.bins
        sp = np.full((src.shape[0], bins), _SILENCE_POWER)
        ap = np.ones((src.shape[0], bins))
        sung = ~np.isnan(src)
        if np.any(sung):
            env, aper = s.units.store.interpolate_many(src[sung])
            sp[sung] = env * gain[sung][:, None]
            ap[sung] = aper
        return sp, ap

    def _sing_frame(self, slot: _Slot, pos: int, s: ToSingingState) -> tuple[float, float, float]:
        """Output frame ``pos`` of the note in ``slot``: its F0 (0: unvoiced), the input frame its envelope
        is read at (nan: silence) and its gain."""
        unit = slot.unit
        length = slot.end - slot.start
        gain = (slot.note.velocity / 100.0) ** 2
        if unit is None:  # nothing was ever said: sing silence
            self._trace(s, -1.0, 0.0)
            return 0.0, math.nan, 1.0
        if slot.held:
            # Melisma: hold the steady middle of the last nucleus.
            lo = unit.nucleus + unit.nucleus_frames // 4
            hi = max(lo, unit.nucleus + (3 * unit.nucleus_frames) // 4 - 1)
            src = lo + (hi - lo) * (pos / max(1, length - 1))
            voiced = True
        else:
            onset_len = unit.nucleus - unit.onset
            coda_len = unit.end - unit.coda
            max_cons = int(self.config.max_onset_fraction * length)
            o_len = min(round(onset_len * self.config.onset_stretch), max_cons)
            k_len = min(coda_len, max(0, int(0.6 * length) - o_len))
            m_len = length - o_len - k_len
            if pos < o_len:
                src = unit.onset + pos * (onset_len / o_len)   # onset consonants at their spoken speed (or slower)
                voiced = self._onset_voiced(unit, src, s)
            elif pos >= length - k_len:
                q = pos - (length - k_len)
                src = unit.coda + q * (coda_len / k_len)
                voiced = s.units.store.f0(min(int(src), unit.end - 1)) > 0
            else:
                src, voiced = self._nucleus_frame(unit, pos - o_len, m_len, s)
        self._trace(s, src, gain)
        if not voiced:
            return 0.0, float(src), gain
        return self._pitch(slot, pos, s), float(src), gain

    def _rest_frame(self, s: ToSingingState) -> None:
        """One output frame of a rest: silence here (psola plays the speech's own pauses)."""
        self._trace(s, -1.0, 0.0)

    @staticmethod
    def _trace(s: ToSingingState, source: float, gain: float) -> None:
        """Remember where an output frame came from (for a synthesiser that reads the input itself)."""
        if s.sources is not None and s.gains is not None:
            s.sources.append(source)
            s.gains.append(gain)

    def _onset_voiced(self, unit: Unit, src: float, s: ToSingingState) -> bool:
        """Whether the onset frame read at ``src`` is sung on the note: never here (the causal tracker's
        onsets are the unvoiced sounds before a nucleus, played as recorded)."""
        return False

    def _nucleus_frame(self, unit: Unit, q: int, out_len: int, s: ToSingingState) -> tuple[float, bool]:
        """The source frame of output frame ``q`` of a nucleus sung over ``out_len`` frames, and whether it
        is sung voiced: the nucleus stretched evenly (its ends less, :meth:`_stretch`), all of it voiced."""
        return unit.nucleus + self._stretch(q, out_len, unit.nucleus_frames), True

    def _stretch(self, q: int, out_len: int, in_len: int) -> float:
        """Source offset inside a nucleus of ``in_len`` frames for output frame ``q`` of ``out_len``."""
        if in_len <= 1 or out_len <= 1:
            return 0.0
        edge = min(self._edge, in_len // 4)
        if out_len >= 2 * edge + 2 and edge > 0:
            if q < edge:
                return float(q)
            if q >= out_len - edge:
                return float(in_len - (out_len - q))
            mid_out = out_len - 2 * edge
            mid_in = in_len - 2 * edge
            return edge + (q - edge) * (mid_in - 1) / max(1, mid_out - 1)
        return q * (in_len - 1) / (out_len - 1)

    def _pitch(self, slot: _Slot, pos: int, s: ToSingingState) -> float:
        sung = sung_midi(self.melody, (slot.start + pos) * self._frame_s)
        if sung is not None:   # --melody-pitch sung: the singer's own pitch, with its vibrato and glides
            return midi_hz(sung + s.transpose_semitones)
        prev = slot.prev_midi
        return sung_pitch_hz(slot.note.midi_note + s.transpose_semitones, pos * self._frame_s, prev, self.config)

    # -- pipeline hooks -----------------------------------------------------------------------------
    def transform(self, frames: Frames, first_frame: int, state: PipelineState, input_end_frame: int | None) -> Frames:
        s: ToSingingState = state.custom
        s.units.feed(frames, first_frame, input_end_frame)
        out = self._generate(s, budget=2 * self.chunk_frames)
        if len(out):
            s.last_frame = out.slice(len(out) - 1, len(out))
        return out

    def transform_finish(self, state: PipelineState) -> Frames:
        """Every output frame still owed, at once (:meth:`finish_chunks` makes them in pieces)."""
        pieces = list(self._finish_frames(state))
        return Frames.concat(pieces, self.analysis.bins) if pieces else Frames.empty(self.analysis.bins)

    def _finish_frames(self, state: PipelineState) -> Iterator[Frames]:
        """The frames owed once the input has ended, at most ``TAIL_PIECE_FRAMES`` at a time: the rest
        of the melody (minutes, when the tune is longer than the speech) is never held at once."""
        s: ToSingingState = state.custom
        s.input_ended = True
        s.units.close()
        bins = self.analysis.bins
        piece = self._generate(s, budget=self.tail_piece_frames)
        tail = s.last_frame
        while len(piece):
            tail = piece.slice(len(piece) - 1, len(piece))
            following = self._generate(s, budget=self.tail_piece_frames)
            if not len(following):
                break
            yield piece
            piece = following
        # One more frame closes the synthesiser's last interval; it goes with the last piece, so a
        # tail of one piece is synthesised in one call, as it was before the tail came in pieces.
        if tail is not None:
            yield Frames.concat([piece, tail], bins)

    def finish_chunks(self, state: PipelineState) -> Iterator[np.ndarray]:
        """The singing still owed after the speech has ended, synthesised a piece at a time."""
        if state.finished:
            return
        state.finished = True
        for out in self._finish_frames(state):
            audio, state.synth = self.synth.step(out.f0_hz, out.sp, out.ap, state.synth)
            state.frames_out += len(out)
            yield audio

    def finish(self, state: PipelineState) -> np.ndarray:
        return joined(self.finish_chunks(state))

    def report(self, state: PipelineState) -> ConverterReport:
        s: ToSingingState = state.custom
        m = self.melody
        warnings: list[str] = list(state.warnings)
        total = s.units.total
        if s.input_ended:
            if total == 0:
                warnings.append(
                    f"no syllables were found in the speech (is it silent?); the output is {m.span_s:.2f} s of silence"
                )
            elif s.repeat > 0:
                extra = total - len(m.notes)
                warnings.append(
                    f"melody {m.source} is shorter than the speech: {len(m.notes)} notes ({m.span_s:.2f} s) for "
                    f"{total} syllables, {extra} syllable(s) over; the melody was repeated "
                    f"{s.repeat} more time(s) to sing them"
                )
            elif s.notes_held > 0:
                warnings.append(
                    f"the speech has {total} syllables but melody {m.source} has {len(m.notes)} notes: "
                    f"the last vowel is held over the final {s.notes_held} note(s)"
                )
        stats = {
            "syllables": float(total),
            "notes": float(len(m.notes)),
            "melody_repeats": float(s.repeat),
            "notes_held": float(s.notes_held),
            "lyric_melisma_notes": float(s.notes_melisma),
        }
        return ConverterReport(warnings=warnings, stats=stats)
