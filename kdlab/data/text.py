"""Text classification / regression DataModule (single sentences or sentence pairs)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

from kdlab.data.collate import PadCollator, tokenize
from kdlab.data.loading import Record, load_records
from kdlab.data.sampling import make_loader
from kdlab.errors import ConfigError, DataError

SPLITS = ("train", "validation", "test")


def split_columns(cfg: Mapping[str, Any], split: str) -> dict[str, Any]:
    """The column mapping for a split: `data.columns`, overridden by the split's own `columns`."""
    columns = dict(cfg.get("columns") or {})
    columns.update(dict((cfg.get(split) or {}).get("columns") or {}))
    return columns


def parse_label(record: Record, task: str, labels: list[str], scale: float | None) -> int | float:
    """The label of a record as a class index or a (scaled) float; DataError naming file:line if invalid."""
    raw = record.get("label")
    where = record["_where"]
    if raw is None:
        raise DataError(where, "missing label")
    if task == "classification":
        value = str(raw).strip()
        if value not in labels:
            raise DataError(where, f"label {_short(value)} is not in the label set {labels} (data.labels)")
        return labels.index(value)
    if isinstance(raw, bool):  # a JSON true/false is not a score (float(True) would be 1.0)
        raise DataError(where, f"score {raw!r} is not a number")
    try:
        score = float(raw)
    except OverflowError:  # a JSON integer too large for a float
        score = math.inf
    except (TypeError, ValueError):
        raise DataError(where, f"score {_short(raw)} is not a number") from None
    if not math.isfinite(score):
        raise DataError(where, f"score {_short(raw)} is not finite")
    return score / scale if scale else score


def _short(value: Any, limit: int = 60) -> str:
    """repr(value), cut to `limit` characters, for error messages about huge fields."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def parse_text(record: Record, role: str) -> str:
    """The text in a record's `role` column; DataError naming file:line when empty, missing, not a string or not valid Unicode."""
    value = record.get(role)
    if value is None or not str(value).strip():
        raise DataError(record["_where"], f"empty {role}")
    if not isinstance(value, str):  # a jsonl number, NaN, list, ... is not a sentence
        raise DataError(record["_where"], f"{role} must be a string, got {type(value).__name__} {_short(value)}")
    text = value
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as err:  # a JSON "\ud800": the tokenizer would fail on it with a TypeError
        raise DataError(record["_where"], f"{role} is not valid Unicode ({err.reason} {text[err.start]!r} at character {err.start})") from None
    return text


class TextDataModule(pl.LightningDataModule):
    """Labelled single sentences or sentence pairs, tokenised once and padded per batch."""

    def __init__(self, cfg: Mapping[str, Any], tokenizer: Any = None):
        super().__init__()
        self.cfg = cfg
        self.task = cfg["task"]
        if self.task not in ("classification", "regression"):
            raise ConfigError("data.task", f"must be classification or regression, got {self.task!r}")
        self.labels = [str(label) for label in (cfg.get("labels") or [])]
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
            source = self.cfg.get(split)
            if source is None:
                raise ConfigError(f"data.{split}", "no source configured for this split")
            rows = load_records(source, split_columns(self.cfg, split))
            parsed = []
            for row in rows:
                item = {"text": parse_text(row, "text"), "_where": row["_where"]}
                if self.is_pair:
                    item["text_pair"] = parse_text(row, "text_pair")
                item["label"] = parse_label(row, self.task, self.labels, self.cfg.get("label_scale"))
                parsed.append(item)
            self._records[split] = parsed
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
        return make_loader(features, int(batch_size), shuffle, collate, int(self.cfg.get("num_workers", 0)),
                           lengths, self.trainer)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("validation", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)
