"""Length-grouped batching: batches of similar lengths, so dynamic padding pads little.

Each epoch: shuffle all examples, cut them into mega-batches of `batch_size · mega_batches`
examples, sort each mega-batch by length, slice it into batches, and shuffle the batch order. The
randomness stays (every batch is drawn from a random mega-batch) while padding mostly disappears.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch.utils.data import DataLoader, Sampler

from kdlab.errors import ConfigError


class LengthGroupedBatchSampler(Sampler[list[int]]):
    """Yields lists of example indices; a new grouping every epoch (torch's global RNG, so seeded runs repeat)."""

    def __init__(self, lengths: Sequence[int], batch_size: int, mega_batches: int = 50, drop_last: bool = False):
        super().__init__()
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.lengths = list(lengths)
        self.batch_size = batch_size
        self.mega = max(1, mega_batches) * batch_size
        self.drop_last = drop_last

    def __len__(self) -> int:
        full, rest = divmod(len(self.lengths), self.batch_size)
        return full if self.drop_last or rest == 0 else full + 1

    def __iter__(self) -> Iterator[list[int]]:
        order = torch.randperm(len(self.lengths)).tolist()
        batches: list[list[int]] = []
        for start in range(0, len(order), self.mega):
            chunk = sorted(order[start : start + self.mega], key=lambda i: self.lengths[i], reverse=True)
            batches += [chunk[i : i + self.batch_size] for i in range(0, len(chunk), self.batch_size)]
        if self.drop_last:
            batches = [b for b in batches if len(b) == self.batch_size]
        for position in torch.randperm(len(batches)).tolist():
            yield batches[position]


def make_loader(
    features: Sequence[Any], batch_size: int, shuffle: bool, collate_fn: Any, num_workers: int = 0,
    group_lengths: Sequence[int] | None = None, world_size: int = 1,
) -> DataLoader:
    """The DataLoader every DataModule uses: shuffled or not, length-grouped when `group_lengths` is given."""
    if shuffle and group_lengths is not None:
        if world_size > 1:
            raise ConfigError("data.group_by_length", "is not supported with several processes yet; set data.group_by_length=false")
        sampler = LengthGroupedBatchSampler(group_lengths, batch_size)
        return DataLoader(features, batch_sampler=sampler, num_workers=num_workers, collate_fn=collate_fn)
    return DataLoader(features, batch_size=batch_size, shuffle=shuffle, num_workers=num_workers, collate_fn=collate_fn)
