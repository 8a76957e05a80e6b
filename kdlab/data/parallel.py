"""Parallel-sentence DataModule: (source, translation) pairs from several sources and languages, mixed in batches.

Config (`conf/data/parallel_*.yaml`):

    sources:            # each a loading-layer source with `columns: {source: .., target: ..}` and a `lang` tag
      - {path: train.en-de.tsv, columns: {source: en, target: de}, lang: en-de, limit: 5000, skip_empty: false}
      # or two line-aligned files, one per side (`zip`), each naming its `column`
      - {zip: [{path: sts-train.csv, format: tsv, header: false, column: 5},
               {path: stsb-es-train.csv, header: false, column: 0}], lang: en-es, limit: 5000}
    dev: [...]          # named dev sources (same shape); or, when empty,
    holdout: 500        # pairs held out of each train source (seeded) as its dev pairs
    max_length, batch_size, eval_batch_size, num_workers
    group_by_length     # train batches of similar lengths (kdlab.data.sampling), less padding

A pair with an empty side is an error naming file and line, unless the source says `skip_empty: true`
(then such pairs are dropped and counted in the log). Every batch mixes languages (one shuffled pool). Each pair carries `teacher_index`: the row of its
source sentence among the split's distinct source sentences, which is where the teacher-output
cache keeps that sentence's embedding.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from torch.utils.data import DataLoader

from kdlab.data.base import Feature, KDDataModule
from kdlab.data.checks import check_language_tag, check_parallel_sources, parallel_columns
from kdlab.data.collate import ParallelCollator, tokenize
from kdlab.data.identity import distinct
from kdlab.data.loading import held_out_indices, load_records, subsample
from kdlab.data.text import parse_text
from kdlab.errors import ConfigError, DataError

Pair = dict[str, Any]
log = logging.getLogger(__name__)


def _zipped_rows(source: Mapping[str, Any], key: str) -> list[dict[str, Any]]:
    """Rows {source, target} from two line-aligned files, one side each."""
    sides = source.get("zip") or []
    if len(sides) != 2 or any(side.get("column") is None for side in sides):
        raise ConfigError(f"{key}.zip", "needs two file sources, each with a `column` (source side first)")
    first = load_records({**sides[0], "limit": None}, {"source": sides[0]["column"]})
    second = load_records({**sides[1], "limit": None}, {"target": sides[1]["column"]})
    if len(first) != len(second):
        raise DataError(
            sides[0]["path"],
            f"has {len(first)} rows but {sides[1]['path']} has {len(second)}; zipped files must be row-aligned",
        )
    rows = [
        {"source": a["source"], "target": b["target"], "_where": f"{a['_where']} + {b['_where']}"}
        for a, b in zip(first, second)
    ]
    return subsample(rows, source.get("limit"), source.get("seed", 0))


def read_pairs(source: Mapping[str, Any], key: str) -> list[Pair]:
    """The (source, target) pairs of one configured source, tagged with its language; empty sides are errors."""
    lang = check_language_tag(source, key)
    if source.get("zip") is not None:
        rows = _zipped_rows(source, key)
    else:
        rows = load_records(source, parallel_columns(source, key))
    if source.get("skip_empty"):
        # an explicit choice for noisy corpora (the WMT sample has empty lines): drop such pairs, say how many
        kept = [row for row in rows if str(row["source"] or "").strip() and str(row["target"] or "").strip()]
        if len(kept) < len(rows):
            log.warning("%s: skipped %d pairs with an empty side (skip_empty: true)", key, len(rows) - len(kept))
        rows = kept
    return [
        {
            "source": parse_text(row, "source"),
            "target": parse_text(row, "target"),
            "lang": str(lang),
            "_where": row["_where"],
        }
        for row in rows
    ]


class ParallelDataModule(KDDataModule):
    """Train and dev pairs for multilingual distillation, tokenised once with the student's tokenizer."""

    SPLITS = ("train", "validation")

    def __init__(self, cfg: Mapping[str, Any], tokenizer: Any = None):
        super().__init__(cfg, tokenizer)
        self._pairs: dict[str, list[Pair]] = {}

    def has_split(self, split: str) -> bool:
        """Train and validation pairs always exist (dev pairs are named sources or held out of the train ones)."""
        return split in self.SPLITS

    def _load(self) -> None:
        sources = self.cfg.get("sources") or []
        dev_sources = self.cfg.get("dev") or []
        check_parallel_sources(sources, dev_sources, self.cfg.get("holdout"))
        holdout = int(self.cfg.get("holdout") or 0)
        train: list[Pair] = []
        dev: list[Pair] = []
        for number, source in enumerate(sources):
            pairs = read_pairs(source, f"data.sources[{number}]")
            if not dev_sources:
                if holdout >= len(pairs):
                    raise ConfigError(
                        "data.holdout",
                        f"{holdout} held-out pairs leave none to train on in {pairs[0]['_where'].rsplit(':', 1)[0]}",
                    )
                held = held_out_indices(len(pairs), holdout, f"holdout/{number}/{source.get('seed', 0)}")
                dev += [p for i, p in enumerate(pairs) if i in held]
                pairs = [p for i, p in enumerate(pairs) if i not in held]
            train += pairs
        for number, source in enumerate(dev_sources):
            dev += read_pairs(source, f"data.dev[{number}]")
        self._pairs = {"train": train, "validation": dev}

    def pairs(self, split: str) -> list[Pair]:
        """The pairs of `train` or `validation`, loaded once."""
        if not self._pairs:
            self._load()
        return self._pairs[split]

    def languages(self) -> list[str]:
        """Language tags in the order they first appear (train, then dev)."""
        seen: dict[str, None] = {}
        for split in ("train", "validation"):
            for pair in self.pairs(split):
                seen.setdefault(pair["lang"], None)
        return list(seen)

    def distinct_sources(self, split: str) -> tuple[list[str], list[int]]:
        """The split's distinct source sentences and, per pair, the index of its source among them."""
        unique, where = distinct([(p["source"], None) for p in self.pairs(split)])
        return [text for text, _ in unique], where

    def features(self, split: str) -> list[Feature]:
        """Tokenised pairs of a split (source and target apart), with the row of their source in the teacher cache."""

        def build() -> list[Feature]:
            pairs = self.pairs(split)
            max_length = int(self.cfg["max_length"])
            sources = tokenize(self.tokenizer, [p["source"] for p in pairs], None, max_length)
            targets = tokenize(self.tokenizer, [p["target"] for p in pairs], None, max_length)
            _, teacher_rows = self.distinct_sources(split)
            lang_ids = {lang: i for i, lang in enumerate(self.languages())}
            return [
                {
                    "source": s["input_ids"],
                    "target": t["input_ids"],
                    "teacher_index": row,
                    "lang": lang_ids[p["lang"]],
                    "index": i,
                }
                for i, (s, t, row, p) in enumerate(zip(sources, targets, teacher_rows, pairs))
            ]

        return self.cached(split, build)

    def collator(self, split: str) -> ParallelCollator:
        return ParallelCollator(self.require_tokenizer().pad_token_id)

    def group_length(self, feature: Feature) -> tuple[int, int]:
        """Each side is padded on its own, so batches are grouped by both lengths (kdlab.data.sampling)."""
        return len(feature["source"]), len(feature["target"])

    def test_dataloader(self) -> DataLoader:
        return self.loader("validation")
