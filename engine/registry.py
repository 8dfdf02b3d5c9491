"""Every converter voxflip has, by name, and how to build one: the converter registry.

A converter is one :class:`ConverterSpec` in :data:`CONVERTERS`: its name, the direction it
converts in, whether it keeps time, its native rate and chunk grid, the dataclass of its
options, what it needs installed, and the factory that builds it. The command line (help,
``render``, ``live``, ``bench``), the evaluator's systems and the live controller read this
table; no other module names a converter. A new converter is one entry.

Options are checked here, once, and errors name them as the Python API spells them
(``chunk_ms=7.0 ms must be a multiple of the 5 ms hop``, an :class:`OptionError`); the CLI
rewords them with its flags.

Example::

    from voxflip.engine.registry import make_converter
    conv = make_converter("speech", "world-dur", duration=0.5, chunk_ms=10)
"""

from __future__ import annotations

import importlib.util
import math
import numbers
from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from importlib.resources import files
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .converters.alignsts_context import alignsts_chunk_grid, alignsts_stream_grid
from .converters.base import ChunkGrid, Converter
from .converters.flow_to_speech import flow_chunk_grid
from .converters.world_pipeline import world_chunk_grid
from .direction import Direction
from .errors import MISSING, ConfigError, MissingDependencyError, OptionError, install_hint
from .features.world import VOICE_FLOOR_RANGE_HZ, AnalysisConfig
from .melody import Melody

if TYPE_CHECKING:
    from .converters.world_to_singing import WorldToSingingConfig


# -- options ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ConverterOptions:
    """What every converter takes.

    Attributes:
        chunk_ms: processing chunk in ms, a multiple of the converter's hop (``None``: its default).
        transpose_semitones: added to the melody (to singing) or to the speech contour (to speech).
    """

    chunk_ms: float | None = None
    transpose_semitones: float = 0.0


@dataclass(frozen=True)
class WorldOptions(ConverterOptions):
    """The converters on the WORLD analysis (WORLD and PSOLA synthesis).

    Attributes:
        voice_floor_hz: the lowest F0 of the voice, 71..400 Hz: the analysis windows are sized
            for it, and the latency with them (``AnalysisConfig.for_voice_floor``; 100 Hz: 4.5 ms
            less than the default, which serves voices down to 60 Hz). ``None``: the default.
    """

    voice_floor_hz: float | None = None


@dataclass(frozen=True)
class ShortenOptions(WorldOptions):
    """``world-dur``: how far steady vowels are shortened, 0 (not at all) .. 1 (default)."""

    duration: float | None = None


@dataclass(frozen=True)
class FlowOptions(ConverterOptions):
    """The flow converters: a model exported by ``voxflip export`` (``None``: the shipped one), and
    the vocoder: ``dsp`` (the default), ``hifigan``, ``pwg`` or ``hn`` (the shipped neural ones), or the
    folder or manifest of one exported by ``voxflip export-vocoder``."""

    model_path: str | Path | None = None
    vocoder: str | Path | None = None


#: what a speech -> singing converter sings a melody's notes at (``melody_pitch``, ``--melody-pitch``)
MELODY_PITCHES = ("notes", "sung")
#: ``psola``'s octave for a melody far above the speaker (``melody_octave``, ``--melody-octave``)
MELODY_OCTAVES = ("auto", "keep")
#: the longest singing a melody may ask for by default, in seconds (``max_output_s``, ``--max-output-s``)
DEFAULT_MAX_OUTPUT_S = 3600.0


@dataclass(frozen=True)
class MelodyOptions(ConverterOptions):
    """What every speech -> singing converter takes: the tune.

    Attributes:
        melody: a :class:`Melody` or a melody file (.mid, .musicxml, .mxl, .csv, .json, or a sung
            recording to transcribe).
        tempo: plays a melody file ``tempo`` times faster, 0.1..10.
        vibrato_cents, portamento_ms: ``None`` keeps :class:`WorldToSingingConfig`'s defaults.
        max_output_s: the latest the melody may end, in seconds after ``tempo`` (the singing is
            that long): a longer one is refused before anything is sung (live notes: unused).
        melody_pitch: ``"notes"`` sings each note's steady pitch with the converter's vibrato and
            glides; ``"sung"`` (a sung recording as the melody only) sings the pitch its singer sang,
            their tuning, vibrato and glides included (``Melody.sung``), on the same notes' timing.
            ``None`` (default): ``"sung"`` for a recording (or a :class:`Melody` that carries its sung
            pitch), ``"notes"`` for a score. On dev-data the sung pitch followed the real singing
            better and sounded better than its notes, at the same CER (docs/results.md).
    """

    melody: Melody | str | Path | None = None
    tempo: float | None = None
    vibrato_cents: float | None = None
    portamento_ms: float | None = None
    max_output_s: float = DEFAULT_MAX_OUTPUT_S
    melody_pitch: str | None = None


@dataclass(frozen=True)
class SingOptions(MelodyOptions, WorldOptions):
    """``world``, ``psola`` and ``psola-stream`` speech -> singing: a melody (:class:`MelodyOptions`),
    or with ``live_notes`` no melody but the notes played live (``/voxflip/note``).

    ``melody_octave`` (``psola`` only, which hears the whole speech first): ``"auto"`` (its default)
    sings a melody far above the speaker's voice octaves lower; ``"keep"`` sings it as written.

    ``singers_formant_db`` and ``brightness_db`` (-12..12 dB; ``None`` keeps the defaults of
    :class:`~voxflip.engine.vocoder.shaping.ShapingConfig` in :class:`WorldToSingingConfig`): the depth of
    a peak at 3 kHz, the singer's formant, and of a shelf above 4 kHz, on the output."""

    live_notes: bool = False
    melody_octave: str | None = None
    singers_formant_db: float | None = None
    brightness_db: float | None = None


@dataclass(frozen=True)
class AlignSTSOptions(MelodyOptions):
    """``alignsts``: a model exported by ``voxflip export-alignsts`` (``None``: the shipped one), the
    vocoder (``dsp``, or the folder of a 24 kHz one exported by ``voxflip export-vocoder``), and the
    seed of the diffusion decoder's noise. ``content_model``: the folder of a causal content student
    (``voxflip export-content``) that reads the speech in place of Whisper's encoder (``None``: Whisper,
    which the model was trained on; with a student the whisper extra is not needed)."""

    model_path: str | Path | None = None
    vocoder: str | Path | None = None
    seed: int = 0
    content_model: str | Path | None = None


@dataclass(frozen=True)
class AlignSTSStreamOptions(AlignSTSOptions):
    """``alignsts-stream``: as ``alignsts``, with a model trained with absolute windows (``model_path``, needed)
    and a content student (``content_model``, needed); ``pace``: seconds of speech per second of song, where
    the song looks for what to sing (docs/converters.md)."""

    pace: float = 0.63


@dataclass(frozen=True)
class Requirement:
    """A module a converter imports at run time, and the extra that installs it; not needed when the
    converter's option ``unless`` is given."""

    module: str
    extra: str
    what: str
    unless: str | None = None

    def installed(self) -> bool:
        return importlib.util.find_spec(self.module) is not None


ONNX_RUNTIME = Requirement("onnxruntime", "cpu", "an ONNX runtime")
WHISPER = Requirement("faster_whisper", "whisper", "Whisper's encoder for the speech's content", unless="content_model")


# -- the table -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ConverterSpec:
    """One converter (see the module docstring).

    Attributes:
        name: what users type (``--method``, eval systems, bench).
        direction: which way it converts.
        summary: one line for help texts and reports.
        options: the dataclass of the options it takes.
        factory: builds it from checked options and the chunk in hops.
        time_preserving: whether the output has exactly as many samples as the input.
        grid: the chunk sizes it streams (which also gives its native rate).
        needs: modules it imports at run time beyond the core dependencies.
        params: the run-time parameters its ``set_param`` takes (OSC, live control).
        aliases: other names for it.
        live_form: the converter ``voxflip live`` runs when this one is its direction's default
            but needs more future than live allows (``None``: this one itself).
        default_model: where the trained model it runs without ``model_path`` is shipped (``None``:
            it runs no trained model).
        whole_input: it converts only once the input has ended (it plans over all of it), so it
            renders files and ``voxflip live`` refuses it.
        required: options it cannot run without (models the user names); the benchmark's default
            list leaves it out.
    """

    name: str
    direction: Direction
    summary: str
    options: type[ConverterOptions]
    factory: Callable[[Any, int], Converter]
    time_preserving: bool
    grid: ChunkGrid
    needs: tuple[Requirement, ...] = ()
    params: tuple[str, ...] = ("transpose",)
    aliases: tuple[str, ...] = ()
    live_form: str | None = None
    default_model: Callable[[], Path] | None = None
    whole_input: bool = False
    required: tuple[str, ...] = ()

    @property
    def sample_rate(self) -> int:
        return self.grid.sample_rate

    @property
    def option_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in fields(self.options))

    def ships_model(self) -> bool:
        """Whether it runs as installed: it needs no trained model, or its default one is shipped (not one that
        runs only on models the user names, :attr:`required`)."""
        return not self.required and (self.default_model is None or self.default_model().exists())

    def missing(self) -> list[Requirement]:
        """What it needs that is not installed here."""
        return [r for r in self.needs if not r.installed()]

    def make_options(self, **given: Any) -> ConverterOptions:
        """Its options from keyword arguments; an option it does not take is an :class:`OptionError`."""
        for key, value in given.items():
            if key not in self.option_names:
                raise OptionError(key, value, f"does not apply to {self.name}; it takes", see=self.option_names)
        return self.options(**given)

    def build(self, options: ConverterOptions) -> Converter:
        """The converter, with its name; checks what it needs first."""
        for requirement in self.missing():
            if requirement.unless is not None and getattr(options, requirement.unless, None) is not None:
                continue
            raise MissingDependencyError(
                f"{self.name} needs {requirement.what} ({requirement.module}), which is not installed: "
                f"{install_hint(requirement.extra)}" + (", or \"voxflip[gpu]\" on a CUDA machine"
                                                        if requirement is ONNX_RUNTIME else "")
            )
        converter = self.factory(options, self.grid.frames(options.chunk_ms))
        converter.name = self.name
        return converter


def shipped_vocoder(name: str) -> Path:
    """The folder of the neural vocoder shipped as ``name`` (``hifigan``, ``pwg``, ``hn``); it may be absent."""
    return Path(str(files("voxflip") / "data" / "models" / f"vocoder_{name}"))


def resolve_vocoder(value: str | Path | None) -> Path | None:
    """``--vocoder``: ``None``/``dsp`` -> None (the DSP mel vocoder); ``hifigan``/``pwg``/``hn`` -> the
    shipped export; anything else is the path of an export (its folder, ``.onnx`` or manifest)."""
    from .vocoder.neural import NEURAL_KINDS

    if value is None or value == "dsp":
        return None
    if value in NEURAL_KINDS:
        folder = shipped_vocoder(str(value))
        if not folder.is_dir():
            raise OptionError("vocoder", value, "is not shipped with this installation; train one (voxflip "
                              "train-vocoder), export it (voxflip export-vocoder CHECKPOINT -o DIR/vocoder.onnx) "
                              "and pass DIR")
        return folder
    path = Path(value)
    if not path.exists():
        raise OptionError("vocoder", value, f"must be dsp, {', '.join(NEURAL_KINDS)} or the folder of a vocoder exported by "
                          "voxflip export-vocoder")
    return path


def default_flow_model() -> Path:
    """The S2S flow model shipped in the package (``voxflip/data/models/s2s_flow``)."""
    return Path(str(files("voxflip") / "data" / "models" / "s2s_flow" / "model.manifest.json"))


def _world_to_speech(shorten: bool) -> Callable[[Any, int], Converter]:
    def build(options: ConverterOptions, chunk_frames: int) -> Converter:
        from .converters.world_to_speech import WorldToSpeechConfig, WorldToSpeechConverter

        config = WorldToSpeechConfig(transpose_semitones=options.transpose_semitones)
        config = replace(config, analysis=_analysis(options, config.analysis))
        if isinstance(options, ShortenOptions) and options.duration is not None:
            config = replace(config, duration=options.duration)
        return WorldToSpeechConverter(config, shorten=shorten, chunk_frames=chunk_frames)

    return build


def _analysis(options: ConverterOptions, analysis: AnalysisConfig) -> AnalysisConfig:
    """The analysis settings the options ask for (``voice_floor_hz``)."""
    floor = getattr(options, "voice_floor_hz", None)
    if floor is None:
        return analysis
    try:
        return analysis.for_voice_floor(floor)
    except ConfigError as exc:
        lo, hi = VOICE_FLOOR_RANGE_HZ
        raise OptionError("voice_floor_hz", floor, f"must be within {lo:g}..{hi:g} Hz (the lowest F0 of the voice)") \
            from exc


def _world_speech_timing(options: ConverterOptions, chunk_frames: int) -> Converter:
    from .converters.world_speech_timing import WorldSpeechTimingConfig, WorldSpeechTimingConverter

    config = WorldSpeechTimingConfig(transpose_semitones=options.transpose_semitones)
    config = replace(config, analysis=_analysis(options, config.analysis))
    return WorldSpeechTimingConverter(config, chunk_frames=chunk_frames)


def _psola(shorten: bool) -> Callable[[Any, int], Converter]:
    def build(options: ConverterOptions, chunk_frames: int) -> Converter:
        from .converters.psola_to_speech import PsolaToSpeechConverter
        from .converters.world_speech_timing import WorldSpeechTimingConfig

        config = WorldSpeechTimingConfig(transpose_semitones=options.transpose_semitones)
        config = replace(config, analysis=_analysis(options, config.analysis))
        return PsolaToSpeechConverter(config, shorten=shorten, chunk_frames=chunk_frames)

    return build


def _flow(predict_durations: bool) -> Callable[[Any, int], Converter]:
    def build(options: FlowOptions, chunk_frames: int) -> Converter:
        from .converters.flow_to_speech import FlowToSpeechConverter

        path = Path(options.model_path) if options.model_path is not None else default_flow_model()
        if options.model_path is None and not path.is_file():
            raise OptionError("model_path", MISSING, "is needed: no flow model is shipped with this installation; "
                              "train one (voxflip train), export it (voxflip export CHECKPOINT -o model.onnx) "
                              "and pass its model.onnx")
        return FlowToSpeechConverter(path, predict_durations=predict_durations, chunk_frames=chunk_frames,
                                     transpose_semitones=options.transpose_semitones,
                                     vocoder=resolve_vocoder(options.vocoder))

    return build


def _world_to_singing(options: SingOptions, chunk_frames: int) -> Converter:
    return _to_singing(options, chunk_frames, psola=False)


def _psola_to_singing(options: SingOptions, chunk_frames: int) -> Converter:
    return _to_singing(options, chunk_frames, psola=True)


def _psola_stream_to_singing(options: SingOptions, chunk_frames: int) -> Converter:
    return _to_singing(options, chunk_frames, psola=True, stream=True)


def _sing_config(options: MelodyOptions) -> WorldToSingingConfig:
    """The F0 styling the options ask for (vibrato, portamento), on the default singing settings."""
    from .converters.world_to_singing import WorldToSingingConfig

    config = WorldToSingingConfig()
    if options.vibrato_cents is not None:
        config = replace(config, vibrato_cents=options.vibrato_cents)
    if options.portamento_ms is not None:
        config = replace(config, portamento_ms=options.portamento_ms)
    return config


def _check_timing(options: MelodyOptions) -> None:
    """``max_output_s`` and ``tempo`` in range (before a melody file is read)."""
    from .notes import TEMPO_FACTOR_RANGE

    max_output_s = options.max_output_s
    if isinstance(max_output_s, bool) or not isinstance(max_output_s, int | float) \
            or not math.isfinite(max_output_s) or max_output_s <= 0:
        raise OptionError("max_output_s", max_output_s, "must be a number of seconds > 0 (default 3600)")
    lo, hi = TEMPO_FACTOR_RANGE
    if options.tempo is not None and (isinstance(options.tempo, bool) or not isinstance(options.tempo, int | float)
                                      or not lo <= options.tempo <= hi):
        raise OptionError("tempo", options.tempo, f"is outside {lo:g}..{hi:g} (a factor: 2 plays the melody "
                          "twice as fast, 0.5 half as fast)")


def _melody(options: MelodyOptions) -> Melody:
    """The tune the options name: read, scaled by ``tempo``, checked against ``max_output_s``, transposed."""
    from .melody import check_melody_end, is_recording, load_melody
    from .notes import _check_note_count

    melody = options.melody
    if melody is None:
        raise OptionError("melody", MISSING, "is needed to sing: a .mid, .musicxml, .mxl, .csv or .json tune "
                          "(or live notes)")
    if options.melody_pitch is not None and options.melody_pitch not in MELODY_PITCHES:
        raise OptionError("melody_pitch", options.melody_pitch, f"is not one of {', '.join(MELODY_PITCHES)} (notes: "
                          "each note's steady pitch; sung: the pitch sung in a recording given as the melody)")
    if options.melody_pitch is None:    # the default: what the melody has
        sung = melody.sung is not None if isinstance(melody, Melody) else is_recording(melody)
    else:
        sung = options.melody_pitch == "sung"
    if isinstance(melody, Melody):
        _check_note_count(len(melody.notes), melody.source)
        if sung and melody.sung is None:
            raise OptionError("melody_pitch", "sung", f"needs a melody transcribed from a recording with its sung "
                              f"pitch (load_melody(..., sung_pitch=True)); {melody.source} has notes only")
        if not sung and melody.sung is not None:
            melody = Melody(melody.notes, melody.source)
        if options.tempo is not None:
            melody = melody.with_tempo(options.tempo)
        check_melody_end(melody.span_s, melody.source, options.max_output_s)
    else:
        melody = load_melody(melody, tempo_factor=1.0 if options.tempo is None else options.tempo,
                             max_output_s=options.max_output_s, sung_pitch=sung)
    if options.transpose_semitones:
        melody = melody.transposed(options.transpose_semitones)
    return melody


def _shaped(options: SingOptions, config: WorldToSingingConfig) -> WorldToSingingConfig:
    """``config`` with the shaping depths the options give (``singers_formant_db``, ``brightness_db``)."""
    from .vocoder.shaping import GAIN_RANGE_DB

    shaping = config.shaping
    for option, name in (("singers_formant_db", "formant_db"), ("brightness_db", "brightness_db")):
        value = getattr(options, option)
        if value is None:
            continue
        try:
            shaping = replace(shaping, **{name: value})
        except ConfigError:
            raise OptionError(option, value, "must be a number of dB within {:g}..{:g}".format(*GAIN_RANGE_DB)) from None
    return replace(config, shaping=shaping)


def _to_singing(options: SingOptions, chunk_frames: int, *, psola: bool, stream: bool = False) -> Converter:
    from .converters.psola_to_singing import PsolaStreamToSingingConverter, PsolaToSingingConverter
    from .converters.world_to_singing import WorldToSingingConverter
    from .converters.world_to_singing_live import LiveNotesToSingingConverter

    _check_timing(options)
    config = _shaped(options, _sing_config(options))
    config = replace(config, analysis=_analysis(options, config.analysis))
    if options.live_notes:
        if options.melody is not None:
            raise OptionError("melody", options.melody, "and live_notes exclude each other: sing a melody file, "
                              "or the notes played live")
        if options.tempo is not None:
            raise OptionError("tempo", options.tempo, "scales a melody file; live notes have their own tempo")
        if options.melody_pitch == "sung":
            raise OptionError("melody_pitch", options.melody_pitch, "follows a sung recording given as the melody; "
                              "live notes are sung at their own pitch")
        if psola:
            raise OptionError("live_notes", True, "are sung by the WORLD converter only (--method world); "
                              "the PSOLA ones sing a melody file")
        config = replace(config, transpose_semitones=options.transpose_semitones)
        # notes act at chunk boundaries: without --chunk-ms, the live chunk, never the offline one
        return LiveNotesToSingingConverter(config, chunk_frames=chunk_frames if options.chunk_ms is not None else None)
    if options.melody_octave is not None and options.melody_octave not in MELODY_OCTAVES:
        raise OptionError("melody_octave", options.melody_octave, f"is not one of {', '.join(MELODY_OCTAVES)} (auto: "
                          "a melody far above the speaker's voice is sung octaves lower; keep: as written)")
    if options.melody_octave is not None and (stream or not psola):
        raise OptionError("melody_octave", options.melody_octave, "applies to psola only, which hears the whole "
                          "speech before it sings (note by note, the speaker's range is not known in time)")
    melody = _melody(options)
    if psola and not stream:
        return PsolaToSingingConverter(melody, config, chunk_frames=chunk_frames,
                                       fit_octave=options.melody_octave != "keep")
    kind = PsolaStreamToSingingConverter if psola else WorldToSingingConverter
    return kind(melody, config, chunk_frames=chunk_frames)


def default_alignsts_model() -> Path:
    """The AlignSTS model shipped in the package (``voxflip/data/models/alignsts``); it may be absent."""
    return Path(str(files("voxflip") / "data" / "models" / "alignsts"))


def _alignsts_parts(options: AlignSTSOptions, path: Path) -> tuple[Any, Any, Any]:
    """The model at ``path``, the vocoder and the content student an AlignSTS converter's options name."""
    from .converters.alignsts_model import AlignSTSModel, target_mel

    _check_timing(options)
    if isinstance(options.seed, bool) or not isinstance(options.seed, numbers.Integral) or not 0 <= options.seed < 2**63:
        raise OptionError("seed", options.seed, "must be a whole number in 0..2**63-1 (the diffusion decoder's noise)")
    vocoder = None
    folder = resolve_vocoder(options.vocoder)
    if folder is not None:
        from .vocoder.neural import NeuralVocoder

        vocoder = NeuralVocoder(folder)
        if vocoder.mel != target_mel():
            raise OptionError("vocoder", options.vocoder, "reads another mel setup; alignsts needs a vocoder trained on "
                              "the 24 kHz one (MelConfig.for_to_singing())")
    content = None
    if options.content_model is not None:
        from .features.content_student import ContentStudentModel

        try:
            content = ContentStudentModel(options.content_model)
        except ConfigError as exc:
            raise OptionError("content_model", options.content_model, f"is not a content student: {exc}") from None
    return AlignSTSModel(path), vocoder, content


def _alignsts(options: AlignSTSOptions, chunk_frames: int) -> Converter:
    from .converters.alignsts_to_singing import AlignSTSToSingingConverter

    path = Path(options.model_path) if options.model_path is not None else default_alignsts_model()
    if options.model_path is None and not path.is_dir():
        raise OptionError("model_path", MISSING, "is needed: no AlignSTS model is shipped with this installation; "
                          "train one (voxflip train-alignsts), export it (voxflip export-alignsts CHECKPOINT -o "
                          "DIR/alignsts.onnx) and pass DIR")
    model, vocoder, content = _alignsts_parts(options, path)
    return AlignSTSToSingingConverter(_melody(options), model, vocoder=vocoder, config=_sing_config(options),
                                      chunk_frames=chunk_frames, seed=options.seed, content=content)


def _alignsts_stream(options: AlignSTSStreamOptions, chunk_frames: int) -> Converter:
    from .converters.alignsts_stream import PACE_RANGE, AlignSTSStreamToSingingConverter

    if options.model_path is None:
        raise OptionError("model_path", MISSING, "is needed: alignsts-stream runs a model trained with absolute windows "
                          "(voxflip train-alignsts --set 'model.window_mode=\"absolute\"', then export-alignsts); the "
                          "shipped one has the paper's relative windows")
    if options.content_model is None:
        raise OptionError("content_model", MISSING, "is needed: alignsts-stream reads the speech with a causal content "
                          "student (voxflip train-content, then export-content)")
    pace = options.pace
    if isinstance(pace, bool) or not isinstance(pace, numbers.Real) or not PACE_RANGE[0] <= pace <= PACE_RANGE[1]:
        raise OptionError("pace", pace, f"must be in {PACE_RANGE[0]:g}..{PACE_RANGE[1]:g} (seconds of speech per "
                          "second of song)")
    model, vocoder, content = _alignsts_parts(options, Path(options.model_path))
    if not model.streams:
        raise OptionError("model_path", options.model_path, "has the paper's relative windows (they need the whole "
                          "speech); alignsts-stream needs a model trained with window_mode = \"absolute\"")
    return AlignSTSStreamToSingingConverter(_melody(options), model, content, vocoder=vocoder,
                                            config=_sing_config(options), chunk_frames=chunk_frames,
                                            seed=options.seed, pace=float(pace))


#: the WORLD and PSOLA converters: their output does not depend on the chunk (tests: each frame is
#: analysed on its own samples, PSOLA grains wait for the analysis), so an offline render takes 1 s chunks
_WORLD = _PSOLA = world_chunk_grid()

#: every converter, the default of each direction first: the one the real-pair evaluation supports
#: (docs/results.md: on dev-data, psola-tsm loses the fewest words of the singing -> speech converters
#: that sound spoken; live, where it would leave gaps, it plays as world-nodur, docs/live.md; psola loses
#: the fewest words of the speech -> singing converters; live, for live notes too, it plays as world)
CONVERTERS: tuple[ConverterSpec, ...] = (
    ConverterSpec("psola-tsm", Direction.TO_SPEECH,
                  "the singer's own waveform (TD-PSOLA): speech intonation and speech timing",
                  WorldOptions, _psola(True), time_preserving=False, grid=_PSOLA, live_form="world-nodur"),
    ConverterSpec("world-nodur", Direction.TO_SPEECH, "WORLD: speech intonation, the sung timing kept",
                  WorldOptions, _world_to_speech(False), time_preserving=True, grid=_WORLD),
    ConverterSpec("flow-dur", Direction.TO_SPEECH,
                  "the S2S flow model (Huang and Benetos) with its predicted speech durations",
                  FlowOptions, _flow(True), time_preserving=False, grid=flow_chunk_grid(), needs=(ONNX_RUNTIME,),
                  aliases=("flow",), default_model=default_flow_model),
    ConverterSpec("flow-nodur", Direction.TO_SPEECH, "the S2S flow model, keeping the sung timing",
                  FlowOptions, _flow(False), time_preserving=True, grid=flow_chunk_grid(), needs=(ONNX_RUNTIME,),
                  default_model=default_flow_model),
    ConverterSpec("world-dur", Direction.TO_SPEECH, "WORLD: speech intonation, held vowels shortened",
                  ShortenOptions, _world_to_speech(True), time_preserving=False, grid=_WORLD,
                  params=("transpose", "duration")),
    ConverterSpec("world-tsm", Direction.TO_SPEECH,
                  "WORLD: speech intonation and speech timing (held vowels and long rests time-scaled, "
                  "consonants kept)", WorldOptions, _world_speech_timing, time_preserving=False, grid=_WORLD),
    ConverterSpec("psola-nodur", Direction.TO_SPEECH,
                  "the singer's own waveform (TD-PSOLA): speech intonation, the sung timing kept",
                  WorldOptions, _psola(False), time_preserving=True, grid=_PSOLA),
    ConverterSpec("psola", Direction.TO_SINGING,
                  "TD-PSOLA: the whole speech's syllables aligned with the notes as a singer would, sung on "
                  "the speaker's own waveform",
                  SingOptions, _psola_to_singing, time_preserving=False, grid=_PSOLA, live_form="world",
                  whole_input=True),
    ConverterSpec("psola-stream", Direction.TO_SINGING,
                  "TD-PSOLA note by note as the syllables arrive (world's plan, no future needed): "
                  "psola's sound, live", SingOptions, _psola_stream_to_singing, time_preserving=False, grid=_WORLD),
    ConverterSpec("world", Direction.TO_SINGING,
                  "WORLD: the speech's syllables on the notes of a melody (or of live notes)",
                  SingOptions, _world_to_singing, time_preserving=False, grid=_WORLD, params=("transpose", "note")),
    ConverterSpec("alignsts", Direction.TO_SINGING,
                  "the AlignSTS model (Li et al.): rhythm adaptor, cross-modal aligner, diffusion decoder; "
                  "sings once the speech has ended", AlignSTSOptions, _alignsts, time_preserving=False,
                  grid=alignsts_chunk_grid(), needs=(ONNX_RUNTIME, WHISPER), default_model=default_alignsts_model,
                  whole_input=True),
    ConverterSpec("alignsts-stream", Direction.TO_SINGING,
                  "the AlignSTS model as the speech arrives: content from a causal student, absolute windows, "
                  "about 2 s behind the melody (--model and --content-model needed)", AlignSTSStreamOptions,
                  _alignsts_stream, time_preserving=False, grid=alignsts_stream_grid(), needs=(ONNX_RUNTIME,),
                  required=("model_path", "content_model")),
)


def converters(direction: Direction | str | None = None) -> tuple[ConverterSpec, ...]:
    """The registered converters, of one direction or all; each direction's default first."""
    if direction is None:
        return CONVERTERS
    direction = Direction.parse(direction)
    return tuple(spec for spec in CONVERTERS if spec.direction is direction)


def default_converter(direction: Direction | str) -> ConverterSpec:
    return converters(direction)[0]


def live_default_converter(direction: Direction | str) -> ConverterSpec:
    """What ``voxflip live`` runs without ``--method``: the default's live form (docs/live.md)."""
    spec = default_converter(direction)
    return get_converter(spec.live_form, direction) if spec.live_form else spec


def names(direction: Direction | str | None = None, *, aliases: bool = True) -> tuple[str, ...]:
    """Every name a converter answers to (of one direction, or all)."""
    out: list[str] = []
    for spec in converters(direction):
        out += [spec.name, *(spec.aliases if aliases else ())]
    return tuple(out)


def get_converter(name: str, direction: Direction | str | None = None) -> ConverterSpec:
    """The spec a name (or alias) stands for; with ``direction``, it must convert that way."""
    for spec in CONVERTERS:
        if name == spec.name or name in spec.aliases:
            if direction is not None and spec.direction is not Direction.parse(direction):
                break
            return spec
    where = f"convert to {Direction.parse(direction).value}" if direction is not None else "exist"
    raise OptionError("method", name, f"does not {where}; use one of", see=names(direction))


def describe(direction: Direction | str) -> str:
    """One line for help texts: the names of a direction, its default marked and aliases shown."""
    parts = []
    for i, spec in enumerate(converters(direction)):
        label = spec.name + (f" (= {', '.join(spec.aliases)})" if spec.aliases else "")
        parts.append(label + (", the default" if i == 0 else ""))
    return "; ".join(parts)


def make_converter(to: Direction | str, method: str | None = None, **options: Any) -> Converter:
    """Build a converter by direction and name.

    Args:
        to: ``"speech"`` (singing -> speech) or ``"singing"`` (speech -> singing), or a :class:`Direction`.
        method: a name of :func:`names` for that direction; ``None`` takes the direction's default
            (for live notes, ``live_notes=True``, the default's live form: the default sings a file).
        **options: the fields of the converter's options dataclass (:class:`ConverterOptions`,
            :class:`WorldOptions`, :class:`ShortenOptions`, :class:`FlowOptions`, :class:`MelodyOptions`,
            :class:`SingOptions`, :class:`AlignSTSOptions`).

    Raises:
        OptionError: an unknown direction or method, an option the converter does not take,
            a value out of range, a missing melody.
        MissingDependencyError: the converter needs a package that is not installed.
        ConfigError, MelodyError, ArtifactMismatchError: from building it (a bad melody or model file).
    """
    direction = Direction.parse(to)
    if method is None:
        spec = live_default_converter(direction) if options.get("live_notes") else default_converter(direction)
    else:
        spec = get_converter(method, direction)
    return spec.build(spec.make_options(**options))


def spec_of(converter: Converter) -> ConverterSpec:
    """The spec a converter built by :func:`make_converter` came from."""
    try:
        return get_converter(converter.name)
    except ConfigError:
        raise ConfigError(f"converter {converter.name!r} was not built from the registry") from None
