"""Training batches: one seeded order per epoch, cut into global batches, each split across the processes.

Every training loader in kdlab draws its batches here, so one process and N data-parallel processes see the
same data in the same order: the order of an epoch depends only on (seed, epoch) — the seed is
`torch.initial_seed()` when the loader is built, i.e. the run's `seed` after `pl.seed_everything` — and is cut
into global batches of `data.batch_size`; with N processes, process r trains on examples r, r+N, r+2N, ... of
each global batch, so per-process batch = global ÷ N (a global batch size that does not divide is a
ConfigError). DDP averages the N gradients, which for equal shares is the gradient of the global batch.

Plain shuffle: the global batches are consecutive slices of a permutation.

Length-grouped batching (`data.group_by_length`): batches of similar lengths, so dynamic padding pads
little. Shuffle all examples, cut them into mega-batches of `batch_size · mega_batches` examples, sort each
mega-batch by length, slice it into batches, and shuffle the batch order. The randomness stays (every batch
is drawn from a random mega-batch) while padding mostly disappears. Examples with two sides padded
separately (a source and its translation) give a pair of lengths (first, second): a mega-batch is sorted by
the first, cut into runs of `sub_batches` batches, and each run sorted by the second before slicing, so both
sides of a batch have similar lengths. On 1,024 en-de WMT pairs under MiniLM's tokenizer this pads 9.5 %
fewer tokens (real/padded 0.906) than grouping by the longer side (0.817).

Lightning calls `set_epoch` on a loader's `batch_sampler.sampler` before each epoch; a sampler here is its
own `sampler`. Iterated without Lightning, each pass moves to the next epoch by itself.

Resume: the `TrainPosition` callback writes where training is — (epoch, batches trained in it) — into each
checkpoint, and the `ResumableLoader` of a resumed run starts there: a run resumed from a checkpoint written
mid-epoch (`trainer.val_check_interval` < 1, `every_n_train_steps`) trains the rest of that epoch's batches, as
the uninterrupted run did, instead of the whole epoch again. (Lightning's own loader-state mechanism restores a
loader only if it is built after the training state is restored; kdlab's optimizers ask for the number of
steps, which builds it before.)
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from typing import Any

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Sampler

from kdlab.data.processes import process_rank, process_share


def epoch_generator(seed: int, epoch: int, salt: str = "") -> torch.Generator:
    """A torch RNG that depends only on (seed, epoch, salt): the same in every process."""
    digest = hashlib.sha256(f"kdlab:{salt}:{seed}:{epoch}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") & (2**63 - 1))


class ShardedBatchSampler(Sampler[list[int]]):
    """Yields this process's share (batch[rank::world_size]) of each global batch of an epoch.

    Subclasses define `global_batches(epoch)`. With several processes, a global batch smaller than the
    number of processes (only ever the last, partial one) is left out, so no process gets an empty batch.
    """

    def __init__(self, rank: int = 0, world_size: int = 1):
        super().__init__()
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is outside 0..{world_size - 1}")
        self.rank, self.world_size = int(rank), int(world_size)
        self.epoch = 0
        self.sampler = self  # where Lightning looks for set_epoch (DataLoader.batch_sampler.sampler)
        self._skip = 0  # batches of the next pass already trained (a run resumed mid-epoch)

    def global_batches(self, epoch: int) -> list[list[int]]:
        raise NotImplementedError

    def set_epoch(self, epoch: int) -> None:
        """Lightning calls this before each epoch; the epoch picks the order."""
        self.epoch = int(epoch)

    def _shares(self, epoch: int) -> list[list[int]]:
        batches = self.global_batches(epoch)
        if self.world_size == 1:
            return batches
        return [batch[self.rank :: self.world_size] for batch in batches if len(batch) >= self.world_size]

    def __len__(self) -> int:
        return len(self._shares(self.epoch))

    def resume_at(self, epoch: int, batches: int) -> bool:
        """Make the next pass continue `epoch` after its first `batches` batches (the next epoch when that was all of
        it); True when that is mid-epoch."""
        self.set_epoch(epoch)
        if batches >= len(self):
            self.set_epoch(epoch + 1)
            batches = 0
        self._skip = int(batches)
        return self._skip > 0

    def __iter__(self) -> Iterator[list[int]]:
        epoch, skip = self.epoch, self._skip
        self.epoch += 1  # plain loops without set_epoch still see a new order each pass
        self._skip = 0
        yield from self._shares(epoch)[skip:]


class TrainPosition(pl.Callback):
    """Saves (epoch, batches trained in it) with each checkpoint; a resumed run's ResumableLoader continues there."""

    def __init__(self) -> None:
        self.trainer: Any = None
        self.pending: tuple[int, int] | None = None

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self.trainer = trainer

    def state_dict(self) -> dict[str, int]:
        if self.trainer is None:
            return {}
        return {
            "epoch": int(self.trainer.current_epoch),
            "batches": int(self.trainer.fit_loop.epoch_loop.batch_progress.current.processed),
        }

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.pending = (int(state["epoch"]), int(state["batches"])) if state else None

    def take(self) -> tuple[int, int] | None:
        """The restored position, once (the loader of the resumed stage starts from it)."""
        pending, self.pending = self.pending, None
        return pending


class ResumableLoader(DataLoader):
    """A training DataLoader over a ShardedBatchSampler that starts where a resumed run's checkpoint left off
    (`TrainPosition`, found among the trainer's callbacks)."""

    def __init__(self, *args: Any, trainer: Any = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.progress_trainer = trainer

    def _restored_position(self) -> tuple[int, int] | None:
        for callback in getattr(self.progress_trainer, "callbacks", None) or []:
            if isinstance(callback, TrainPosition):
                return callback.take()
        return None

    def __iter__(self) -> Any:
        position = self._restored_position()
        if position is None or not self.batch_sampler.resume_at(*position):
            return super().__iter__()
        # a new iterator draws a seed from the global RNG; the run being continued drew it at the start of the
        # epoch, before its checkpoint (whose RNG states kdlab.resume.RNGStates restored): leave the RNG as it was
        state = torch.get_rng_state()
        try:
            return super().__iter__()
        finally:
            torch.set_rng_state(state)

    def state_dict(self) -> dict[str, int]:
        """Empty: the position travels in TrainPosition's state, which Lightning restores before it builds this
        loader (being stateful tells Lightning this loader resumes mid-epoch, so it does not warn that it cannot)."""
        return {}

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Nothing to load (`state_dict`)."""


class ShuffledBatchSampler(ShardedBatchSampler):
    """Global batches of `batch_size` from a seeded permutation per epoch (the last one may be smaller)."""

    def __init__(self, size: int, batch_size: int, seed: int | None = None, rank: int = 0, world_size: int = 1):
        super().__init__(rank, world_size)
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.size, self.batch_size = int(size), int(batch_size)
        process_share(self.batch_size, self.world_size)
        self.seed = torch.initial_seed() if seed is None else int(seed)

    def global_batches(self, epoch: int) -> list[list[int]]:
        order = torch.randperm(self.size, generator=epoch_generator(self.seed, epoch)).tolist()
        return [order[i : i + self.batch_size] for i in range(0, self.size, self.batch_size)]


class LengthGroupedBatchSampler(ShardedBatchSampler):
    """Global batches of similar lengths (module docstring), a new grouping every epoch."""

    def __init__(
        self,
        lengths: Sequence[int] | Sequence[tuple[int, int]],
        batch_size: int,
        mega_batches: int = 50,
        drop_last: bool = False,
        sub_batches: int = 4,
        seed: int | None = None,
        rank: int = 0,
        world_size: int = 1,
    ):
        super().__init__(rank, world_size)
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.lengths = list(lengths)
        self.batch_size = batch_size
        process_share(batch_size, self.world_size)
        self.mega = max(1, mega_batches) * batch_size
        self.run = max(1, sub_batches) * batch_size
        self.drop_last = drop_last
        self.seed = torch.initial_seed() if seed is None else int(seed)

    def _sorted(self, chunk: list[int]) -> list[int]:
        """A mega-batch in batch order: by length, or for (first, second) lengths by first then, per run of batches, by second."""
        if not self.lengths or not isinstance(self.lengths[0], (tuple, list)):
            return sorted(chunk, key=lambda i: self.lengths[i], reverse=True)
        chunk = sorted(chunk, key=lambda i: self.lengths[i][0], reverse=True)
        runs = [
            sorted(chunk[s : s + self.run], key=lambda i: self.lengths[i][1], reverse=True)
            for s in range(0, len(chunk), self.run)
        ]
        return [i for run in runs for i in run]

    def global_batches(self, epoch: int) -> list[list[int]]:
        generator = epoch_generator(self.seed, epoch)
        order = torch.randperm(len(self.lengths), generator=generator).tolist()
        batches: list[list[int]] = []
        for start in range(0, len(order), self.mega):
            chunk = self._sorted(order[start : start + self.mega])
            batches += [chunk[i : i + self.batch_size] for i in range(0, len(chunk), self.batch_size)]
        if self.drop_last:
            batches = [b for b in batches if len(b) == self.batch_size]
        return [batches[position] for position in torch.randperm(len(batches), generator=generator).tolist()]


def make_loader(
    features: Sequence[Any],
    batch_size: int,
    shuffle: bool,
    collate_fn: Any,
    num_workers: int = 0,
    group_lengths: Sequence[int] | Sequence[tuple[int, int]] | None = None,
    trainer: Any = None,
) -> DataLoader:
    """The DataLoader every DataModule uses.

    Training (`shuffle`): this process's share of seeded global batches, length-grouped when `group_lengths`
    is given. Evaluation: every example in order, in every process (kdlab's evaluators then see the whole
    split, so their figures do not depend on the number of processes).
    """
    if not shuffle:
        return DataLoader(
            features, batch_size=batch_size, shuffle=False, num_workers=num_workers, collate_fn=collate_fn
        )
    rank, world_size = process_rank(trainer)
    if group_lengths is not None:
        sampler: ShardedBatchSampler = LengthGroupedBatchSampler(
            group_lengths, batch_size, rank=rank, world_size=world_size
        )
    else:
        sampler = ShuffledBatchSampler(len(features), batch_size, rank=rank, world_size=world_size)
    return ResumableLoader(
        features, batch_sampler=sampler, num_workers=num_workers, collate_fn=collate_fn, trainer=trainer
    )
