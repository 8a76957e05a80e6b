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
from collections.abc import Callable
from typing import Any

ASPECTS = (
    "the plot",
    "the acting",
    "the soundtrack",
    "the dialogue",
    "the pacing",
    "the ending",
    "the cast",
    "the script",
    "the camera work",
    "the direction",
    "the food",
    "the service",
    "the staff",
    "the room",
    "the view",
    "the price",
    "the battery",
    "the screen",
    "the keyboard",
    "the design",
    "the story",
    "the music",
    "the menu",
    "the coffee",
    "the hotel",
    "the app",
    "the sound",
    "the interface",
)
VERBS = ("was", "is", "seemed", "felt", "looked", "turned out")
POSITIVE = (
    "good",
    "great",
    "excellent",
    "wonderful",
    "superb",
    "brilliant",
    "charming",
    "delightful",
    "lovely",
    "fantastic",
    "solid",
    "enjoyable",
    "impressive",
    "fresh",
    "gripping",
    "clever",
    "warm",
    "smart",
    "moving",
    "beautiful",
)
NEGATIVE = (
    "bad",
    "awful",
    "terrible",
    "dull",
    "boring",
    "weak",
    "poor",
    "bland",
    "clumsy",
    "messy",
    "tedious",
    "flat",
    "lifeless",
    "sloppy",
    "horrible",
    "annoying",
    "cheap",
    "slow",
    "stale",
    "painful",
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


def _distinct_rows(
    name: str,
    split: str,
    wanted: int,
    seed: int,
    draw: Callable[[random.Random], tuple[str, Any]],
    finish: Callable[[random.Random, Any], dict[str, Any]],
) -> list[dict[str, Any]]:
    """`wanted` rows of a generated split: `draw` proposes (key text, item); a key already seen, or whose hash
    bucket belongs to another split, is drawn again; `finish` turns an accepted item into its row."""
    if split not in SPLIT_BUCKETS:
        raise KeyError(f"embedded dataset {name!r} has splits {sorted(SPLIT_BUCKETS)}, not {split!r}")
    rng = random.Random(f"{name}/{seed}/{split}")
    seen: set[str] = set()
    rows: list[dict[str, Any]] = []
    attempts = 0
    while len(rows) < wanted:
        attempts += 1
        if attempts > 100 * wanted + 10_000:
            raise ValueError(f"cannot generate {wanted} distinct {split} rows of {name!r}; ask for fewer")
        key, item = draw(rng)
        if key is None or key in seen or _bucket(key) not in SPLIT_BUCKETS[split]:
            continue
        seen.add(key)
        rows.append(finish(rng, item))
    return rows


def reviews(split: str, size: int | None = None, seed: int = 0) -> list[dict[str, str]]:
    """Rows {text, label} of the ``reviews`` task; splits never share a text, whatever their sizes and seeds."""

    def draw(rng: random.Random) -> tuple[str, tuple[str, int]]:
        text, label = _review(rng)
        return text, (text, label)

    def finish(rng: random.Random, item: tuple[str, int]) -> dict[str, str]:
        text, label = item
        return {"text": text, "label": LABELS[1 - label if rng.random() < NOISE else label]}

    wanted = DEFAULT_SIZES.get(split, 0) if size is None else int(size)
    return _distinct_rows("reviews", split, wanted, seed, draw, finish)


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
    return [
        {"source": row["text"], **{lang: code(row["text"]) for lang, code in TOY_LANGUAGES.items()}}
        for row in reviews(split, size=size, seed=seed)
    ]


def _statement(rng: random.Random) -> dict[str, object]:
    """The parts of one review clause: aspect, verb, negator, intensifier, adjective and the meaning's polarity."""
    polarity = rng.choice((-1, 1))
    negator = rng.choice(NEGATORS) if rng.random() < 0.3 else None
    adjective_polarity = -polarity if negator else polarity
    return {
        "aspect": rng.choice(ASPECTS),
        "verb": rng.choice(VERBS),
        "negator": negator,
        "intensifier": rng.choice(INTENSIFIERS) if rng.random() < 0.3 else None,
        "adjective": rng.choice(POSITIVE if adjective_polarity > 0 else NEGATIVE),
        "polarity": polarity,
    }


def _render(parts: dict[str, object]) -> str:
    words = [parts["aspect"], parts["verb"], parts["negator"], parts["intensifier"], parts["adjective"]]
    return " ".join(str(w) for w in words if w)


def _variant(rng: random.Random, parts: dict[str, object]) -> dict[str, object]:
    """A second clause related to the first: a rewording, the opposite opinion, another aspect, or unrelated."""
    kind = rng.random()
    other = _statement(rng)
    if kind < 0.3:  # same aspect and meaning, reworded (a negated antonym says the same thing)
        other.update(aspect=parts["aspect"], polarity=parts["polarity"])
        adjective_polarity = -other["polarity"] if other["negator"] else other["polarity"]
        other["adjective"] = rng.choice(POSITIVE if adjective_polarity > 0 else NEGATIVE)
    elif kind < 0.55:  # same aspect, any opinion
        other["aspect"] = parts["aspect"]
    elif kind < 0.75:  # the same opinion, word for word, of a (usually) different aspect
        other.update({k: parts[k] for k in ("verb", "negator", "adjective", "polarity")})
    return other


def _similarity(a: dict[str, object], b: dict[str, object]) -> float:
    """Gold similarity 0-5: mostly whether the two clauses talk about the same aspect and mean the same opinion."""
    score = 2.5 * (a["aspect"] == b["aspect"]) + 1.5 * (a["polarity"] == b["polarity"])
    score += 0.5 * (a["adjective"] == b["adjective"]) + 0.5 * (a["verb"] == b["verb"])
    if a["aspect"] == b["aspect"] and a["polarity"] != b["polarity"]:
        score -= 0.5  # the same thing judged oppositely: a contradiction
    return max(0.0, score)


def sts_toy(split: str, size: int | None = None, seed: int = 0) -> list[dict[str, object]]:
    """Rows {sentence1, sentence2, score}: two review clauses and a 0-5 similarity that depends on aspect and
    meaning (negation flips it), so a model must read word order, not only count shared words."""

    def draw(rng: random.Random) -> tuple[str | None, tuple[dict[str, object], dict[str, object]]]:
        first = _statement(rng)
        second = _variant(rng, first)
        a, b = _render(first), _render(second)
        return (None if a == b else f"{a}||{b}"), (first, second)

    def finish(rng: random.Random, item: tuple[dict[str, object], dict[str, object]]) -> dict[str, object]:
        first, second = item
        return {"sentence1": _render(first), "sentence2": _render(second), "score": _similarity(first, second)}

    wanted = {"train": 2000, "validation": 400, "test": 400}.get(split, 0) if size is None else int(size)
    return _distinct_rows("sts_toy", split, wanted, seed, draw, finish)


EMBEDDED = {"reviews": reviews, "parallel_toy": parallel_toy, "sts_toy": sts_toy}
# the columns of each embedded dataset's rows, for checking a config's column names without generating rows
COLUMNS = {
    "reviews": ["text", "label"],
    "parallel_toy": ["source", "rev", "vow"],
    "sts_toy": ["sentence1", "sentence2", "score"],
}


def embedded_split(name: str, split: str, size: int | None = None, seed: int = 0) -> list[dict[str, str]]:
    """Rows of an embedded dataset split."""
    from kdlab.errors import ConfigError

    if name not in EMBEDDED:
        raise ConfigError("data.embedded", f"unknown embedded dataset {name!r}; known: {sorted(EMBEDDED)}")
    try:
        return EMBEDDED[name](split, size=size, seed=seed)
    except KeyError as err:
        raise ConfigError("data.split", str(err.args[0])) from None
