"""The systems `voxflip eval` can name: each turns one manifest entry into converted audio.

A system is one registration: a name, the direction it is judged in (to speech: scored
against the lyrics; to singing: scored against the melody and the real singing) and a
function from an entry to ``(audio, sample_rate)``. Every converter of the registry
(:mod:`voxflip.engine.registry`) is a system under its own name; the rows here add the
references (``input`` and ``real`` give every table its floor and ceiling) and the
baselines that are not converters (``alt-tts``).
"""

from __future__ import annotations

import functools
import json
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from voxflip.engine.audio_io import read_audio
from voxflip.engine.converters.alignsts_model import MODEL_KIND
from voxflip.engine.errors import ConfigError
from voxflip.engine.notes import Melody, Note
from voxflip.engine.registry import ConverterSpec, Direction, converters, make_converter
from voxflip.engine.vocoder.neural import NEURAL_KINDS

from ..data.manifest import ManifestEntry

Runner = Callable[[ManifestEntry, dict], tuple[np.ndarray, int]]


@dataclass(frozen=True)
class System:
    name: str
    direction: Direction
    description: str
    run: Runner
    needs: tuple[str, ...] = ()  # entry fields required: "singing", "speech", "text"; "melody": notes or singing


SYSTEMS: dict[str, System] = {}


def register(system: System) -> System:
    if system.name in SYSTEMS:
        raise ValueError(f"system {system.name!r} is registered twice")
    SYSTEMS[system.name] = system
    return system


def get_system(name: str) -> System:
    if name not in SYSTEMS:
        for spec in converters():   # a converter's alias (flow = flow-dur)
            if name in spec.aliases:
                return SYSTEMS[spec.name]
        raise ConfigError(f"system {name!r} is not one of {', '.join(SYSTEMS)}")
    return SYSTEMS[name]


def _convert(entry_audio: Path, converter) -> tuple[np.ndarray, int]:
    from voxflip.streaming.streamer import Streamer

    audio, rate = read_audio(entry_audio)
    streamer = Streamer(converter, rate, rate)
    return np.concatenate([streamer.process(audio), streamer.flush()]), rate


def melody_of(entry: ManifestEntry) -> Melody:
    """The notes a speech -> singing converter gets: the manifest's, else those transcribed from the real
    singing (:func:`voxflip.engine.melody_audio.transcribe_melody`: what a score of it would give)."""
    if entry.notes:
        return Melody(tuple(Note(n.start_s, n.end_s, n.midi_note) for n in entry.notes), f"manifest:{entry.id}")
    if entry.singing is None:
        raise ConfigError(f"entry {entry.id!r} has no notes and no singing: speech -> singing needs a melody")
    return _transcribed(str(entry.singing)).melody


@functools.lru_cache(maxsize=64)
def _transcribed(singing: str):
    from voxflip.engine.melody_audio import transcribe_melody_file

    return transcribe_melody_file(singing)


def has_melody(entry: ManifestEntry) -> bool:
    return bool(entry.notes) or entry.singing is not None


def sung_melody_of(entry: ManifestEntry) -> Melody:
    """The notes transcribed from the entry's real singing with the pitch the singer sang
    (``--melody SINGING --melody-pitch sung``)."""
    if entry.singing is None:
        raise ConfigError(f"entry {entry.id!r} has no singing: a ref: system sings the real singing's pitch")
    transcription = _transcribed(str(entry.singing))
    return Melody(transcription.melody.notes, transcription.melody.source, transcription.sung_pitch())


def _converter_runner(spec: ConverterSpec, *, live: bool = False, voice_floor_hz: float | None = None,
                      chunk_ms: float | None = None, vocoder: str | None = None, sung: bool = False) -> Runner:
    """Run a registered converter on an entry: the singing (to speech) or the speech on its notes (to singing).

    ``live``: as ``voxflip live`` would play it, at the live chunk (or ``chunk_ms``), through the
    constant-rate FIFO in blocks of :data:`LIVE_BLOCK` (a converter that shortens time leaves silence
    where it ran ahead of the input), with the declared latency cut from the front.
    ``voice_floor_hz``: the converter's option of that name (``--voice-floor``).
    ``vocoder``: a neural vocoder's name: the folder ``voxflip eval --vocoder NAME=DIR`` gave it, else
    the shipped one of that name.
    ``sung``: sing the pitch of the pair's real singing (``--melody-pitch sung``) instead of its notes.
    """
    def run(entry: ManifestEntry, options: dict) -> tuple[np.ndarray, int]:
        given: dict = {"chunk_ms": chunk_ms or spec.grid.live_ms} if live else {}
        if voice_floor_hz is not None:
            given["voice_floor_hz"] = voice_floor_hz
        if "model_path" in spec.option_names and options.get("model") is not None:
            given["model_path"] = options["model"]
        if vocoder is not None:
            given["vocoder"] = (options.get("vocoders") or {}).get(vocoder, vocoder)
        if sung:
            given["melody"], given["melody_pitch"] = sung_melody_of(entry), "sung"
        elif spec.direction is Direction.TO_SINGING:
            given["melody"] = melody_of(entry)
        converter = make_converter(spec.direction, spec.name, **given)
        source = getattr(entry, spec.direction.source)
        return _convert_live(source, converter) if live else _convert(source, converter)

    return run


#: the neural vocoders an eval system can put behind a mel-based converter (``hifigan:flow-nodur``)
NEURAL_VOCODERS = NEURAL_KINDS
#: the device block of the live simulation (``voxflip live``'s default)
LIVE_BLOCK = 256
#: the low-latency live setting the ``floor100:`` and ``live-floor100:`` systems measure
LOW_FLOOR_HZ = 100.0
LOW_CHUNK_MS = 5.0


def _convert_live(entry_audio: Path, converter) -> tuple[np.ndarray, int]:
    from voxflip.streaming.realtime import RealtimeStreamer
    from voxflip.streaming.streamer import Streamer

    audio, rate = read_audio(entry_audio)
    engine = RealtimeStreamer(Streamer(converter, rate, rate), rate)
    latency = int(round(engine.latency_s * rate))
    padded = np.concatenate([audio, np.zeros(latency + 2 * LIVE_BLOCK, np.float32)])
    blocks = [engine.process(padded[i:i + LIVE_BLOCK]) for i in range(0, padded.shape[0] - LIVE_BLOCK + 1, LIVE_BLOCK)]
    out = np.concatenate(blocks)[latency:]
    return out[: audio.shape[0]] if converter.time_preserving else out, rate


def _identity(side: str) -> Runner:
    def run(entry: ManifestEntry, options: dict) -> tuple[np.ndarray, int]:
        return read_audio(getattr(entry, side))

    return run


def _vocoded(side: str) -> Runner:
    """Copy synthesis: a recording's own mel and F0 through the flow converters' DSP mel vocoder.

    Of the real speech (``real-vocoded``): no model can do better with that vocoder, the flow
    systems' ceiling. Of the input singing (``input-vocoded``): what the vocoder alone costs it.
    """
    def run(entry: ManifestEntry, options: dict) -> tuple[np.ndarray, int]:
        return _copy_synthesis(getattr(entry, side), _flow_mel(options.get("model")))

    return run


def _flow_mel(model: str | None):
    """The mel setup of the flow model ``model`` (its model.onnx or manifest; default the shipped one):
    the window its vocoder reads."""
    from voxflip.engine.backends.onnx_step import find_manifest, read_manifest
    from voxflip.engine.features.mel import MelConfig
    from voxflip.engine.registry import default_flow_model

    path = find_manifest(model if model is not None else default_flow_model(), "flow model",
                         "voxflip export CHECKPOINT -o model.onnx")
    fields = read_manifest(path, "model").get("mel")
    mel = MelConfig.engine_setup(fields, (MelConfig.for_to_speech,))
    if mel is None:
        raise ConfigError(f"{path}: mel={fields!r} is not the flow models' 16 kHz setup")
    return mel


def _copy_synthesis(path: Path, mel=None) -> tuple[np.ndarray, int]:
    """A recording's log-mel (of ``mel``, default the flow models' 16 kHz setup) and YIN F0 through the DSP mel vocoder."""
    from math import gcd

    from scipy.signal import resample_poly

    from voxflip.engine.features.frames import frame_matrix
    from voxflip.engine.features.mel import MelAnalyzer, MelConfig
    from voxflip.engine.features.pitch import PitchConfig, yin_frames
    from voxflip.engine.vocoder.mel_vocoder import MelVocoder, MelVocoderConfig

    mel = mel or MelConfig.for_to_speech()
    audio, rate = read_audio(path)
    if rate != mel.sample_rate:
        g = gcd(rate, mel.sample_rate)
        audio = resample_poly(audio, mel.sample_rate // g, rate // g)
    x = np.asarray(audio, np.float64)
    pitch = PitchConfig()
    pad = max(mel.win_samples, pitch.window_samples(mel.sample_rate))
    padded = np.pad(x, (pad, pad))
    frames = x.shape[0] // mel.hop_samples
    log_mel = MelAnalyzer(mel).log_mel_frames(frame_matrix(padded, -pad, 0, frames, mel.hop_samples, mel.win_samples))
    f0, _ = yin_frames(frame_matrix(padded, -pad, 0, frames, mel.hop_samples, pitch.window_samples(mel.sample_rate)),
                       mel.sample_rate, pitch)
    return MelVocoder(MelVocoderConfig(mel=mel))(log_mel.astype(np.float32), f0), mel.sample_rate


def _world_copy(entry: ManifestEntry, options: dict) -> tuple[np.ndarray, int]:
    """Copy synthesis of the singing through the WORLD converters' analysis and synthesis, nothing changed."""
    from voxflip.engine.converters.world_pipeline import WorldPipelineConverter
    from voxflip.engine.features.world import AnalysisConfig

    class WorldCopy(WorldPipelineConverter):
        def init_custom(self) -> None:
            return None

        def transform(self, frames, first_frame, state, input_end_frame):  # type: ignore[no-untyped-def]
            return frames

    return _convert(entry.singing, WorldCopy(AnalysisConfig()))


def _alt_tts(entry: ManifestEntry, options: dict) -> tuple[np.ndarray, int]:
    """The S2S paper's transcribe-and-synthesise baseline: pocketsphinx, then Festival."""
    from .asr import transcribe

    audio, rate = read_audio(entry.singing)
    text = transcribe(audio, rate).strip()
    if not text:
        return np.zeros(rate // 2, np.float32), rate  # nothing recognised: half a second of silence
    text2wave = shutil.which("text2wave")
    if text2wave is None:
        raise ConfigError("alt-tts needs Festival's text2wave (Debian package festival)")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "tts.wav"
        done = subprocess.run([text2wave, "-o", str(out)], input=text, capture_output=True, text=True, timeout=120)
        if done.returncode != 0 or not out.exists():
            raise ConfigError(f"text2wave failed on {entry.id!r}: {done.stderr.strip()[-200:]}")
        return read_audio(out)


def _sung_copy(entry: ManifestEntry, options: dict) -> tuple[np.ndarray, int]:
    from voxflip.engine.features.mel import MelConfig

    return _copy_synthesis(entry.singing, MelConfig.for_to_singing())


#: the AlignSTS systems, each a model given by ``voxflip eval --alignsts NAME=MODEL`` (an export of
#: ``voxflip export-alignsts``, or a ``train-alignsts`` checkpoint, exported on first use); ``alignsts``
#: is also the converter of that name, and takes the shipped model when none is given
ALIGNSTS_SYSTEMS = {
    MODEL_KIND: "the AlignSTS model (diffusion decoder), paired training",
    f"{MODEL_KIND}-gan": "AlignSTS with FastSpeech 2's decoder and the multi-window discriminator",
    f"{MODEL_KIND}-zeroshot": "AlignSTS trained on singing alone, given speech",
    # the paper's baselines (model.architecture; trainer/models/sts_baselines.py)
    "parekh": "the encoder-decoder of Parekh et al. 2020 (smaller), speech stretched to the song",
    "speechsplit2": "SpeechSplit 2.0 (smaller), its rhythm from the speech's envelope stretched to the song (w/o SE)",
    "speechsplit2-se": "SpeechSplit 2.0 (smaller), its rhythm from the real singing's envelope (w/ SE, an oracle)",
}
#: systems whose model reads the real singing itself, so they exist only as ref:NAME
REFERENCE_ONLY = ("speechsplit2-se",)


def _alignsts_model(name: str, options: dict):
    """The exported model ``--alignsts NAME=MODEL`` gives (a checkpoint is exported once into the cache),
    or for ``alignsts`` the shipped one."""
    from voxflip.engine.registry import default_alignsts_model

    given = (options.get("alignsts_models") or {}).get(name)
    if given is None:
        if name == MODEL_KIND and default_alignsts_model().is_dir():
            return _opened(str(default_alignsts_model()))
        raise ConfigError(f"system {name} needs a model: voxflip eval --alignsts {name}=EXPORT_DIR (or CHECKPOINT.pt)")
    path = Path(given)
    if path.suffix == ".pt":
        path = _exported(str(path.resolve()), path.stat().st_mtime_ns)
    return _opened(str(path))


@functools.lru_cache(maxsize=4)
def _opened(path: str):
    from voxflip.engine.converters.alignsts_model import AlignSTSModel

    return AlignSTSModel(path)


@functools.lru_cache(maxsize=8)
def _exported(checkpoint: str, mtime_ns: int) -> Path:
    """The export of a checkpoint in the cache, made once: written beside its place and renamed into it,
    so a killed export or another worker's leaves nothing half-written there."""
    import hashlib
    import os
    import shutil
    import tempfile

    from voxflip.engine.features.whisper_model import cache_dir

    from ..alignsts_export import export_alignsts

    folder = cache_dir() / "alignsts-exports" / hashlib.sha256(f"{checkpoint}|{mtime_ns}".encode()).hexdigest()[:16]
    if folder.is_dir():
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        export_alignsts(checkpoint, work / "alignsts.onnx")
        os.rename(work, folder)
    except OSError:
        if not folder.is_dir():   # not another process's export arriving first
            raise
    except Exception as exc:      # torch or ONNX errors: one line for this clip
        raise ConfigError(f"cannot export the AlignSTS checkpoint {checkpoint}: {' '.join(str(exc).split())[:200]}") \
            from None
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return folder


@functools.lru_cache(maxsize=2)
def _content_student(path: str):
    from voxflip.engine.features.content_student import ContentStudentModel

    return ContentStudentModel(path)


def _alignsts(name: str, reference: bool, student: bool = False, stream: bool = False) -> Runner:
    """The ``alignsts`` converter with the system's model on the entry's speech; the target F0 from its
    notes (as ``world`` gets them), or with ``reference`` the real singing's own F0 (the paper's condition).
    With ``student``, the speech's content comes from the causal student ``--content-model DIR`` gives; with
    ``stream`` (and the student), the model runs as ``alignsts-stream`` at the live chunk (the song on the
    melody's clock, as a render of it gives it)."""
    def run(entry: ManifestEntry, options: dict) -> tuple[np.ndarray, int]:
        from voxflip.engine.converters.alignsts_to_singing import AlignSTSToSingingConverter

        from ..alignsts_infer import reference_features

        model = _alignsts_model(name, options)
        content = None
        if student:
            if not options.get("content_model"):
                prefix = "stream" if stream else "student"
                raise ConfigError(f"system {prefix}:{name} needs a content student: voxflip eval --content-model DIR "
                                  "(an export of voxflip export-content)")
            content = _content_student(str(options["content_model"]))
        if stream:
            from voxflip.engine.converters.alignsts_context import alignsts_stream_grid
            from voxflip.engine.converters.alignsts_stream import AlignSTSStreamToSingingConverter

            converter = AlignSTSStreamToSingingConverter(melody_of(entry), model, content,
                                                         chunk_frames=alignsts_stream_grid().live_frames)
        elif reference:
            sung = reference_features(*read_audio(entry.singing))
            converter = AlignSTSToSingingConverter(None, model, f0_hz=sung["f0_hz"], content=content,
                                                   reference_mel=sung["mel"] if model.needs_target_mel else None)
        else:
            converter = AlignSTSToSingingConverter(melody_of(entry), model, content=content)
        converter.name = name
        return _convert(entry.speech, converter)

    return run


def _published(system: str) -> Runner:
    """A published system's output for an entry, from ``published.jsonl`` beside the manifest (dev-data's)."""
    def run(entry: ManifestEntry, options: dict) -> tuple[np.ndarray, int]:
        listing = Path(options.get("manifest_dir", ".")) / "published.jsonl"
        if not listing.is_file():
            raise ConfigError(f"no published outputs: {listing} does not exist")
        for line in listing.read_text().splitlines():
            row = json.loads(line) if line.strip() else {}
            if row.get("id") == entry.id and row.get("system") == system:
                return read_audio(listing.parent / row["audio"])
        raise ConfigError(f"{system} published no output for {entry.id!r}")

    return run


_SPEECH, _SINGING = Direction.TO_SPEECH, Direction.TO_SINGING
register(System("input", _SPEECH, "the input singing, unchanged (the floor)", _identity("singing"), ("singing",)))
register(System("real", _SPEECH, "the real speech of the pair (the ceiling)", _identity("speech"), ("speech",)))
register(System("real-vocoded", _SPEECH, "the real speech's mel and F0 through the flow systems' DSP vocoder "
                "(their ceiling)", _vocoded("speech"), ("speech",)))
register(System("input-vocoded", _SPEECH, "the input singing's mel and F0 through the flow systems' DSP vocoder "
                "(what the vocoder alone costs the singing)", _vocoded("singing"), ("singing",)))
register(System("input-world", _SPEECH, "the input singing through WORLD analysis and synthesis, nothing changed "
                "(what the WORLD converters' vocoder alone costs)", _world_copy, ("singing",)))
register(System("identity", _SPEECH, "alias of input: the singing unchanged", _identity("singing"), ("singing",)))
register(System("alt-tts", _SPEECH, "transcribe (pocketsphinx) then synthesise (Festival)", _alt_tts, ("singing",)))
register(System("sts-input", _SINGING, "the input speech, unchanged (the floor)", _identity("speech"),
                ("speech", "melody")))
register(System("sts-real", _SINGING, "the real singing of the pair (the ceiling)", _identity("singing"),
                ("singing", "melody")))
register(System("sts-real-vocoded", _SINGING, "the real singing's 24 kHz mel and F0 through the DSP mel vocoder "
                "(the AlignSTS systems' ceiling)", _sung_copy, ("singing", "melody")))
for _name, _what in ALIGNSTS_SYSTEMS.items():
    if _name not in REFERENCE_ONLY:
        register(System(_name, _SINGING, f"{_what}, on the notes (--alignsts {_name}=MODEL)",
                        _alignsts(_name, reference=False), ("speech", "melody")))
    register(System(f"ref:{_name}", _SINGING, f"{_what}, on the real singing's F0 (the paper's condition)",
                    _alignsts(_name, reference=True), ("speech", "singing")))
    if _name not in REFERENCE_ONLY:
        register(System(f"student:{_name}", _SINGING, f"{_what}, on the notes, the speech read by the causal content "
                        "student (--content-model DIR) instead of Whisper", _alignsts(_name, False, student=True),
                        ("speech", "melody")))
        register(System(f"ref:student:{_name}", _SINGING, f"{_what}, on the real singing's F0, the speech read by the "
                        "causal content student", _alignsts(_name, True, student=True), ("speech", "singing")))
        register(System(f"stream:{_name}", _SINGING, f"{_what}, on the notes, as alignsts-stream sings it live: the "
                        "content student, absolute windows at the default pace, the voice from the first 2 s (the "
                        "model needs absolute windows)", _alignsts(_name, False, student=True, stream=True),
                        ("speech", "melody")))
for _name in ("AlignSTS", "StyleSinger"):
    register(System(f"{_name.lower()}-published", _SINGING, f"{_name}'s published output for the same speech "
                    "(published.jsonl beside the manifest)", _published(_name), ("speech", "melody")))
for _spec in converters():
    if _spec.name in ALIGNSTS_SYSTEMS or _spec.required:
        continue   # registered above, with the model --alignsts gives (alignsts-stream: as stream:NAME)
    _needs = (_spec.direction.source,) if _spec.direction is _SPEECH else ("speech", "melody")
    register(System(_spec.name, _spec.direction, _spec.summary, _converter_runner(_spec), _needs))
    if _spec.direction is _SPEECH:
        register(System(f"live:{_spec.name}", _spec.direction, f"{_spec.name} as voxflip live plays it (live chunk, "
                        f"{LIVE_BLOCK}-frame blocks, silence where it ran ahead)", _converter_runner(_spec, live=True),
                        _needs))
    if "melody_pitch" in _spec.option_names:
        register(System(f"ref:{_spec.name}", _spec.direction, f"{_spec.name} singing the real singing's own pitch "
                        "(--melody SINGING --melody-pitch sung)", _converter_runner(_spec, sung=True),
                        ("speech", "singing")))
    if "vocoder" in _spec.option_names:
        for _vocoder in NEURAL_VOCODERS:
            register(System(f"{_vocoder}:{_spec.name}", _spec.direction, f"{_spec.name} with the {_vocoder} vocoder "
                            f"(voxflip eval --vocoder {_vocoder}=DIR, else the shipped one)",
                            _converter_runner(_spec, vocoder=_vocoder), _needs))
    if "voice_floor_hz" in _spec.option_names:
        register(System(f"floor{LOW_FLOOR_HZ:g}:{_spec.name}", _spec.direction,
                        f"{_spec.name} with --voice-floor {LOW_FLOOR_HZ:g} (analysis windows for voices above it)",
                        _converter_runner(_spec, voice_floor_hz=LOW_FLOOR_HZ), _needs))
        if _spec.direction is _SPEECH:
            register(System(f"live-floor{LOW_FLOOR_HZ:g}:{_spec.name}", _spec.direction,
                            f"{_spec.name} as voxflip live --voice-floor {LOW_FLOOR_HZ:g} --chunk-ms {LOW_CHUNK_MS:g} "
                            "plays it (the low-latency setting)",
                            _converter_runner(_spec, live=True, voice_floor_hz=LOW_FLOOR_HZ, chunk_ms=LOW_CHUNK_MS),
                            _needs))
