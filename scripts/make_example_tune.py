"""Write voxflip/data/tune.mid and tune.csv: the original example tune of the demo.

Run from the repository root: python scripts/make_example_tune.py
"""

from pathlib import Path

import mido

BPM = 120
GATE = 0.92  # notes sound for 92% of their length: slightly detached
# (MIDI note, length in beats): 14 notes, one per syllable voxflip finds in arctic_a0007
TUNE = [(67, 1), (67, 0.5), (69, 0.5), (71, 1), (74, 1), (72, 1), (71, 0.5), (69, 0.5), (67, 2),
        (64, 1), (66, 1), (67, 1), (69, 1), (67, 3)]


def main() -> None:
    out = Path(__file__).resolve().parent.parent / "voxflip" / "data"
    beat_s = 60.0 / BPM
    rows = ["start_s,end_s,midi_note,velocity"]
    t = 0.25  # a short rest before the first note
    for note, beats in TUNE:
        rows.append(f"{t:.4f},{t + beats * beat_s * GATE:.4f},{note},96")
        t += beats * beat_s
    (out / "tune.csv").write_text("\n".join(rows) + "\n")

    mid = mido.MidiFile(ticks_per_beat=480)
    track = mido.MidiTrack()
    mid.tracks.append(track)
    track.append(mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(BPM), time=0))
    track.append(mido.MetaMessage("track_name", name="voxflip example tune", time=0))
    pending = int(0.25 / beat_s * 480)
    for note, beats in TUNE:
        on = int(beats * 480 * GATE)
        track.append(mido.Message("note_on", note=note, velocity=96, time=pending))
        track.append(mido.Message("note_off", note=note, velocity=0, time=on))
        pending = int(beats * 480) - on
    mid.save(out / "tune.mid")


if __name__ == "__main__":
    main()
