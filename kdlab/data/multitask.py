"""The multi-task mixture (BAM): one `TextDataModule` per task, every training batch from one task.

Config (``data``)::

    tasks:                  # each entry is a single-task data config (kdlab/data/text.py) with a unique `name`
      - {name: rte, task: classification, labels: [...], columns: {...}, train: ..., validation: ..., test: ..., metrics: [...]}
      - {name: stsb, task: regression, label_scale: 5.0, columns: {text: ..., text_pair: ..., label: ...}, ...}
    sampling_exponent: 0.75 # a: task t is drawn with probability |D_t|^a / sum_s |D_s|^a (1 proportional, 0 uniform)
    seed: 0                 # the task draws and the order within each task, per epoch
    max_length / batch_size / eval_batch_size / num_workers   # defaults for tasks that do not set their own

An epoch has as many batches as one pass over every task (sum_t ceil(|D_t| / B_t)); each batch's task is
drawn independently, and each task serves its examples from a fresh shuffle, cycling when it is drawn more
often than it has examples (small tasks oversampled, big ones undersampled). `epoch_mix(epoch)` gives the
number of batches per task of an epoch. Every example carries `content_id`, the 16-byte digest of its text
(and pair), so teacher predictions attach to it whatever the order or sampling.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch.utils.data import DataLoader

from kdlab.data.base import Feature, KDDataModule
from kdlab.data.collate import PadCollator
from kdlab.data.identity import content_id
from kdlab.data.processes import process_rank, process_share
from kdlab.data.sampling import ResumableLoader, ShardedBatchSampler
from kdlab.data.task_list import check_exponent, task_configs
from kdlab.data.text import TextDataModule


def sampling_probabilities(sizes: Sequence[int], exponent: float) -> list[float]:
    """p_t = |D_t|^a / sum_s |D_s|^a."""
    exponent = check_exponent(exponent)
    weights = [float(size) ** exponent for size in sizes]
    return [weight / sum(weights) for weight in weights]


class TaskBatchSampler(ShardedBatchSampler):
    """Batches of global example indices, each from one task drawn ∝ |D_t|^a; seeded per (seed, epoch).

    With several processes each global batch is split across them (kdlab/data/sampling.py), so every
    process trains on the same task at the same step.
    """

    def __init__(
        self,
        sizes: Sequence[int],
        batch_sizes: Sequence[int],
        exponent: float,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        names: Sequence[str] | None = None,
    ):
        super().__init__(rank, world_size)
        self.sizes = [int(size) for size in sizes]
        self.batch_sizes = [max(1, min(int(b), size)) for b, size in zip(batch_sizes, self.sizes)]
        for t, batch in enumerate(self.batch_sizes):
            process_share(batch, self.world_size, f"data.tasks.{names[t] if names else t}.batch_size")
        self.probabilities = sampling_probabilities(self.sizes, exponent)
        self.offsets = [sum(self.sizes[:t]) for t in range(len(self.sizes))]
        self.seed = int(seed)

    def __len__(self) -> int:
        return sum(math.ceil(size / batch) for size, batch in zip(self.sizes, self.batch_sizes))

    def _rng(self, epoch: int) -> random.Random:
        return random.Random(f"kdlab-multitask:{self.seed}:{epoch}")

    def tasks(self, epoch: int, rng: random.Random | None = None) -> list[int]:
        """The task of each batch of an epoch, in order."""
        rng = rng or self._rng(epoch)
        return rng.choices(range(len(self.sizes)), weights=self.probabilities, k=len(self))

    def mix(self, epoch: int) -> list[int]:
        """Number of batches per task in an epoch."""
        counts = [0] * len(self.sizes)
        for task in self.tasks(epoch):
            counts[task] += 1
        return counts

    def plan(self, epoch: int) -> list[list[int]]:
        """The batches of an epoch as global indices (task t's example i is offsets[t] + i)."""
        rng = self._rng(epoch)
        streams: list[list[int]] = [[] for _ in self.sizes]
        batches = []
        for task in self.tasks(epoch, rng):
            size, batch = self.sizes[task], self.batch_sizes[task]
            if len(streams[task]) < batch:  # cycle: a fresh shuffle once the task's examples run out,
                fresh = rng.sample(range(size), size)  # led by examples the batch does not hold yet
                left = set(streams[task])
                head = [i for i in fresh if i not in left][: batch - len(left)]
                chosen = set(head)
                streams[task] += head + [i for i in fresh if i not in chosen]
            taken, streams[task] = streams[task][:batch], streams[task][batch:]
            batches.append([self.offsets[task] + i for i in taken])
        return batches

    def global_batches(self, epoch: int) -> list[list[int]]:
        return self.plan(epoch)


class TaskCollator:
    """Pads a one-task batch with that task's label dtype and adds `task` [B] and `content_id` [B, 16] (uint8)."""

    def __init__(self, pad_token_id: int, regression: Sequence[bool]):
        self.collators = [PadCollator(pad_token_id, torch.float32 if r else torch.long) for r in regression]

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        task = features[0]["task"]
        if any(f["task"] != task for f in features):
            raise ValueError(f"a multi-task batch mixes tasks {sorted({f['task'] for f in features})}")
        batch = self.collators[task](features)
        batch["task"] = torch.full((len(features),), task, dtype=torch.long)
        batch["content_id"] = torch.tensor([list(f["content_id"]) for f in features], dtype=torch.uint8)
        return batch


class MultiTaskDataModule(KDDataModule):
    """A mixture of single-task DataModules: one-task training batches drawn ∝ |D_t|^a, one eval loader per task."""

    def __init__(self, cfg: Mapping[str, Any], tokenizer: Any = None):
        self.task_modules = {
            c["name"]: TextDataModule(c, tokenizer=tokenizer, key=f"data.tasks.{c['name']}") for c in task_configs(cfg)
        }
        super().__init__(cfg, tokenizer)
        self.exponent = check_exponent(self.cfg.get("sampling_exponent", 0.75))
        self.seed = int(self.cfg.get("seed", 0))
        self.names = list(self.task_modules)
        self._sampler: TaskBatchSampler | None = None

    @property
    def tokenizer(self) -> Any:
        """The tokenizer every task tokenises with; setting it passes it on to each task's DataModule."""
        return self._tokenizer

    @tokenizer.setter
    def tokenizer(self, tokenizer: Any) -> None:
        self._tokenizer = tokenizer
        for module in self.task_modules.values():
            module.tokenizer = tokenizer

    def has_split(self, split: str) -> bool:
        """Whether any task has a source for the split (RTE and CoLA have no labelled GLUE test set)."""
        return any(module.has_split(split) for module in self.task_modules.values())

    def texts(self, split: str = "train") -> list[str]:
        """Every text of every task's split (both sides of pairs), e.g. to train a shared tokenizer on."""
        return [text for name in self.names for text in self.task_modules[name].texts(split)]

    def content_ids(self, name: str, split: str) -> list[bytes]:
        """The content id of every example of a task's split, in file order."""
        return [content_id(r["text"], r.get("text_pair")) for r in self.task_modules[name].records(split)]

    def features(self, name: str, split: str) -> list[Feature]:  # type: ignore[override] - features of one task
        """A task's tokenised examples with their `task` index, `index` (row in the split) and `content_id`."""
        module = self.task_modules[name]
        task = self.names.index(name)
        return self.cached(
            (name, split),
            lambda: [
                {**f, "task": task, "content_id": i}
                for f, i in zip(module.features(split), self.content_ids(name, split))
            ],
        )

    def setup(self, stage: str | None = None) -> None:
        for name in self.names:
            for split in self.task_modules[name].stage_splits(stage):
                self.features(name, split)

    @property
    def sampler(self) -> TaskBatchSampler:
        """The training batch sampler (sizes from the training splits)."""
        rank, world_size = process_rank(self.trainer)
        if self._sampler is None or (self._sampler.rank, self._sampler.world_size) != (rank, world_size):
            sizes = [len(self.task_modules[name].records("train")) for name in self.names]
            batch_sizes = [self.task_modules[name].batch_size("train") for name in self.names]
            self._sampler = TaskBatchSampler(sizes, batch_sizes, self.exponent, self.seed, rank, world_size, self.names)
        return self._sampler

    def probabilities(self) -> dict[str, float]:
        """Each task's probability of being drawn for a batch."""
        return dict(zip(self.names, self.sampler.probabilities))

    def epoch_mix(self, epoch: int) -> dict[str, int]:
        """Number of training batches per task in an epoch (the effective mix, for logging)."""
        return dict(zip(self.names, self.sampler.mix(epoch)))

    def collator(self, split: str) -> TaskCollator:
        return TaskCollator(
            self.require_tokenizer().pad_token_id, [self.task_modules[n].task == "regression" for n in self.names]
        )

    def train_dataloader(self) -> DataLoader:
        features = [f for name in self.names for f in self.features(name, "train")]
        return ResumableLoader(
            features,
            batch_sampler=self.sampler,
            collate_fn=self.collator("train"),
            num_workers=int(self.cfg.get("num_workers") or 0),
            trainer=self.trainer,
        )

    def _eval_loaders(self, split: str) -> list[DataLoader]:
        """One loader per task with the split, each with that task's `eval_batch_size` and `num_workers`."""
        collate = self.collator(split)
        return [
            self.task_modules[name].loader(split, self.features(name, split), collate)
            for name in self.names
            if self.task_modules[name].has_split(split)
        ]

    def val_dataloader(self) -> list[DataLoader]:
        return self._eval_loaders("validation")

    def test_dataloader(self) -> list[DataLoader]:
        return self._eval_loaders("test")
