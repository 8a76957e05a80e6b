"""Embedded datasets that kdlab generates itself, so a fresh clone trains without any download.

``reviews``: short product/film reviews labelled ``positive`` / ``negative``. A review is one to two
clauses "<aspect> <verb> [negator] [intensifier] <adjective>"; a negator flips the clause, and in a
contrast ("A but B", "although A , B", "B , even though A") the main clause B decides the label. So
the label depends on word order and on interactions between words, not on a bag of words: a
larger model learns the rules, a tiny one only part of them. A small fraction of labels is flipped
(``noise``) so that no model reaches 100 % and the teacher's soft targets carry information.

The splits are deterministic functions of (name, split, size, seed) and disjoint by construction: a
text belongs to the split that owns its hash bucket.
"""

from __future__ import annotations

import hashlib
import random

ASPECTS = (
    "the plot", "the acting", "the soundtrack", "the dialogue", "the pacing", "the ending", "the cast",
    "the script", "the camera work", "the direction", "the food", "the service", "the staff", "the room",
    "the view", "the price", "the battery", "the screen", "the keyboard", "the design", "the story",
    "the music", "the menu", "the coffee", "the hotel", "the app", "the sound", "the interface",
)
VERBS = ("was", "is", "seemed", "felt", "looked", "turned out")
POSITIVE = (
    "good", "great", "excellent", "wonderful", "superb", "brilliant", "charming", "delightful", "lovely",
    "fantastic", "solid", "enjoyable", "impressive", "fresh", "gripping", "clever", "warm", "smart",
    "moving", "beautiful",
)
NEGATIVE = (
    "bad", "awful", "terrible", "dull", "boring", "weak", "poor", "bland", "clumsy", "messy", "tedious",
    "flat", "lifeless", "sloppy", "horrible", "annoying", "cheap", "slow", "stale", "painful",
)
NEGATORS = ("not", "never", "hardly", "far from")
INTENSIFIERS = ("very", "really", "quite", "rather", "so", "truly")
OPENERS = ("honestly ,", "overall ,", "i think", "to be fair ,", "in short ,", "frankly ,")
LABELS = ("negative", "positive")
DEFAULT_SIZES = {"train": 4000, "validation": 600, "test": 1000}
SPLIT_BUCKETS = {"train": range(0, 80), "validation": range(80, 90), "test": range(90, 100)}
NOISE = 0.04


def _clause(rng: random.Random, polarity: int) -> str:
    """A clause whose meaning has the given polarity (+1 / -1), negated half of the time."""
    negated = rng.random() < 0.25
    adjective_polarity = -polarity if negated else polarity
    adjective = rng.choice(POSITIVE if adjective_polarity > 0 else NEGATIVE)
    words = [rng.choice(ASPECTS), rng.choice(VERBS)]
    if negated:
        words.append(rng.choice(NEGATORS))
    if rng.random() < 0.35:
        words.append(rng.choice(INTENSIFIERS))
    words.append(adjective)
    return " ".join(words)


def _review(rng: random.Random) -> tuple[str, int]:
    """One review and its true polarity index (0 negative, 1 positive)."""
    polarity = rng.choice((-1, 1))
    kind = rng.random()
    if kind < 0.40:
        text = _clause(rng, polarity)
    elif kind < 0.60:
        text = f"{_clause(rng, polarity)} and {_clause(rng, polarity)}"
    elif kind < 0.82:
        text = f"{_clause(rng, -polarity)} but {_clause(rng, polarity)}"
    elif kind < 0.92:
        text = f"although {_clause(rng, -polarity)} , {_clause(rng, polarity)}"
    else:
        text = f"{_clause(rng, polarity)} , even though {_clause(rng, -polarity)}"
    if rng.random() < 0.25:
        text = f"{rng.choice(OPENERS)} {text}"
    return text, int(polarity > 0)


def _bucket(text: str) -> int:
    """A stable 0..99 bucket of a text; each split owns a range of buckets, so splits never share a text."""
    return int(hashlib.sha256(text.encode("utf-8")).hexdigest()[:8], 16) % 100


def reviews(split: str, size: int | None = None, seed: int = 0) -> list[dict[str, str]]:
    """Rows {text, label} of the ``reviews`` task; splits never share a text, whatever their sizes and seeds."""
    if split not in SPLIT_BUCKETS:
        raise KeyError(f"embedded dataset 'reviews' has splits {sorted(SPLIT_BUCKETS)}, not {split!r}")
    wanted = DEFAULT_SIZES[split] if size is None else int(size)
    rng = random.Random(f"reviews/{seed}/{split}")
    seen: set[str] = set()
    rows: list[dict[str, str]] = []
    attempts = 0
    while len(rows) < wanted:
        attempts += 1
        if attempts > 100 * wanted + 10_000:
            raise ValueError(f"cannot generate {wanted} distinct {split} reviews; ask for fewer")
        text, label = _review(rng)
        if text in seen or _bucket(text) not in SPLIT_BUCKETS[split]:
            continue
        seen.add(text)
        if rng.random() < NOISE:
            label = 1 - label
        rows.append({"text": text, "label": LABELS[label]})
    return rows


VOWELS = "aeiou"


def _rotate_vowels(word: str) -> str:
    return "".join(VOWELS[(VOWELS.index(c) + 1) % 5] if c in VOWELS else c for c in word)


TOY_LANGUAGES = {
    # two made-up "languages": a word-for-word code of English, so a student can learn the mapping
    "rev": lambda text: " ".join(word[::-1] + "o" if word.isalpha() else word for word in text.split()),
    "vow": lambda text: " ".join("z" + _rotate_vowels(word) if word.isalpha() else word for word in text.split()),
}


def parallel_toy(split: str, size: int | None = None, seed: int = 0) -> list[dict[str, str]]:
    """Parallel rows {source, rev, vow}: an English review and its translations into two toy languages."""
    return [{"source": row["text"], **{lang: code(row["text"]) for lang, code in TOY_LANGUAGES.items()}}
            for row in reviews(split, size=size, seed=seed)]


EMBEDDED = {"reviews": reviews, "parallel_toy": parallel_toy}


def embedded_split(name: str, split: str, size: int | None = None, seed: int = 0) -> list[dict[str, str]]:
    """Rows of an embedded dataset split."""
    from kdlab.errors import ConfigError

    if name not in EMBEDDED:
        raise ConfigError("data.embedded", f"unknown embedded dataset {name!r}; known: {sorted(EMBEDDED)}")
    try:
        return EMBEDDED[name](split, size=size, seed=seed)
    except KeyError as err:
        raise ConfigError("data.split", str(err.args[0])) from None
