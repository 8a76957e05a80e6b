"""Data augmentation for transfer sets (Tang et al. 2019, *Distilling Task-Specific Knowledge from BERT into Simple
Neural Networks*, §3.3), torch-free.

For each copy of a sentence (words = whitespace tokens), each word w independently, with X ~ U[0, 1]:

    X < p_mask                     →  the tokenizer's mask token
    p_mask ≤ X < p_mask + p_pos    →  a word of the same part-of-speech tag, drawn by unigram frequency
                                      (without a tagger: a word drawn from the corpus unigram distribution)
    otherwise                      →  w

then, with probability p_ng, only one n-gram is kept (n uniform in 1..5, capped at the copy's length, its start
uniform). `n_iter` copies are drawn per sentence; copies equal to an input sentence or to an earlier copy are
dropped, so the result holds distinct new texts. Sentence pairs: both sides of a copy are drawn the same way, one
after the other. Each sentence's copies come from a generator seeded by (seed, the sentence's content), so they
do not depend on the sentence's position or on the other sentences (the unigram tables do: they are the corpus').

POS tagger: Tang et al. use one; kdlab runs one only when the caller passes it (`tagger`: words -> tags), because
none of the well-kept taggers installs its model from the package registries (spaCy's and NLTK's models download
from GitHub). Without one, replacement is by corpus unigram (`Augmenter.replacement` says which ran).
"""

from __future__ import annotations

import bisect
import hashlib
import itertools
import json
import random
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from kdlab.data.identity import Input, content_id
from kdlab.errors import ConfigError

Tagger = Callable[[list[str]], list[str]]
MAX_NGRAM = 5


@dataclass(frozen=True)
class AugmentSettings:
    """Tang et al.'s rates (their SST-2 defaults) and the number of copies per sentence."""

    n_iter: int = 20
    p_mask: float = 0.1
    p_pos: float = 0.1
    p_ng: float = 0.25
    seed: int = 0
    of: str = "gold"  # which texts are copied (kdlab.data.transfer): the labelled ones, or all of the transfer set's


def settings(spec: Mapping[str, Any] | None, key: str = "data.transfer.augment") -> AugmentSettings | None:
    """The settings of an `augment` config node (None: no augmentation), each value checked, errors naming `key.<name>`."""
    if spec is None:
        return None
    unknown = sorted(set(spec) - set(AugmentSettings.__dataclass_fields__))
    if unknown:
        raise ConfigError(
            f"{key}.{unknown[0]}", f"unknown key; expected {sorted(AugmentSettings.__dataclass_fields__)}"
        )
    values = {**asdict(AugmentSettings()), **dict(spec)}
    n_iter = values["n_iter"]
    if isinstance(n_iter, bool) or not isinstance(n_iter, int) or n_iter < 0:
        raise ConfigError(f"{key}.n_iter", f"must be an integer >= 0 (copies per sentence), got {n_iter!r}")
    for name in ("p_mask", "p_pos", "p_ng"):
        value = values[name]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= float(value) <= 1.0:
            raise ConfigError(f"{key}.{name}", f"must be a probability in [0, 1], got {value!r}")
        values[name] = float(value)
    if values["p_mask"] + values["p_pos"] > 1.0:
        raise ConfigError(
            f"{key}.p_pos", f"p_mask + p_pos must be at most 1, got {values['p_mask']} + {values['p_pos']}"
        )
    if isinstance(values["seed"], bool) or not isinstance(values["seed"], int):
        raise ConfigError(f"{key}.seed", f"must be an integer, got {values['seed']!r}")
    return AugmentSettings(**values)


class _Unigram:
    """Draws words by corpus frequency (cumulative counts + bisect: O(log V) per draw)."""

    def __init__(self, counts: Counter[str]):
        self.words = sorted(counts)
        self.cumulative = list(itertools.accumulate(counts[w] for w in self.words))

    def draw(self, rng: random.Random) -> str:
        return self.words[bisect.bisect_right(self.cumulative, rng.random() * self.cumulative[-1])]


class Augmenter:
    """Tang et al.'s augmentation over one corpus: the unigram tables come from `corpus` (its texts, both sides)."""

    def __init__(
        self, corpus: Sequence[Input], options: AugmentSettings, mask_token: str, tagger: Tagger | None = None
    ):
        if not mask_token:
            raise ConfigError("data.transfer.augment.p_mask", "the tokenizer has no mask token to mask words with")
        self.options = options
        self.mask_token = mask_token
        self.tagger = tagger
        self.replacement = "pos" if tagger is not None else "unigram"
        texts = [side for pair in corpus for side in pair if side is not None]
        counts: Counter[str] = Counter()
        by_tag: dict[str, Counter[str]] = {}
        for text in texts:
            words = text.split()
            counts.update(words)
            if tagger is not None:
                for word, tag in zip(words, tagger(words), strict=True):
                    by_tag.setdefault(tag, Counter())[word] += 1
        self.unigram = _Unigram(counts) if counts else None
        self.by_tag = {tag: _Unigram(c) for tag, c in by_tag.items()}

    def describe(self) -> dict[str, Any]:
        """What ran, for the run folder: the settings, the replacement rule and the mask token."""
        rule = (
            "part-of-speech-guided: a word of the same tag, by unigram frequency (tagger given)"
            if self.replacement == "pos"
            else "corpus unigram: no POS tagger whose model installs from the package registries"
        )
        return {**asdict(self.options), "replacement": self.replacement, "rule": rule, "mask_token": self.mask_token}

    def draw_side(self, words: list[str], tags: list[str] | None, rng: random.Random) -> list[str]:
        """One augmented copy of one side's words (the per-word rules, then n-gram sampling)."""
        p_mask, p_pos = self.options.p_mask, self.options.p_pos
        out = []
        for i, word in enumerate(words):
            x = rng.random()
            if x < p_mask:
                out.append(self.mask_token)
            elif x < p_mask + p_pos:
                table = self.by_tag.get(tags[i]) if tags is not None else self.unigram
                out.append(table.draw(rng) if table is not None else word)
            else:
                out.append(word)
        if out and rng.random() < self.options.p_ng:
            n = min(rng.randint(1, MAX_NGRAM), len(out))
            start = rng.randrange(len(out) - n + 1)
            out = out[start : start + n]
        return out

    def copies(self, item: Input) -> list[Input]:
        """Up to n_iter distinct augmented copies of one input (copies equal to it are dropped)."""
        text, pair = item
        seed = int.from_bytes(hashlib.sha256(f"{self.options.seed}".encode() + content_id(text, pair)).digest()[:8])
        rng = random.Random(seed)
        sides = [(s.split(), self.tagger(s.split()) if self.tagger else None) for s in (text, pair) if s is not None]
        seen = {content_id(text, pair)}
        out: list[Input] = []
        for _ in range(self.options.n_iter):
            made = [" ".join(self.draw_side(words, tags, rng)) for words, tags in sides]
            copy = (made[0], made[1] if pair is not None else None)
            key = content_id(*copy)
            if key not in seen and copy[0].strip():
                seen.add(key)
                out.append(copy)
        return out

    def augment(self, inputs: Sequence[Input], exclude: Sequence[Input] = ()) -> list[Input]:
        """The distinct copies of every input, in input order, none equal to an input or to an `exclude` item."""
        seen = {content_id(*item) for item in itertools.chain(inputs, exclude)}
        out: list[Input] = []
        for item in inputs:
            for copy in self.copies(item):
                key = content_id(*copy)
                if key not in seen:
                    seen.add(key)
                    out.append(copy)
        return out


def cache_key(inputs: Sequence[Input], exclude: Sequence[Input], augmenter: Augmenter) -> str:
    """What determines an augmented set: the inputs and excluded texts (by content, in order) and what ran."""
    digest = hashlib.sha256(json.dumps(augmenter.describe(), sort_keys=True).encode())
    for group in (inputs, exclude):
        for item in group:
            digest.update(content_id(*item))
        digest.update(b"\x1d")
    return digest.hexdigest()[:20]


def augmented(
    inputs: Sequence[Input], exclude: Sequence[Input], augmenter: Augmenter, cache_dir: str | Path | None
) -> tuple[list[Input], bool]:
    """`augmenter.augment(inputs, exclude)`, read from `cache_dir/augment/<key>.json` when an earlier run made it
    (returns the copies and whether they came from the cache). The file is written atomically."""
    from kdlab.utils.run_folder import write_json

    path = Path(cache_dir) / "augment" / f"{cache_key(inputs, exclude, augmenter)}.json" if cache_dir else None
    if path is not None and path.exists():
        try:
            return [(t, p) for t, p in json.loads(path.read_text(encoding="utf-8"))["copies"]], True
        except (OSError, ValueError, KeyError, TypeError):
            pass  # a damaged entry is rebuilt below
    copies = augmenter.augment(inputs, exclude)
    if path is not None:
        write_json(path, {"settings": augmenter.describe(), "copies": [list(c) for c in copies]})
    return copies, False
