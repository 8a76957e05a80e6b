"""Text classification / regression DataModule (single sentences or sentence pairs)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from kdlab.data.base import Feature, KDDataModule
from kdlab.data.checks import check_labels, check_source, check_task
from kdlab.data.collate import PadCollator, tokenize
from kdlab.data.identity import Input
from kdlab.data.loading import Record
from kdlab.data.records import parse_label, parse_text, split_columns, split_records, task_labels  # noqa: F401 - pairs.py, parallel.py import parse_* from here
from kdlab.data.transfer import TransferSet


class TextDataModule(KDDataModule):
    """Labelled single sentences or sentence pairs, tokenised once and padded per batch."""

    def __init__(self, cfg: Mapping[str, Any], tokenizer: Any = None, key: str = "data"):
        super().__init__(cfg, tokenizer, key)
        self.task = check_task(self.cfg["task"], f"{key}.task")
        self.labels = task_labels(self.cfg)
        check_labels(self.task, self.labels, f"{key}.labels")
        self._records: dict[str, list[Record]] = {}
        self.transfer: TransferSet | None = None  # unlabelled inputs the training split adds (`use_transfer`)

    @property
    def num_labels(self) -> int:
        """Output width of a model for this task (1 for regression)."""
        return len(self.labels) if self.task == "classification" else 1

    @property
    def is_pair(self) -> bool:
        return self.cfg["columns"].get("text_pair") is not None

    def records(self, split: str) -> list[Record]:
        """The split's rows with parsed `text`, `text_pair` and `label`, loaded once."""
        if split not in self._records:
            check_source(self.cfg.get(split), f"{self.key}.{split}")  # the config check's rule, with this key
            self._records[split] = split_records(self.cfg, split)
        return self._records[split]

    def texts(self, split: str = "train") -> list[str]:
        """Every text of a split (both sides of pairs), e.g. to train a tokenizer on."""
        out = []
        for record in self.records(split):
            out.append(record["text"])
            if "text_pair" in record:
                out.append(record["text_pair"])
        return out

    def use_transfer(self, transfer: TransferSet | None) -> None:
        """Train on the labelled rows plus `transfer`'s inputs (kdlab/data/transfer.py), or on the labelled rows only
        (None). Transfer rows come after the labelled ones in `index` order (`train_inputs`) and carry `gold` False."""
        self.transfer = transfer

    def train_inputs(self) -> list[Input]:
        """The training inputs in `index` order: the labelled rows, then the transfer set's (when one is in use)."""
        gold = [(r["text"], r.get("text_pair")) for r in self.records("train")]
        return gold + (list(self.transfer.inputs) if self.transfer is not None else [])

    def features(self, split: str) -> list[Feature]:
        """Tokenised examples of a split, computed once per tokenizer."""
        if split == "train" and self.transfer is not None:
            return self.cached(("train", "transfer", id(self.transfer)), self._mixed_train_features)
        return self._labelled_features(split)

    def _labelled_features(self, split: str) -> list[Feature]:
        """The split's labelled rows, tokenised once per tokenizer."""

        def build() -> list[Feature]:
            rows = self.records(split)
            pairs = [r["text_pair"] for r in rows] if self.is_pair else None
            encoded = tokenize(self.tokenizer, [r["text"] for r in rows], pairs, int(self.cfg["max_length"]))
            for index, (feature, row) in enumerate(zip(encoded, rows)):
                feature["label"] = row["label"]
                feature["index"] = index
            return encoded

        return self.cached(split, build)

    def _mixed_train_features(self) -> list[Feature]:
        """The labelled rows (`gold_repeat` times each, `gold` True) then the transfer inputs (`gold` False, a
        placeholder label the loss never reads); one pool that the training loader shuffles."""
        gold = [{**feature, "gold": True} for feature in self._labelled_features("train")]
        inputs = self.transfer.inputs
        pairs = [pair or "" for _, pair in inputs] if self.is_pair else None
        extra = tokenize(self.require_tokenizer(), [text for text, _ in inputs], pairs, int(self.cfg["max_length"]))
        placeholder = 0 if self.task == "classification" else 0.0
        for offset, feature in enumerate(extra):
            feature.update(label=placeholder, index=len(gold) + offset, gold=False)
        return gold * self.transfer.gold_repeat + extra

    def collator(self, split: str) -> PadCollator:
        label_dtype = torch.long if self.task == "classification" else torch.float32
        return PadCollator(self.require_tokenizer().pad_token_id, label_dtype)
