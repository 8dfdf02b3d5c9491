"""Which syllables go on which notes: the alignment a singer makes, by dynamic programming.

A singer does not put syllable ``i`` on note ``i``. A long or phrase-final syllable spreads over
several notes (a melisma); where the notes run short, several syllables share one; and the
rests of the tune fall where the speech pauses. :func:`align` finds the monotonic grouping of
the speech's syllables and the melody's notes, each group one syllable over one or more
consecutive notes or several syllables on one note, that best matches the speech's own
rhythm to the tune's:

* the rhythm term: the squared log ratio of the group's spoken duration, scaled by the overall
  tempo ratio (melody span over speech span), to the group's sung duration;
* ``melisma_cost`` for each extra note a syllable takes, ``share_cost`` for each extra
  syllable a note takes (singers prefer one syllable per note);
* ``rest_cost`` when a phrase break (a pause after the group's last syllable) and a rest (a gap
  after the group's last note) do not coincide;
* with a score's lyrics (``syllable_starts``: which notes the score sets a new syllable on),
  ``lyric_cost`` for each place the grouping departs from them: a syllable starting on a note the
  score continues (a melisma there), a note the score starts a syllable on inside a melisma, an
  extra syllable on one note. The speech's syllables are found in its sound, not read, so where
  their count differs from the lyrics' the grouping still has to depart somewhere.

Every syllable and every note is used, in order. The result is the same for the same input:
a pure function, so a converter that calls it once the input has ended renders the same output
whatever the block size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..errors import ConfigError


@dataclass(frozen=True)
class AlignmentConfig:
    max_notes_per_syllable: int = 6
    max_syllables_per_note: int = 4
    melisma_cost: float = 0.15
    share_cost: float = 0.5
    rest_cost: float = 1.0
    rest_s: float = 0.1          # a gap this long after a note is a rest
    #: each departure from the score's lyrics, when it has them: as much as a syllable sung at four
    #: times (or a quarter of) its spoken share (log(4)**2 = 1.92), so the score wins over the rhythm
    lyric_cost: float = 2.0

    def __post_init__(self) -> None:
        if self.max_notes_per_syllable < 1 or self.max_syllables_per_note < 1:
            raise ConfigError("alignment.max_notes_per_syllable and max_syllables_per_note must be >= 1")
        if min(self.melisma_cost, self.share_cost, self.rest_cost, self.lyric_cost) < 0:
            raise ConfigError("alignment costs must be >= 0")


#: the most cells (syllables x notes) and cost evaluations :func:`align` is asked for: about 200 MB
#: and half a minute; a tune of thousands of notes on a few syllables, or the reverse, needs more
MAX_ALIGNMENT_CELLS = 2_000_000
MAX_ALIGNMENT_STEPS = 40_000_000


def alignment_work(syllables: int, notes: int, config: AlignmentConfig | None = None) -> tuple[int, int]:
    """``(cells, steps)`` :func:`align` takes for this many syllables and notes: its table's size and
    the cost evaluations that fill it (every group a cell can end)."""
    cfg = config or AlignmentConfig()
    if syllables == 0 or notes == 0:
        return 0, 0
    max_notes = max(cfg.max_notes_per_syllable, math.ceil(notes / syllables))
    max_syls = max(cfg.max_syllables_per_note, math.ceil(syllables / notes))
    cells = (syllables + 1) * (notes + 1)
    return cells, cells * (min(max_notes, notes) + min(max_syls, syllables))


@dataclass(frozen=True)
class Group:
    """Syllables ``syllables`` on notes ``notes`` (half-open index ranges; one of them has length 1)."""

    syllables: range
    notes: range


def align(durations_s: list[float], pause_after: list[bool], notes: list[tuple[float, float]],
          config: AlignmentConfig | None = None, syllable_starts: list[bool] | None = None) -> list[Group]:
    """Group ``len(durations_s)`` syllables with ``len(notes)`` notes (module docstring).

    Args:
        durations_s: each syllable's spoken length.
        pause_after: whether a pause follows each syllable (the last one: True).
        notes: ``(start_s, end_s)`` of each note, in order.
        syllable_starts: per note, whether the score's lyrics start a syllable on it (None: the
            melody has no lyrics).

    Returns:
        The groups, in order, covering every syllable and every note once. Empty when either is.
    """
    cfg = config or AlignmentConfig()
    n, m = len(durations_s), len(notes)
    if len(pause_after) != n:
        raise ValueError(f"pause_after has {len(pause_after)} entries for {n} syllables")
    if syllable_starts is not None and len(syllable_starts) != m:
        raise ValueError(f"syllable_starts has {len(syllable_starts)} entries for {m} notes")
    if n == 0 or m == 0:
        return []
    starts_before = [0]   # starts_before[j]: notes before j the lyrics start a syllable on
    for starts in syllable_starts or [False] * m:
        starts_before.append(starts_before[-1] + bool(starts))
    # Limits wide enough that a grouping always exists.
    max_notes = max(cfg.max_notes_per_syllable, math.ceil(m / n))
    max_syls = max(cfg.max_syllables_per_note, math.ceil(n / m))
    spoken = [max(d, 1e-3) for d in durations_s]
    sung = [max(end - start, 1e-3) for start, end in notes]
    ratio = sum(sung) / sum(spoken)
    rest_after = [notes[j + 1][0] - notes[j][1] >= cfg.rest_s for j in range(m - 1)] + [True]
    # Prefix sums for group durations.
    sp = [0.0]
    for d in spoken:
        sp.append(sp[-1] + d)
    sg = [0.0]
    for d in sung:
        sg.append(sg[-1] + d)

    def cost(i0: int, i1: int, j0: int, j1: int) -> float:
        rhythm = math.log(ratio * (sp[i1] - sp[i0]) / (sg[j1] - sg[j0])) ** 2
        extra = cfg.melisma_cost * (j1 - j0 - 1) + cfg.share_cost * (i1 - i0 - 1)
        mismatch = cfg.rest_cost if pause_after[i1 - 1] != rest_after[j1 - 1] else 0.0
        if syllable_starts is not None:
            departures = (not syllable_starts[j0]) + (starts_before[j1] - starts_before[j0 + 1]) + (i1 - i0 - 1)
            mismatch += cfg.lyric_cost * departures
        return rhythm + extra + mismatch

    inf = math.inf
    best = [[inf] * (m + 1) for _ in range(n + 1)]
    back: list[list[tuple[int, int] | None]] = [[None] * (m + 1) for _ in range(n + 1)]
    best[0][0] = 0.0
    for i in range(n + 1):
        for j in range(m + 1):
            here = best[i][j]
            if here == inf:
                continue
            if i < n:
                for k in range(1, min(max_notes, m - j) + 1):      # syllable i over notes j..j+k-1
                    c = here + cost(i, i + 1, j, j + k)
                    if c < best[i + 1][j + k]:
                        best[i + 1][j + k], back[i + 1][j + k] = c, (i, j)
                for k in range(2, min(max_syls, n - i) + 1):       # syllables i..i+k-1 on note j
                    if j < m:
                        c = here + cost(i, i + k, j, j + 1)
                        if c < best[i + k][j + 1]:
                            best[i + k][j + 1], back[i + k][j + 1] = c, (i, j)
    groups: list[Group] = []
    i, j = n, m
    while (i, j) != (0, 0):
        prev = back[i][j]
        assert prev is not None, "no alignment: the limits leave no path"
        groups.append(Group(range(prev[0], i), range(prev[1], j)))
        i, j = prev
    groups.reverse()
    return groups
