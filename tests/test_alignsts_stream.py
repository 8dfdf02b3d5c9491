"""``alignsts-stream``: AlignSTS as the speech arrives (engine/converters/alignsts_stream.py).

Tiny models trained for nothing (their sound is not the point): an AlignSTS with absolute windows
and a causal content student, both exported as the engine runs them. The output for a file does not
depend on the block size, equals the model run on the whole song with the same inputs, is never later
than the latency it declares (and not much earlier), and runs through ``voxflip live``.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import replace

import numpy as np
import pytest
import soundfile as sf

torch = pytest.importorskip("torch")
pytest.importorskip("onnxruntime")

from voxflip.engine.converters.alignsts_model import BlockNoise, target_mel  # noqa: E402
from voxflip.engine.errors import ConfigError, OptionError  # noqa: E402
from voxflip.engine.features.levels import limit_output  # noqa: E402
from voxflip.engine.notes import Melody, Note  # noqa: E402
from voxflip.engine.registry import make_converter  # noqa: E402
from voxflip.streaming.streamer import Streamer  # noqa: E402

RATE = 24_000
TUNE = Melody(tuple(Note(0.3 * i, 0.3 * i + 0.27, 60.0 + (0, 2, 4, 5, 7, 5, 4, 2, 0, 4)[i]) for i in range(10)), "scale")


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    from voxflip.trainer.alignsts_export import export_model as export_alignsts
    from voxflip.trainer.content_export import export_model as export_student
    from voxflip.trainer.models.alignsts import AlignSTS, AlignSTSConfig
    from voxflip.trainer.models.content_student import ContentStudent, ContentStudentConfig
    from voxflip.trainer.models.sts_baselines import build_model

    root = tmp_path_factory.mktemp("alignsts_stream")
    torch.manual_seed(0)
    cfg = AlignSTSConfig(hidden=32, content_bottleneck=8, diffusion_channels=32, decoder_layers=1, timbre_layers=1)
    export_alignsts(AlignSTS(replace(cfg, window_mode="absolute", window_frames=5)).eval(),
                    root / "absolute" / "alignsts.onnx")
    export_alignsts(AlignSTS(cfg).eval(), root / "relative" / "alignsts.onnx")
    # the paper's other decoder and its baselines, with absolute windows: they stream on slices
    absolute = replace(cfg, window_mode="absolute", window_frames=5)
    export_alignsts(AlignSTS(replace(absolute, decoder="fs2", decoder_context=8)).eval(), root / "fs2" / "alignsts.onnx")
    for name, arch in (("parekh", {"architecture": "parekh"}), ("speechsplit2", {"architecture": "speechsplit2"}),
                       ("speechsplit2-se", {"architecture": "speechsplit2", "ss_rhythm_input": "target"})):
        baseline = replace(absolute, decoder="conv", decoder_layers=2, baseline_layers=2, **arch)
        export_alignsts(build_model(baseline).eval(), root / name / "alignsts.onnx")
    # the same model as an export without step graphs (as one written before they were): the sliced path
    (root / "sliced").mkdir()
    manifest = json.loads((root / "absolute" / "alignsts.manifest.json").read_text())
    del manifest["step"]
    (root / "sliced" / "alignsts.manifest.json").write_text(json.dumps(manifest))
    shutil.copy(root / "absolute" / "alignsts.onnx", root / "sliced" / "alignsts.onnx")
    student = ContentStudent(ContentStudentConfig(hidden=24, dilations=(1, 2, 4), lookahead=3, dropout=0.0)).eval()
    student.set_stats(torch.full((80,), -6.0), torch.full((80,), 2.0), torch.randn(512), torch.rand(512) + 0.5)
    export_student(student, root / "student" / "content.onnx")
    return root


def _speech(seconds: float = 3.1, seed: int = 0) -> np.ndarray:
    """A voice-like test signal: a gliding harmonic tone under a syllable-rate envelope, and a little noise."""
    t = np.arange(int(seconds * RATE)) / RATE
    f0 = 140.0 + 30.0 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / RATE
    voice = sum(np.sin(k * phase) / k for k in range(1, 8)) * (0.55 + 0.45 * np.sin(2 * np.pi * 4.0 * t))
    noise = np.random.default_rng(seed).standard_normal(t.shape[0]) * 0.01
    return (0.08 * voice + noise).astype(np.float32)


def _converter(models, **options):
    options = {"melody": TUNE, "model_path": models / "absolute", "content_model": models / "student", **options}
    return make_converter("singing", "alignsts-stream", **options)


def _render(converter, speech: np.ndarray, block: int) -> tuple[np.ndarray, Streamer]:
    streamer = Streamer(converter, RATE, RATE)
    pieces = [streamer.process(speech[i : i + block]) for i in range(0, speech.shape[0], block)]
    pieces.append(streamer.flush())
    return np.concatenate(pieces), streamer


def test_the_song_does_not_depend_on_the_block_size(models):
    speech = _speech()
    songs = [_render(_converter(models), speech, block)[0] for block in (speech.shape[0], 4097, 333)]
    frames = int(np.ceil(TUNE.notes[-1].end_s / target_mel().frame_s))
    assert songs[0].shape[0] == pytest.approx(frames * target_mel().hop_samples, abs=target_mel().hop_samples)
    assert np.max(np.abs(songs[0])) > 0 and np.all(np.isfinite(songs[0]))
    for song in songs[1:]:
        assert song.shape == songs[0].shape and np.array_equal(song, songs[0])


@pytest.mark.parametrize("name", ["absolute", "sliced", "fs2", "parekh", "speechsplit2"])
def test_the_stream_sings_what_the_model_sings_on_the_whole_song(models, name):
    """Group by group as the content arrives, the song equals one run over the whole song with the same
    content, voice, noise and ratio (the frames at the speech's end read the content the stream ended with):
    AlignSTS through its step graphs (state carried; either decoder) and through the whole graph on slices
    (an export without them), and the paper's two baselines on slices."""
    from voxflip.engine.converters.alignsts_stream import AlignSTSStreamToSingingConverter
    from voxflip.engine.converters.alignsts_to_singing import MODEL_RMS
    from voxflip.engine.features.levels import active_rms
    from voxflip.engine.features.mel import MelAnalyzer

    by_step = name in ("absolute", "fs2")
    converter = _converter(models, seed=5, model_path=models / name)
    assert converter.by_step == by_step == converter.model.has_step_graphs
    assert converter.model.architecture == {"parekh": "parekh", "speechsplit2": "speechsplit2"}.get(name, "alignsts")
    rows = []

    def keep(state, frames):                # what the student gave the model, as it gave it
        rows.append(frames.copy())
        AlignSTSStreamToSingingConverter._keep(state, frames)

    converter._keep = keep
    speech = _speech(seconds=2.4)          # shorter than the song: its last groups wait for the end
    song, streamer = _render(converter, speech, 1000)
    state = streamer.state
    content = np.concatenate(rows)
    assert content.shape[0] == state.known and (state.steps is not None) == by_step
    voice = speech[: converter.voice_samples]
    level = active_rms(voice, RATE)
    timbre = MelAnalyzer(target_mel()).log_mel((voice.astype(np.float64) / level * MODEL_RMS).astype(np.float32))
    model = converter.model
    noise = BlockNoise(5, model.steps, model.n_mels) if model.decoder == "diffusion" else None
    mel = model.sing(content, converter.f0, timbre, ratio=converter.ratio, chunk_frames=64, noise=noise)
    vocoder = converter.vocoder
    look = converter.lookahead_frames
    f0 = np.concatenate([converter.f0, np.repeat(converter.f0[-1:], look)]).astype(np.float64)
    audio, _ = vocoder.step(np.concatenate([mel, np.repeat(mel[-1:], look, axis=0)]), f0, vocoder.init_state())
    want = limit_output(np.asarray(audio, np.float64) * (level / MODEL_RMS))
    assert song.shape == want.shape
    assert np.max(np.abs(song - want)) < 1e-3 * max(1e-3, np.max(np.abs(want)))
    # and the content read is the speech's: about one frame per 20 ms of it
    assert abs(state.known - speech.shape[0] / RATE / 0.02) <= 2


@pytest.mark.parametrize("pace, group, by_step", [(0.63, 32, True), (1.0, 32, True), (0.63, 4, True),
                                                   (0.63, 32, False), (1.0, 32, False)])
def test_no_output_is_later_than_the_declared_latency(models, pace, group, by_step):
    """Driven in 256-sample blocks as a device would, song sample ``s`` is out by input time ``s +
    latency``; the bound is tight within a group and a chunk (it is the worst wait, not a guess). Through
    the step graphs no chunk feeds more than FEED_GROUPS groups of frames (the context catches up)."""
    from voxflip.engine.converters.alignsts_stream import FEED_GROUPS, LEAD_FRAMES

    converter = _converter(models, pace=pace, chunk_ms=group * target_mel().frame_s * 1000,
                           model_path=models / ("absolute" if by_step else "sliced"))
    assert converter.by_step == by_step
    latency = converter.latency_samples
    speech = _speech(seconds=5.0)
    streamer = Streamer(converter, RATE, RATE)
    produced, slack, fed, ahead = 0, [], [0], []
    song_samples = int(np.ceil(TUNE.notes[-1].end_s / target_mel().frame_s)) * target_mel().hop_samples
    for i in range(0, speech.shape[0], 256):
        produced += streamer.process(speech[i : i + 256]).shape[0]
        if by_step:
            fed.append(streamer.state.steps.fed)
            ahead.append(fed[-1] - streamer.state.sung)
        due = min(song_samples, i + 256 - latency)
        if due > 0:
            slack.append(produced - due)
    assert min(slack) >= 0, f"output came {-min(slack)} samples later than the declared {latency}"
    assert min(slack) < converter.chunk_samples + 256
    if by_step:      # the context catches up over a few chunks, and the song's frames are never fed far ahead
        delay = converter.model.step_graphs().delay
        assert max(np.diff(fed)) <= FEED_GROUPS * group and fed[-1] > 0
        assert max(ahead) <= delay + group + max(group, LEAD_FRAMES)
    assert 1.0 < latency / RATE < 3.0
    assert converter.latency_samples == pytest.approx(latency)


def test_bad_setups_are_one_line(models):
    cases = [
        ({"model_path": models / "relative"}, r"relative windows .* window_mode = \"absolute\""),
        ({"model_path": None}, r"is needed: alignsts-stream runs a model trained with absolute windows"),
        ({"content_model": None}, r"is needed: alignsts-stream reads the speech with a causal content student"),
        ({"pace": 3.0}, r"pace.*3\.0.*must be in 0\.1\.\.2"),
        ({"content_model": models / "absolute"}, r"is not a content student"),
    ]
    for change, message in cases:
        with pytest.raises(OptionError, match=message) as info:
            _converter(models, **change)
        assert "\n" not in str(info.value)
    # SpeechSplit 2.0 "w/ SE" reads the real singing's envelope, which a stream does not have
    with pytest.raises(ConfigError, match=r"speechsplit2 baseline.* reads the real singing's envelope: it cannot "
                                          r"stream") as info:
        _converter(models, model_path=models / "speechsplit2-se")
    assert "\n" not in str(info.value)


def test_through_step_graphs_a_transposition_moves_the_notes_fed_from_then_on(models):
    """The frames fed after the change carry the new notes, and the vocoder sings the notes each frame was fed
    with (the mel and its F0 agree)."""
    converter = _converter(models, chunk_ms=4 * target_mel().frame_s * 1000)
    speech = _speech(seconds=4.0)
    streamer = Streamer(converter, RATE, RATE)
    half = RATE * 5 // 2
    streamer.process(speech[:half])
    fed = streamer.state.steps.fed
    assert fed > 0
    converter.set_param(streamer.state, "transpose", 12.0)
    streamer.process(speech[half:])
    streamer.flush()
    f0, sung = converter.f0, streamer.state.fed_f0
    assert np.allclose(sung[:fed], f0[:fed]) and np.allclose(sung[fed:], 2.0 * f0[fed:], rtol=1e-5)


def test_speech_faster_than_the_song_computes_only_the_content_it_reads(models):
    """At pace 0.63 the speech outruns the song: the content graph stops at the rows the song reads, and the
    keys held stay bounded."""
    tune = Melody(tuple(Note(0.3 * i, 0.3 * i + 0.27, 60.0 + (0, 2, 4, 5, 7)[i % 5]) for i in range(40)), "12 s")
    song, streamer = _render(_converter(models, melody=tune, pace=0.63), np.tile(_speech(seconds=3.0), 5), 4800)
    steps = streamer.state.steps
    assert steps.n_total == steps.rows_read < streamer.state.known      # (the end then flushes the encoder)
    assert steps.keys.shape[0] <= steps.rows_read and np.all(np.isfinite(song))


def test_transpose_moves_the_notes_sung_from_then_on(models):
    converter = _converter(models)
    state = converter.init_state()
    converter.set_param(state, "transpose", 3.0)
    assert state.transpose == 3.0
    with pytest.raises(Exception, match="transpose"):
        converter.set_param(state, "transpose", 99.0)


def test_voxflip_live_streams_it_from_a_file(models, tmp_path):
    """``voxflip live --method alignsts-stream``: the live engine, a file played through it as fast as it goes."""
    from voxflip.cli import main

    sf.write(tmp_path / "speech.wav", _speech(seconds=4.0), RATE)
    tune = tmp_path / "tune.csv"
    tune.write_text("start_s,end_s,midi_note\n" + "".join(f"{n.start_s},{n.end_s},{n.midi_note}\n" for n in TUNE.notes))
    code = main(["live", "--to", "singing", "--method", "alignsts-stream", "--melody", str(tune), "--model",
                 str(models / "absolute"), "--content-model", str(models / "student"), "--input-file",
                 str(tmp_path / "speech.wav"), "--output-file", str(tmp_path / "song.wav"), "--fast", "-q"])
    assert code == 0
    song, rate = sf.read(tmp_path / "song.wav")
    assert rate == RATE and np.max(np.abs(song)) > 0
    converter = _converter(models, chunk_ms=32 * target_mel().frame_s * 1000)
    heard = np.flatnonzero(np.abs(song) > 1e-4)
    # nothing before the declared latency; the song starts within a group of it
    assert heard[0] >= converter.latency_samples - 1


def test_the_eval_system_sings_a_pair_as_the_stream_does(models, pair_manifest):
    """``voxflip eval --system stream:alignsts``: the model of ``--alignsts`` and the student of ``--content-model``."""
    from voxflip.engine.errors import ConfigError
    from voxflip.trainer.data.manifest import read_manifest
    from voxflip.trainer.eval.systems import get_system

    entry = read_manifest(pair_manifest)[0]
    options = {"alignsts_models": {"alignsts": str(models / "absolute")}, "content_model": str(models / "student")}
    audio, rate = get_system("stream:alignsts").run(entry, options)
    assert rate == sf.info(str(entry.speech)).samplerate and np.all(np.isfinite(audio)) and np.max(np.abs(audio)) > 0
    with pytest.raises(ConfigError, match=r"stream:alignsts needs a content student: voxflip eval --content-model"):
        get_system("stream:alignsts").run(entry, {"alignsts_models": options["alignsts_models"]})
    with pytest.raises(ConfigError, match=r"alignsts-stream needs a model with absolute windows"):
        get_system("stream:alignsts").run(entry, {**options, "alignsts_models": {"alignsts": str(models / "relative")}})


def test_a_long_stream_keeps_only_the_content_it_still_reads(models):
    """Past rows go once no group reads them; the song is the same as with every row kept."""
    tune = Melody(tuple(Note(0.3 * i, 0.3 * i + 0.27, 60.0 + (0, 2, 4, 5, 7)[i % 5]) for i in range(100)), "long")
    speech = np.tile(_speech(seconds=3.0), 10)
    dropping = _converter(models, melody=tune, pace=1.0, model_path=models / "sliced")
    keeping = _converter(models, melody=tune, pace=1.0, model_path=models / "sliced")
    keeping.drop_after = 10**9
    song, streamer = _render(dropping, speech, 4800)
    assert streamer.state.first > 1024 and streamer.state.frames.shape[0] <= 4096
    assert np.array_equal(song, _render(keeping, speech, 4800)[0])
    # the step graphs keep only the keys their next calls read, and sing the same 30 s song
    stepped, streamer = _render(_converter(models, melody=tune, pace=1.0), speech, 4800)
    steps = streamer.state.steps
    assert steps.key_first > 1024 and steps.keys.shape[0] <= 512 and steps.mel.shape[1] == 0
    assert stepped.shape == song.shape
    assert np.max(np.abs(stepped - song)) <= 1e-3 * np.max(np.abs(song))


@pytest.mark.parametrize("gain", [1e-3, 100.0, 1e4])
def test_quiet_or_loud_speech_sings_at_its_own_level_finite_and_as_long(models, gain):
    """The level the voice's first 2 s set (loud in, loud out; the writer clips), never a non-finite sample."""
    import warnings

    speech = _speech()
    normal = _render(_converter(models), speech, 4096)[0]
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        song = _render(_converter(models), speech * np.float32(gain), 4096)[0]
    assert song.shape == normal.shape and np.all(np.isfinite(song))
    ratio = np.sqrt(np.mean(song.astype(np.float64) ** 2) / np.mean(normal.astype(np.float64) ** 2))
    assert 0.1 * gain < ratio < 10 * gain


def test_a_song_longer_than_the_speech_hears_silence_past_its_end(models):
    """At pace 1 a 3 s song needs 3 s of speech and more; given 0.5 s, the rest is sung from silence, as live."""
    speech = _speech(seconds=0.5)
    song = _render(_converter(models, pace=1.0), speech, 4096)[0]
    padded = np.concatenate([speech, np.zeros(4 * RATE, np.float32)])
    heard = _render(_converter(models, pace=1.0), padded, 4096)[0]
    assert np.all(np.isfinite(song)) and song.shape == heard.shape
    assert np.max(np.abs(song - heard)) <= 1e-6 * np.max(np.abs(heard))   # the student's calls split differently
