"""Benchmarks (pytest-benchmark): opt-in with `pytest -m bench --benchmark-only`.

Speed is claimed in docs/performance.md from `voxflip bench`; these give the same
per-chunk numbers with pytest-benchmark's statistics and history. Nothing here asserts a time.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from voxflip.bench import bench_converter
from voxflip.engine.registry import get_converter, names
from voxflip.streaming.realtime import RealtimeStreamer
from voxflip.streaming.ring_buffer import RingBuffer
from voxflip.streaming.streamer import Streamer

pytestmark = pytest.mark.bench


def _processor(name: str, rate: int = 48_000) -> RealtimeStreamer:
    spec = get_converter(name)
    if spec.whole_input:
        pytest.skip(f"{name} converts once the whole input has ended: a live block time means nothing for it")
    if not spec.ships_model() or spec.missing():
        pytest.skip(f"{name} needs a model or a package this checkout lacks")
    conv = bench_converter(name, None, 80.0)     # at voxflip live's chunk
    return RealtimeStreamer(Streamer(conv, rate, rate), rate)


@pytest.mark.parametrize("name", names(aliases=False))
def test_bench_20ms_block(benchmark, example_speech, name):
    from scipy.signal import resample_poly

    audio, rate = example_speech
    x = resample_poly(audio, 3, 1).astype(np.float32)
    processor = _processor(name)
    block = 960
    position = [0]

    def one_block():
        i = position[0]
        if i + block > x.shape[0]:
            i = 0
        position[0] = i + block
        return processor.process(x[i : i + block])

    benchmark.extra_info["block_ms"] = 20
    benchmark.pedantic(one_block, rounds=400, warmup_rounds=20)


def test_bench_ring_buffer_callback_copy(benchmark):
    ring = RingBuffer(1 << 16)
    block = np.zeros(512, np.float32)  # 256 stereo frames
    out = np.zeros(512, np.float32)

    def copy_in_and_out():
        ring.write(block, 2)
        ring.read_into(out, 2)

    benchmark(copy_in_and_out)


@pytest.fixture(scope="module")
def vocoder_exports(tmp_path_factory):
    """Each generator size exported untrained (speed does not depend on the weights' values)."""
    torch = pytest.importorskip("torch")
    from voxflip.trainer.models.vocoder import VARIANTS, build_generator
    from voxflip.trainer.train import _save
    from voxflip.trainer.vocoder_export import export_vocoder

    folders = {}
    for preset in ("hifigan-v1", "hifigan-v2", "hifigan-v3", "hifigan-small", "pwg", "pwg-small", "hn"):
        folder = tmp_path_factory.mktemp(preset)
        torch.manual_seed(0)
        cfg = VARIANTS[preset]
        _save(folder / "g.pt", {"kind": "vocoder", "generator": build_generator(cfg).state_dict(),
                                "model_config": cfg.to_dict(), "step": 0})
        export_vocoder(folder / "g.pt", folder / "export" / "vocoder.onnx")
        folders[preset] = folder / "export"
    return folders


@pytest.mark.parametrize("frames", [1, 2])
@pytest.mark.parametrize("preset", ["hifigan-v1", "hifigan-v2", "hifigan-v3", "hifigan-small", "pwg", "pwg-small", "hn"])
def test_bench_neural_vocoder_chunk(benchmark, vocoder_exports, preset, frames):
    """One streaming call of a neural vocoder on ``frames`` 10 ms mel frames, one ONNX Runtime thread
    (real-time factor = time / (frames * 10 ms); docs/performance.md, "Neural vocoders")."""
    from voxflip.engine.vocoder.neural import NeuralVocoder

    voc = NeuralVocoder(vocoder_exports[preset], threads=1)
    rng = np.random.default_rng(0)
    mel = (rng.standard_normal((frames, 80)) - 4.0).astype(np.float32)
    f0 = np.full(frames, 150.0)
    state = [voc.init_state()]

    def one_chunk():
        _, state[0] = voc.step(mel, f0, state[0])

    benchmark.extra_info["rtf"] = f"time / {10 * frames} ms"
    benchmark(one_chunk)


@pytest.mark.parametrize("which", ["polyphase", "pedalboard"])
@pytest.mark.parametrize("up", [True, False])
def test_bench_resample_one_second_by_two(benchmark, which, up):
    """One second of 24 <-> 48 kHz in 100 ms blocks: our polyphase filter against pedalboard's
    StreamResampler (what `MonoResampler` used for every ratio before)."""
    from voxflip.engine.features.resample import PedalboardResampler
    from voxflip.streaming.streamer import MonoResampler

    source, target = (24_000, 48_000) if up else (48_000, 24_000)
    stage = MonoResampler(source, target) if which == "polyphase" else PedalboardResampler(source, target)
    x = np.random.default_rng(0).standard_normal(source).astype(np.float32)
    step = source // 10

    def one_second():
        for i in range(0, source, step):
            stage.process(x[i : i + step])

    benchmark(one_second)


@pytest.mark.parametrize("n", [1024, 2048])
def test_bench_real_fft_100_round_trips(benchmark, n):
    """The shared real FFT (engine/real_fft.h): 100 forward and inverse transforms with one set of
    tables, as the analysis and the synthesiser run them (divide by 100 for one of each)."""
    from voxflip.engine.features import _spectral

    x = np.random.default_rng(0).standard_normal(n)
    np.testing.assert_allclose(_spectral.fft_round_trips(x, 1), x, atol=1e-12)
    benchmark(_spectral.fft_round_trips, x, 100)


@pytest.mark.parametrize("frames_per_call", [2, 200])
def test_bench_synthesiser_one_second(benchmark, frames_per_call):
    """One second of a 220 Hz voice (200 frames of 5 ms at 24 kHz) through the pulse synthesiser,
    two frames a call (live) or all at once (offline)."""
    from voxflip.engine.vocoder.source_filter import SourceFilterSynth, SynthConfig

    rng = np.random.default_rng(0)
    f0 = 220.0 * 2 ** (0.05 * np.sin(np.arange(200) / 10))
    sp = np.exp(rng.normal(-6, 1, (200, 513)))
    ap = rng.uniform(0.01, 0.5, (200, 513))
    synth = SourceFilterSynth(SynthConfig())

    def one_second():
        state = synth.init_state()
        for i in range(0, 200, frames_per_call):
            _, state = synth.step(f0[i : i + frames_per_call], sp[i : i + frames_per_call], ap[i : i + frames_per_call], state)

    benchmark(one_second)


@pytest.mark.parametrize("block_ms", [10, 20])
def test_bench_content_student_block(benchmark, tmp_path, block_ms):
    """One block of 16 kHz speech through the causal content student of ``configs/content_student.toml``
    (untrained: speed does not depend on the weights' values), one ONNX Runtime thread: its log-mel and
    its step graph (real-time factor = time / block; docs/performance.md, "The content student")."""
    torch = pytest.importorskip("torch")
    from voxflip.engine.features.content_student import ContentStudentModel
    from voxflip.trainer.content_export import export_model
    from voxflip.trainer.content_train import load_content_config
    from voxflip.trainer.models.content_student import ContentStudent

    torch.manual_seed(0)
    cfg = load_content_config(Path(__file__).resolve().parents[1] / "configs" / "content_student.toml").model
    export_model(ContentStudent(cfg), tmp_path / "content.onnx")
    stream = ContentStudentModel(tmp_path, threads=1).stream()
    block = np.random.default_rng(0).standard_normal(16 * block_ms) * 0.05
    stream.push(np.zeros(16_000))

    benchmark.extra_info["rtf"] = f"time / {block_ms} ms"
    benchmark(stream.push, block)
