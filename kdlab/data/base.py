"""What every kdlab DataModule shares: its config, the tokenizer guard, the features cache, the splits, the batch
sizes (`batch_size` for training, `eval_batch_size` for evaluation, read from the config) and the loader.

A DataModule subclasses `KDDataModule`, says how a split's examples are tokenised (`features`) and collated
(`collator`), and gets `setup`, the three loaders and the batch sizes from here; every loader is built by
`kdlab.data.sampling.make_loader`, so training batches are seeded, sharded across processes and resumable
whatever the data.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any

import pytorch_lightning as pl
from omegaconf import OmegaConf
from torch.utils.data import DataLoader

from kdlab.data.records import SPLITS
from kdlab.data.sampling import make_loader
from kdlab.errors import ConfigError

Feature = dict[str, Any]
STAGE_SPLITS = {"fit": ("train", "validation"), "validate": ("validation",), "test": ("test",)}
BATCH_KEYS = {"train": "batch_size", "validation": "eval_batch_size", "test": "eval_batch_size"}


def plain(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """A plain dict from an OmegaConf node or a mapping (resolved, so a DataModule never sees interpolations)."""
    return OmegaConf.to_container(cfg, resolve=True) if OmegaConf.is_config(cfg) else dict(cfg)


class FeatureCache:
    """Tokenised examples computed once per (tokenizer, key): a new tokenizer gets its own features, never stale ones."""

    def __init__(self) -> None:
        self._store: dict[tuple[int, Hashable], tuple[Any, list[Feature]]] = {}

    def get(self, tokenizer: Any, key: Hashable, build: Callable[[], list[Feature]]) -> list[Feature]:
        """The features under `key` for `tokenizer`, built by `build()` the first time."""
        slot = (id(tokenizer), key)
        if slot not in self._store:
            self._store[slot] = (tokenizer, build())  # holding the tokenizer keeps its id unique
        return self._store[slot][1]


class KDDataModule(pl.LightningDataModule):
    """Base of kdlab's DataModules: config, tokenizer guard, features cache, splits, batch sizes and loaders.

    `key` is where the config sits (`data`, or `data.tasks.<name>` for a task of a mixture); errors about a
    missing batch size name `<key>.batch_size` / `<key>.eval_batch_size`.
    """

    SPLITS: tuple[str, ...] = SPLITS

    def __init__(
        self, cfg: Mapping[str, Any], tokenizer: Any = None, key: str = "data", cache: FeatureCache | None = None
    ):
        super().__init__()
        self.cfg = plain(cfg)
        self.key = key
        self.cache = cache if cache is not None else FeatureCache()
        self.tokenizer = tokenizer

    def require_tokenizer(self) -> Any:
        """The tokenizer; RuntimeError when none was given (tokenising needs one)."""
        if self.tokenizer is None:
            raise RuntimeError(f"{type(self).__name__} needs a tokenizer before setup (pass tokenizer=...)")
        return self.tokenizer

    def cached(self, key: Hashable, build: Callable[[], list[Feature]]) -> list[Feature]:
        """Features under `key` for the current tokenizer, built once."""
        return self.cache.get(self.require_tokenizer(), key, build)

    def has_split(self, split: str) -> bool:
        """Whether a source is configured for the split (`test: null` = no labelled test set)."""
        return split in self.SPLITS and self.cfg.get(split) is not None

    def stage_splits(self, stage: str | None) -> tuple[str, ...]:
        """The configured splits a Lightning stage reads (every configured split for an unknown stage)."""
        return tuple(split for split in STAGE_SPLITS.get(stage, self.SPLITS) if self.has_split(split))

    def batch_size(self, split: str) -> int:
        """`batch_size` for training, `eval_batch_size` for evaluation, from the config; ConfigError when it is unset."""
        name = BATCH_KEYS[split]
        value = self.cfg.get(name)
        if value is None:
            raise ConfigError(f"{self.key}.{name}", "is required (examples per batch)")
        return int(value)

    def features(self, split: str) -> list[Feature]:
        """The tokenised examples of a split."""
        raise NotImplementedError

    def collator(self, split: str) -> Any:
        """The collate function of a split's batches."""
        raise NotImplementedError

    def group_length(self, feature: Feature) -> int | tuple[int, int]:
        """The length (or pair of lengths) `data.group_by_length` groups training batches by."""
        return len(feature["input_ids"])

    def loader(self, split: str, features: Sequence[Feature] | None = None, collate: Any = None) -> DataLoader:
        """A split's DataLoader (kdlab.data.sampling.make_loader): seeded shuffled batches for `train`, in order otherwise.

        `features` and `collate` default to this module's own (`features(split)`, `collator(split)`).
        """
        features = self.features(split) if features is None else features
        training = split == "train"
        lengths = [self.group_length(f) for f in features] if training and self.cfg.get("group_by_length") else None
        return make_loader(
            features,
            self.batch_size(split),
            training,
            self.collator(split) if collate is None else collate,
            int(self.cfg.get("num_workers") or 0),
            lengths,
            self.trainer,
        )

    def setup(self, stage: str | None = None) -> None:
        for split in self.stage_splits(stage):
            self.features(split)

    def train_dataloader(self) -> DataLoader:
        return self.loader("train")

    def val_dataloader(self) -> DataLoader:
        return self.loader("validation")

    def test_dataloader(self) -> DataLoader:
        return self.loader("test")
