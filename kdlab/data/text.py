"""Text classification / regression DataModule (single sentences or sentence pairs)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

from kdlab.data.collate import PadCollator, tokenize
from kdlab.data.loading import Record
from kdlab.data.records import SPLITS, parse_label, parse_text, split_columns, split_records, task_labels  # noqa: F401 - pairs.py, parallel.py import parse_* from here
from kdlab.data.sampling import make_loader
from kdlab.errors import ConfigError


class TextDataModule(pl.LightningDataModule):
    """Labelled single sentences or sentence pairs, tokenised once and padded per batch."""

    def __init__(self, cfg: Mapping[str, Any], tokenizer: Any = None):
        super().__init__()
        self.cfg = cfg
        self.task = cfg["task"]
        if self.task not in ("classification", "regression"):
            raise ConfigError("data.task", f"must be classification or regression, got {self.task!r}")
        self.labels = task_labels(cfg)
        if self.task == "classification" and len(self.labels) < 2:
            raise ConfigError("data.labels", f"a classification task needs at least 2 labels, got {self.labels}")
        self.tokenizer = tokenizer
        self._records: dict[str, list[Record]] = {}
        self._features: dict[str, list[dict[str, Any]]] = {}

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
            if self.cfg.get(split) is None:
                raise ConfigError(f"data.{split}", "no source configured for this split")
            self._records[split] = split_records(self.cfg, split)
        return self._records[split]

    def has_split(self, split: str) -> bool:
        """Whether a source is configured for the split (`test: null` = no labelled test set)."""
        return self.cfg.get(split) is not None

    def texts(self, split: str = "train") -> list[str]:
        """Every text of a split (both sides of pairs), e.g. to train a tokenizer on."""
        out = []
        for record in self.records(split):
            out.append(record["text"])
            if "text_pair" in record:
                out.append(record["text_pair"])
        return out

    def features(self, split: str) -> list[dict[str, Any]]:
        """Tokenised examples of a split, computed once."""
        if self.tokenizer is None:
            raise RuntimeError("TextDataModule needs a tokenizer before setup (pass tokenizer=...)")
        if split not in self._features:
            rows = self.records(split)
            pairs = [r["text_pair"] for r in rows] if self.is_pair else None
            encoded = tokenize(self.tokenizer, [r["text"] for r in rows], pairs, int(self.cfg["max_length"]))
            for index, (feature, row) in enumerate(zip(encoded, rows)):
                feature["label"] = row["label"]
                feature["index"] = index
            self._features[split] = encoded
        return self._features[split]

    def setup(self, stage: str | None = None) -> None:
        wanted = {"fit": ("train", "validation"), "validate": ("validation",), "test": ("test",)}
        for split in wanted.get(stage, SPLITS):
            if self.has_split(split):
                self.features(split)

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        batch_size = self.cfg["batch_size"] if split == "train" else self.cfg.get("eval_batch_size", 128)
        label_dtype = torch.long if self.task == "classification" else torch.float32
        features = self.features(split)
        lengths = [len(f["input_ids"]) for f in features] if shuffle and self.cfg.get("group_by_length") else None
        collate = PadCollator(self.tokenizer.pad_token_id, label_dtype)
        return make_loader(
            features, int(batch_size), shuffle, collate, int(self.cfg.get("num_workers", 0)), lengths, self.trainer
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("validation", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)
