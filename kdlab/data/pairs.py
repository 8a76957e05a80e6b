"""Unlabeled sentence pairs (Trans-Encoder) and the labelled pairs they are evaluated on.

Config (`conf/data/sts_toy.yaml`, `conf/data/stsb_pairs.yaml`):

    train:       a loading-layer source of pairs; only `text` and `text_pair` are read (a score column is ignored)
                 e.g. {path: pairs.txt, separator: "||"}  (one `sentence1||sentence2` per line)
    validation:  labelled pairs (`text`, `text_pair`, `label` = gold similarity) for dev Spearman
    test:        labelled pairs for the final report
    columns:     {text: .., text_pair: .., label: ..}   (a split may override with its own `columns`)
    pair_source: train | eval_pairs | all_splits
                 # eval_pairs: the validation + test pairs themselves, scores dropped (the paper's transductive
                 # setting; never implicit); all_splits: train + validation + test pairs (the reference code's)
    max_length, pair_max_length, eval_batch_size, num_workers, group_by_length

Pairs are de-duplicated (a pair and its reverse count once); the cross-encoder sees both orders.
`stage(kind, tokenizer, batch_size, labels, max_length)` gives the Lightning DataModule of one training stage:
`bi` (two sides encoded separately), `cross` (the pair concatenated, both orders) or `simcse` (single sentences),
each text cut to the stage's `max_length` (`method.<stage>.max_length`, by default data.max_length for the bi-encoder
and data.pair_max_length for the cross-encoder). Each text is tokenised once per tokenizer, form and length.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from kdlab.data.base import Feature, FeatureCache, KDDataModule, plain
from kdlab.data.checks import PAIR_SOURCE_SPLITS, check_gold_column, check_pair_source, check_source
from kdlab.data.collate import PadCollator, ParallelCollator, tokenize
from kdlab.data.loading import load_records
from kdlab.data.text import parse_label, parse_text, split_columns

log = logging.getLogger(__name__)
Pair = tuple[str, str]
BI_SIDES = ("a", "b")


class PairData:
    """The unlabeled training pairs, the labelled dev/test pairs, and per-stage DataModules over them."""

    def __init__(self, cfg: Mapping[str, Any]):
        self.cfg = plain(cfg)
        check_pair_source(self.cfg.get("pair_source", "train"))
        self._pairs: list[Pair] | None = None
        self._labelled: dict[str, tuple[list[Pair], list[float]]] = {}
        self.cache = FeatureCache()  # shared by the stages: each text is tokenised once per tokenizer
        self.info: dict[str, Any] = {}

    def _read_pairs(self, split: str) -> list[Pair]:
        source = check_source(self.cfg.get(split), f"data.{split}")
        columns = split_columns(self.cfg, split)
        rows = load_records(source, {"text": columns.get("text"), "text_pair": columns.get("text_pair")})
        return [(parse_text(row, "text"), parse_text(row, "text_pair")) for row in rows]

    def pairs(self) -> list[Pair]:
        """The de-duplicated unlabeled pairs the cycle labels and trains on (a pair and its reverse count once)."""
        if self._pairs is None:
            source = self.cfg.get("pair_source", "train")
            splits = PAIR_SOURCE_SPLITS[source]
            raw = [pair for split in splits for pair in self._read_pairs(split)]
            seen: set[Pair] = set()
            unique = []
            for a, b in raw:
                key = (a, b) if a <= b else (b, a)
                if key not in seen:
                    seen.add(key)
                    unique.append((a, b))
            self._pairs = unique
            self.info = {
                "pair_source": source,
                "splits": list(splits),
                "rows": len(raw),
                "duplicates_removed": len(raw) - len(unique),
                "pairs": len(unique),
            }
            log.info(
                "unlabeled pairs: %d from %s (%d duplicates removed)",
                len(unique),
                "+".join(splits),
                len(raw) - len(unique),
            )
        return self._pairs

    def sentences(self) -> list[str]:
        """The distinct sentences of the unlabeled pairs, in order of first appearance."""
        return list(dict.fromkeys(text for pair in self.pairs() for text in pair))

    def labelled(self, split: str) -> tuple[list[Pair], list[float]]:
        """(pairs, gold scores) of `validation` or `test`; a missing or non-numeric score names file and line."""
        if split not in self._labelled:
            source = check_source(self.cfg.get(split), f"data.{split}")
            columns = split_columns(self.cfg, split)
            check_gold_column(columns, split)
            rows = load_records(source, columns)
            pairs = [(parse_text(row, "text"), parse_text(row, "text_pair")) for row in rows]
            gold = [float(parse_label(row, "regression", [], None)) for row in rows]
            self._labelled[split] = (pairs, gold)
        return self._labelled[split]

    def _features(
        self, tokenizer: Any, form: str, what: str, pairs: Sequence[Pair], max_length: int
    ) -> list[dict[str, Any]]:
        """Tokenised features of some pairs, cut to `max_length` tokens (cached per tokenizer): `bi` sides apart (each
        side cut), `cross` concatenated (the two together cut, longest first), `single` the first sentence."""

        def build() -> list[dict[str, Any]]:
            if form == "bi":
                sides = [tokenize(tokenizer, [p[i] for p in pairs], None, max_length) for i in (0, 1)]
                return [{"a": a["input_ids"], "b": b["input_ids"], "index": n} for n, (a, b) in enumerate(zip(*sides))]
            if form == "cross":
                features = tokenize(tokenizer, [p[0] for p in pairs], [p[1] for p in pairs], max_length)
                for n, feature in enumerate(features):
                    feature["index"] = n
                return features
            return tokenize(tokenizer, [p[0] for p in pairs], None, max_length)  # single sentences

        return self.cache.get(tokenizer, (form, what, max_length), build)

    def training_features(
        self, kind: str, tokenizer: Any, labels: torch.Tensor | None, max_length: int
    ) -> list[dict[str, Any]]:
        """Training examples of a stage: bi pairs with labels, cross pairs in both orders with labels, or sentences."""
        pairs = self.pairs()
        if kind == "simcse":
            sentences = [(text, text) for text in self.sentences()]
            return self._features(tokenizer, "single", "sentences", sentences, max_length)
        if labels is None or len(labels) != len(pairs):
            raise ValueError(
                f"{kind} training needs one label per pair ({len(pairs)}), got {None if labels is None else len(labels)}"
            )
        values = [float(v) for v in labels]
        if kind == "bi":
            return [
                {**f, "label": y} for f, y in zip(self._features(tokenizer, "bi", "train", pairs, max_length), values)
            ]
        forward = self._features(tokenizer, "cross", "train", pairs, max_length)
        backward = self._features(tokenizer, "cross", "train-reversed", [(b, a) for a, b in pairs], max_length)
        return [{**f, "label": y} for f, y in zip(forward, values)] + [
            {**f, "label": y} for f, y in zip(backward, values)
        ]

    def eval_features(self, kind: str, tokenizer: Any, split: str, max_length: int) -> list[dict[str, Any]]:
        """Labelled dev/test examples in the form the stage's model reads (SimCSE is evaluated as a bi-encoder)."""
        pairs, gold = self.labelled(split)
        form = "cross" if kind == "cross" else "bi"
        return [{**f, "label": y} for f, y in zip(self._features(tokenizer, form, split, pairs, max_length), gold)]

    def collator(self, kind: str, tokenizer: Any, training: bool) -> Any:
        if kind == "cross":
            return PadCollator(tokenizer.pad_token_id, label_dtype=torch.float32)
        if kind == "simcse" and training:
            return PadCollator(tokenizer.pad_token_id)
        return ParallelCollator(tokenizer.pad_token_id, sides=BI_SIDES)

    def stage(
        self, kind: str, tokenizer: Any, batch_size: int, labels: torch.Tensor | None, max_length: int
    ) -> PairStageData:
        """The DataModule of one training stage (`bi`, `cross` or `simcse`), its texts cut to `max_length` tokens."""
        if kind not in ("bi", "cross", "simcse"):
            raise ValueError(f"unknown stage kind {kind!r}")
        return PairStageData(self, kind, tokenizer, batch_size, labels, max_length)


class PairStageData(KDDataModule):
    """Train loader over the (pseudo-)labelled pairs of one stage; val/test loaders over the gold dev/test pairs.

    The training batch size is the stage's (`method.<stage>.batch_size`), the evaluation one `data.eval_batch_size`;
    `max_length` the stage's (`method.<stage>.max_length`), for training and evaluation alike.
    """

    def __init__(
        self,
        data: PairData,
        kind: str,
        tokenizer: Any,
        batch_size: int,
        labels: torch.Tensor | None,
        max_length: int,
    ):
        super().__init__(data.cfg, tokenizer, cache=data.cache)
        self.data, self.kind, self.train_batch_size, self.labels = data, kind, int(batch_size), labels
        self.max_length = int(max_length)

    def batch_size(self, split: str) -> int:
        return self.train_batch_size if split == "train" else super().batch_size(split)

    def features(self, split: str) -> list[Feature]:
        if split == "train":
            return self.data.training_features(self.kind, self.require_tokenizer(), self.labels, self.max_length)
        return self.data.eval_features(self.kind, self.require_tokenizer(), split, self.max_length)

    def collator(self, split: str) -> Any:
        return self.data.collator(self.kind, self.require_tokenizer(), training=split == "train")

    def group_length(self, feature: Feature) -> int:
        return max(len(feature[k]) for k in ("input_ids", "a", "b") if k in feature)
