"""Experiment (issue 16, not adopted): the low-latency setting with the F0 window kept at its default length
but centred 6.7 ms before each frame. Needs the pitch_delay_samples option of this commit (reverted after it).

    python scripts/experiment_delayed_pitch.py     # after copying input and live:world-nodur clips into /tmp/rt/exp
"""
from dataclasses import replace

from voxflip.engine.converters.world_to_speech import WorldToSpeechConfig, WorldToSpeechConverter
from voxflip.engine.features.world import AnalysisConfig
from voxflip.trainer.eval import systems as S
from voxflip.trainer.eval.runner import evaluate

DEFAULT = AnalysisConfig()
DELAYED = replace(DEFAULT.for_voice_floor(100.0), pitch=DEFAULT.pitch,
                  pitch_delay_samples=DEFAULT.pitch_window_samples // 2 - 240)

def run(entry, options):
    conv = WorldToSpeechConverter(WorldToSpeechConfig(analysis=DELAYED), shorten=False, chunk_frames=1)
    conv.name = "world-nodur"
    return S._convert_live(entry.singing, conv)

S.register(S.System("live-floor100-delayed:world-nodur", S._SPEECH, "experiment", run, ("singing",)))
if __name__ == "__main__":
    r = evaluate(["input", "live:world-nodur", "live-floor100:world-nodur", "live-floor100-delayed:world-nodur"],
                 "../shared/dev-data/manifest.jsonl", "/tmp/rt/exp/to_speech.md", workers=2)
    print(open("/tmp/rt/exp/to_speech.md").read()[:6000])
