"""The text of the synthetic corpus: hand-written sentences first, then a small template grammar.

`sentence_stream(seed)` yields every sentence of :data:`~.synth_sentences.SENTENCES` once, in an
order shuffled by the seed, then an endless run of sentences composed by `generate_sentences` from
the templates and word lists below. No sentence is yielded twice (compared after
`normalize_text`), so a corpus can grow well past the hand-written set without repeating a text.

Everything here (sentences, templates, word lists) was written for voxflip and is released with it
under the MIT licence. The words are everyday ones found in Festival's CMU lexicon, with no names,
digits or abbreviations, so every Festival voice reads them from its dictionary.

`split_for_text` gives a sentence its split (train/valid/test, 90/5/5) from a hash of its
normalised text, so one text always lands in one split, whatever the seed or the corpus size.
"""

from __future__ import annotations

import hashlib
import random
import re
from collections.abc import Iterator

from .synth_sentences import SENTENCES

MIN_WORDS = 5
MAX_WORDS = 14

#: slot name -> the words or phrases that can fill it
WORD_LISTS: dict[str, tuple[str, ...]] = {
    "person": (
        "baker", "farmer", "teacher", "doctor", "driver", "painter", "gardener", "neighbor", "student",
        "sailor", "nurse", "waiter", "singer", "builder", "fisherman", "tailor", "pilot", "cook",
        "carpenter", "shopkeeper",
    ),
    "relative": (
        "sister", "brother", "cousin", "aunt", "uncle", "mother", "father", "grandmother",
        "grandfather", "friend", "daughter", "son",
    ),
    "animal": (
        "dog", "cat", "horse", "rabbit", "goat", "duck", "fox", "owl", "sheep", "kitten", "puppy",
        "pony", "donkey", "goose", "parrot", "hen",
    ),
    "adj": (
        "small", "tall", "old", "young", "quiet", "cheerful", "tired", "busy", "careful", "sleepy",
        "friendly", "clever", "gentle", "hungry", "patient", "happy", "grumpy", "curious", "brave", "shy",
    ),
    "thing": (
        "basket", "lamp", "blanket", "letter", "bottle", "ladder", "kettle", "suitcase", "notebook",
        "bucket", "candle", "teapot", "jacket", "umbrella", "pillow", "bicycle", "wagon", "radio",
        "clock", "mirror", "bowl", "box", "hammer", "rope", "scarf", "plate",
    ),
    "thing_adj": (
        "red", "blue", "green", "yellow", "heavy", "broken", "shiny", "dusty", "wooden", "tiny",
        "empty", "clean", "round", "old", "new", "soft",
    ),
    "thing_state": (
        "broken", "missing", "empty", "dusty", "wet", "too heavy", "still warm", "full of sand",
        "covered in paint", "far too small",
    ),
    "place": (
        "kitchen", "garden", "barn", "station", "market", "library", "harbor", "bakery", "meadow",
        "village", "cottage", "orchard", "bridge", "school", "shed", "attic", "cellar", "porch",
        "hallway", "river",
    ),
    "prep": ("near", "behind", "beside", "outside", "past", "around"),
    "time": (
        "this morning", "last night", "after lunch", "before dinner", "on a rainy day", "at noon",
        "in the evening", "late yesterday", "after school", "during the storm", "at sunrise",
        "before breakfast", "in the afternoon", "last winter", "every summer",
    ),
    "v_past_tr": (
        "carried", "found", "dropped", "painted", "cleaned", "fixed", "moved", "opened", "hid", "lost",
        "borrowed", "washed", "wrapped", "sold", "bought", "packed", "mended", "polished", "picked up",
        "put down",
    ),
    "v_past_intr": (
        "waited", "rested", "slept", "sang", "danced", "walked", "laughed", "sat", "stood", "read",
        "whistled", "played", "worked", "wandered", "stayed",
    ),
    "v_base_tr": (
        "carry", "find", "paint", "clean", "fix", "move", "open", "wash", "wrap", "pack", "mend",
        "polish", "bring", "fetch", "hide",
    ),
    "v_base_intr": ("wait", "rest", "sleep", "sing", "dance", "walk", "read", "play", "work", "sit"),
    "weather": ("cold", "windy", "sunny", "foggy", "rainy", "warm", "quiet", "cloudy", "bright", "chilly"),
    "feeling": (
        "happy", "tired", "hungry", "nervous", "sleepy", "cheerful", "calm", "excited", "proud",
        "surprised",
    ),
}

#: sentence patterns; ``{slot}`` draws from WORD_LISTS (a second ``{slot2}`` draws a different
#: entry of the same list), ``{a}`` becomes "a" or "an" to suit the next word.
TEMPLATES: tuple[str, ...] = (
    "The {adj} {person} {v_past_tr} {a} {thing_adj} {thing} {prep} the {place}.",
    "My {relative} {v_past_intr} {prep} the {place} {time}.",
    "{Time}, the {animal} {v_past_intr} {prep} the {place}.",
    "Please {v_base_tr} the {thing_adj} {thing} before you go to the {place}.",
    "Did the {person} {v_base_tr} the {thing} {prep} the {place}?",
    "It was {weather} {time}, so we {v_past_intr} {prep} the {place}.",
    "The {animal} looked {feeling} when the {person} came to the {place}.",
    "We asked the {person} to {v_base_tr} {a} {thing_adj} {thing} for us.",
    "Our {relative} was {feeling} because the {thing} was {thing_state}.",
    "I {v_past_tr} {a} {thing_adj} {thing} {prep} the {place} {time}.",
    "Would you like to {v_base_intr} {prep} the {place} with me?",
    "The {person} and the {person2} {v_past_intr} together {time}.",
    "Nobody knew why the {thing} was {thing_state} {time}.",
    "The {adj} {animal} {v_past_intr} {prep} the {place} while we {v_past_intr2}.",
    "My {relative} and I {v_past_tr} the {thing} {time}.",
    "Where did the {person} {v_base_tr} the {thing_adj} {thing}?",
)

_SLOT = re.compile(r"\{([A-Za-z_]+?)(2?)\}")
_WORD = re.compile(r"[a-z']+")


def normalize_text(text: str) -> str:
    """Lower case, words only (letters and apostrophes), single spaces: the key for "same text"."""
    return " ".join(_WORD.findall(text.lower()))


def words_of(text: str) -> list[str]:
    """The words of `text` (see `normalize_text`)."""
    return normalize_text(text).split()


def split_for_text(text: str) -> str:
    """``"train"``, ``"valid"`` or ``"test"`` (90/5/5) from a hash of the normalised text."""
    bucket = int.from_bytes(hashlib.sha256(normalize_text(text).encode("utf-8")).digest()[:8], "big") % 100
    return "train" if bucket < 90 else "valid" if bucket < 95 else "test"


def vocabulary() -> frozenset[str]:
    """Every word `generate_sentences` can use: the templates' fixed words and the word lists."""
    words: set[str] = {"a", "an"}
    for template in TEMPLATES:
        words.update(words_of(_SLOT.sub(" ", template)))
    for entries in WORD_LISTS.values():
        for entry in entries:
            words.update(words_of(entry))
    return frozenset(words)


def _fill(template: str, rng: random.Random) -> str:
    chosen: dict[str, list[str]] = {}

    def draw(match: re.Match[str]) -> str:
        slot = match.group(1)
        key = slot.lower()
        options = WORD_LISTS[key]
        used = chosen.setdefault(key, [])
        pick = rng.choice([o for o in options if o not in used] if match.group(2) else options)
        used.append(pick)
        return pick.capitalize() if slot[0].isupper() else pick

    text = _SLOT.sub(draw, template.replace("{a}", "\0"))
    parts = text.split("\0")
    for i in range(1, len(parts)):  # "a" or "an" before the word that follows
        following = parts[i].lstrip()
        parts[i] = ("an" if following[:1].lower() in "aeiou" else "a") + parts[i]
    text = "".join(parts)
    return text[0].upper() + text[1:]


def generate_sentences(seed: int = 0) -> Iterator[str]:
    """Endless, seeded stream of distinct sentences from TEMPLATES and WORD_LISTS.

    Each sentence has MIN_WORDS..MAX_WORDS words, all from `vocabulary()`.

    Raises:
        RuntimeError: the grammar ran out of new sentences (after millions; not expected).
    """
    rng = random.Random(f"voxflip-synth-grammar:{seed}")
    seen: set[str] = set()
    misses = 0
    while True:
        text = _fill(rng.choice(TEMPLATES), rng)
        key = normalize_text(text)
        if key in seen or not MIN_WORDS <= len(key.split()) <= MAX_WORDS:
            misses += 1
            if misses > 100_000:
                raise RuntimeError(f"the sentence grammar produced no new sentence in 100000 tries ({len(seen)} made)")
            continue
        misses = 0
        seen.add(key)
        yield text


def sentence_stream(seed: int = 0) -> Iterator[str]:
    """The corpus text, in order: the hand-written sentences shuffled by `seed`, then grammar ones.

    No text is yielded twice (compared after `normalize_text`).
    """
    order = list(SENTENCES)
    random.Random(f"voxflip-synth-sentences:{seed}").shuffle(order)
    seen: set[str] = set()
    for text in order:
        seen.add(normalize_text(text))
        yield text
    for text in generate_sentences(seed):
        if normalize_text(text) not in seen:
            yield text
