"""The multi-task mixture (BAM): one `TextDataModule` per task, every training batch from one task.

Config (``data``)::

    tasks:                  # each entry is a single-task data config (kdlab/data/text.py) with a unique `name`
      - {name: rte, task: classification, labels: [...], columns: {...}, train: ..., validation: ..., test: ..., metrics: [...]}
      - {name: stsb, task: regression, label_scale: 5.0, columns: {text: ..., text_pair: ..., label: ...}, ...}
    sampling_exponent: 0.75 # a: task t is drawn with probability |D_t|^a / sum_s |D_s|^a (1 proportional, 0 uniform)
    seed: 0                 # the task draws and the order within each task, per epoch
    max_length / batch_size / eval_batch_size / num_workers   # defaults for tasks that do not set their own
    mixing: batch           # batch | example (set by bam's method.mixing, below)
    dataset_multiples: false
    tasks[i].both_orders    # true: the task's training pairs also enter swapped (bam's method.both_orders)
    tasks[i].transfer       # the task's transfer set (kdlab/data/transfer.py; built by bam's pipeline and passed in)

A task with a transfer set trains on its labelled rows (`gold_repeat` times) and its transfer rows (`gold` False in
the batch); its size in the mix, |D_t| below, counts both (`transfer.mix_size: all`) or the labelled rows only
(`gold`: with one-task batches the draws and the epoch's length are those of the run without it, the task's batches
drawn from all its rows; with mixed batches every row enters the pool and the loss weights keep the task's share of
the loss ∝ |D_t|^a). Without transfer sets every formula below is the one of the labelled rows, computed as before.

`mixing: batch` (kdlab): an epoch has as many batches as one pass over every task (sum_t ceil(|D_t| / B_t));
each batch's task is drawn independently, and each task serves its examples from a fresh shuffle, cycling when
it is drawn more often than it has examples (small tasks oversampled, big ones undersampled); every example's
loss weight is 1. `mixing: example` (google-research bam/, data/preprocessing.py and data/task_weighting.py):
every task's training examples, small ones `dataset_multiples` times, shuffled together each epoch and cut into
batches of `batch_size`, so a batch mixes tasks; task t's examples carry the loss weight w_t that makes its share
of the loss ∝ |D_t|^a (`loss_weights`). `epoch_mix(epoch)` gives the number of batches (mixing: batch) or
examples (mixing: example) per task of an epoch. Every example carries `content_id`, the 16-byte digest of its
text (and pair), so teacher predictions attach to it whatever the order or sampling.
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
from kdlab.data.loading import Record
from kdlab.data.processes import process_rank, process_share
from kdlab.data.sampling import ResumableLoader, ShardedBatchSampler
from kdlab.data.task_list import MIXINGS, check_exponent, mix_size, task_configs
from kdlab.data.text import TextDataModule
from kdlab.data.transfer import TransferSet
from kdlab.errors import ConfigError


def sampling_probabilities(sizes: Sequence[int], exponent: float) -> list[float]:
    """p_t = |D_t|^a / sum_s |D_s|^a."""
    exponent = check_exponent(exponent)
    weights = [float(size) ** exponent for size in sizes]
    return [weight / sum(weights) for weight in weights]


def dataset_multiples(sizes: Sequence[int], exponent: float) -> list[int]:
    """Copies of each training set in the pool (BAM's task_weighting.py): round((|D_max| / |D_t|)^(1 − a)), the
    largest set once. BAM anchors on MNLI (392,702, the largest GLUE set) with GLUE's full sizes written into its
    code; here the anchor is the largest set of the run, with the run's own sizes."""
    exponent = check_exponent(exponent)
    weights = [float(size) ** exponent for size in sizes]
    anchor = max(range(len(sizes)), key=lambda t: sizes[t])
    targets = [weight * sizes[anchor] / weights[anchor] for weight in weights]  # |D_t|^a · |D_max|^(1 − a)
    return [max(1, round((target + 0.01) / size)) for target, size in zip(targets, sizes)]


def loss_weights(
    sizes: Sequence[int], exponent: float, multiples: Sequence[int] | None, served: Sequence[int] | None = None
) -> list[float]:
    """Each task's per-example loss weight with mixed batches (BAM's task_weighting.py): with multiples, w_t ∝
    |D_t|^a / (m_t · |D_t|) scaled to mean 1 over the tasks; without, w_t ∝ |D_t|^(a − 1) scaled to mean 1 over
    the examples. Either way task t's share of the loss, m_t · |D_t| · w_t, is ∝ |D_t|^a. `served`: the rows each
    task puts in the pool when they differ from the counted sizes (`transfer.mix_size: gold`): n_t in place of
    |D_t| in the denominators, so the share m_t · n_t · w_t stays ∝ |D_t|^a."""
    exponent = check_exponent(exponent)
    served = sizes if served is None else served
    if multiples is not None:
        raw = [float(size) ** exponent / (rows * multiple) for size, rows, multiple in zip(sizes, served, multiples)]
        return [len(raw) * value / sum(raw) for value in raw]
    raw = [1.0 / float(size) ** (1.0 - exponent) * (size / rows) for size, rows in zip(sizes, served)]
    expected = sum(value * rows for value, rows in zip(raw, served)) / sum(served)
    return [value / expected for value in raw]


class ExampleBatchSampler(ShardedBatchSampler):
    """Batches of global example indices with the tasks mixed: the pool (task t's examples `multiples[t]` times)
    shuffled afresh each epoch (seeded per (seed, epoch)) and cut into batches of `batch_size`, the last one partial
    (BAM pads it with examples whose loss is 0)."""

    def __init__(
        self,
        sizes: Sequence[int],
        batch_size: int,
        multiples: Sequence[int],
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ):
        super().__init__(rank, world_size)
        self.sizes = [int(size) for size in sizes]
        self.multiples = [int(m) for m in multiples]
        self.batch_size = int(batch_size)
        process_share(self.batch_size, self.world_size, "data.batch_size")
        self.offsets = [sum(self.sizes[:t]) for t in range(len(self.sizes))]
        self.pool = [
            offset + i
            for offset, size, multiple in zip(self.offsets, self.sizes, self.multiples)
            for _ in range(multiple)
            for i in range(size)
        ]
        self.seed = int(seed)

    def global_batches(self, epoch: int) -> list[list[int]]:
        order = random.Random(f"kdlab-multitask-examples:{self.seed}:{epoch}").sample(self.pool, len(self.pool))
        return [order[start : start + self.batch_size] for start in range(0, len(order), self.batch_size)]

    def mix(self, epoch: int) -> list[int]:
        """Number of examples per task in an epoch (the same every epoch)."""
        return [size * multiple for size, multiple in zip(self.sizes, self.multiples)]


class BothOrdersDataModule(TextDataModule):
    """A sentence-pair task whose training split also holds every pair swapped (after all the pairs in file order),
    as BAM trains MRPC and STS-B (classification_tasks.py, `double_unordered`); validation and test stay as given."""

    def records(self, split: str) -> list[Record]:
        rows = super().records(split)
        if split != "train":
            return rows
        key = ("both_orders", id(rows))
        if key not in self._records:
            swapped = [{**row, "text": row["text_pair"], "text_pair": row["text"]} for row in rows]
            self._records[key] = rows + swapped  # type: ignore[index] - a private entry beside the splits
        return self._records[key]  # type: ignore[index]


def task_module(cfg: Mapping[str, Any], tokenizer: Any = None, key: str = "data") -> TextDataModule:
    """One task's DataModule: with `both_orders: true` its training pairs also enter swapped."""
    if not cfg.get("both_orders"):
        return TextDataModule(cfg, tokenizer=tokenizer, key=key)
    if cfg["columns"].get("text_pair") is None:
        raise ConfigError(f"{key}.both_orders", "needs sentence pairs (columns.text_pair), the task has single texts")
    return BothOrdersDataModule(cfg, tokenizer=tokenizer, key=key)


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
        counted: Sequence[int] | None = None,
    ):
        super().__init__(rank, world_size)
        self.sizes = [int(size) for size in sizes]
        # |D_t| of the mix (the epoch's length, the draws); `sizes` are the rows each task's batches come from
        self.counted = self.sizes if counted is None else [int(size) for size in counted]
        self.batch_sizes = [max(1, min(int(b), size)) for b, size in zip(batch_sizes, self.sizes)]
        for t, batch in enumerate(self.batch_sizes):
            process_share(batch, self.world_size, f"data.tasks.{names[t] if names else t}.batch_size")
        self.probabilities = sampling_probabilities(self.counted, exponent)
        self.offsets = [sum(self.sizes[:t]) for t in range(len(self.sizes))]
        self.seed = int(seed)

    def __len__(self) -> int:
        return sum(math.ceil(size / batch) for size, batch in zip(self.counted, self.batch_sizes))

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


class MixedTaskCollator:
    """Pads a batch that mixes tasks: labels as float32 (a class index is cast back by the loss), plus `task` [B] and
    `content_id` [B, 16] (uint8)."""

    def __init__(self, pad_token_id: int):
        self.collator = PadCollator(pad_token_id, torch.float32)

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        batch = self.collator(features)
        batch["task"] = torch.tensor([f["task"] for f in features], dtype=torch.long)
        batch["content_id"] = torch.tensor([list(f["content_id"]) for f in features], dtype=torch.uint8)
        return batch


class MultiTaskDataModule(KDDataModule):
    """A mixture of single-task DataModules: one-task training batches drawn ∝ |D_t|^a (mixing: batch) or batches
    that mix tasks (mixing: example); one eval loader per task."""

    def __init__(
        self, cfg: Mapping[str, Any], tokenizer: Any = None, transfer: Mapping[str, TransferSet] | None = None
    ):
        """`transfer`: task name -> its transfer set (kdlab/data/transfer.py), trained on with the task's rows."""
        configs = task_configs(cfg)
        self.task_modules = {
            c["name"]: task_module(c, tokenizer=tokenizer, key=f"data.tasks.{c['name']}") for c in configs
        }
        self.transfer = dict(transfer or {})
        for name, transfer_set in self.transfer.items():
            self.task_modules[name].use_transfer(transfer_set)
        self.mix_sizes = {
            c["name"]: mix_size(c.get("transfer"), f"data.tasks[{i}].transfer.mix_size")
            if c["name"] in self.transfer
            else None
            for i, c in enumerate(configs)
        }
        super().__init__(cfg, tokenizer)
        self.exponent = check_exponent(self.cfg.get("sampling_exponent", 0.75))
        self.seed = int(self.cfg.get("seed", 0))
        self.mixing = str(self.cfg.get("mixing", "batch"))
        if self.mixing not in MIXINGS:
            raise ConfigError("method.mixing", f"must be one of {list(MIXINGS)}, got {self.mixing!r}")
        self.multiples = bool(self.cfg.get("dataset_multiples", False))
        self.names = list(self.task_modules)
        self._sampler: TaskBatchSampler | ExampleBatchSampler | None = None

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
        """A task's tokenised examples with their `task` index, `index` (row in the split) and `content_id`; with
        transfer sets, the training examples also carry `gold` (False on transfer rows)."""
        module = self.task_modules[name]
        task = self.names.index(name)
        if split == "train" and self.transfer:

            def build() -> list[Feature]:
                ids = [content_id(*item) for item in module.train_inputs()]  # labelled, then transfer rows: `index`
                return [
                    {"gold": True, **f, "task": task, "content_id": ids[f["index"]]} for f in module.features(split)
                ]

            return self.cached((name, split), build)
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

    def labelled(self, name: str) -> int:
        """A task's number of labelled training examples (swapped pairs included)."""
        return len(self.task_modules[name].records("train"))

    def sizes(self) -> list[int]:
        """Each task's number of training examples: its labelled rows (swapped pairs included), and with a transfer
        set those `gold_repeat` times plus its transfer rows."""
        out = []
        for name in self.names:
            transfer = self.transfer.get(name)
            rows = self.labelled(name)
            out.append(rows if transfer is None else rows * transfer.gold_repeat + len(transfer.inputs))
        return out

    def counted_sizes(self) -> list[int]:
        """Each task's |D_t| in the mix: `sizes`, or its labelled rows where `transfer.mix_size` is gold."""
        return [
            self.labelled(name) if self.mix_sizes[name] == "gold" else size
            for name, size in zip(self.names, self.sizes())
        ]

    def size_record(self) -> dict[str, dict[str, Any]]:
        """Per task (for mix.json): labelled rows, transfer rows, gold_repeat, rows per epoch's pool, |D_t| counted."""
        return {
            name: {
                "labelled": self.labelled(name),
                "transfer": len(self.transfer[name].inputs) if name in self.transfer else 0,
                "gold_repeat": self.transfer[name].gold_repeat if name in self.transfer else 1,
                "rows": rows,
                "mix_size": self.mix_sizes[name],
                "counted": counted,
            }
            for name, rows, counted in zip(self.names, self.sizes(), self.counted_sizes())
        }

    def multiples_of_tasks(self) -> list[int]:
        """Copies of each task's training set in a mixed pool (1 each without `dataset_multiples`)."""
        if self.mixing == "example" and self.multiples:
            return dataset_multiples(self.counted_sizes(), self.exponent)
        return [1] * len(self.names)

    @property
    def sampler(self) -> TaskBatchSampler | ExampleBatchSampler:
        """The training batch sampler (sizes from the training splits)."""
        rank, world_size = process_rank(self.trainer)
        if self._sampler is None or (self._sampler.rank, self._sampler.world_size) != (rank, world_size):
            sizes = self.sizes()
            if self.mixing == "example":
                batch = int(self.cfg["batch_size"])
                multiples = self.multiples_of_tasks()
                self._sampler = ExampleBatchSampler(sizes, batch, multiples, self.seed, rank, world_size)
            else:
                batch_sizes = [self.task_modules[name].batch_size("train") for name in self.names]
                self._sampler = TaskBatchSampler(
                    sizes, batch_sizes, self.exponent, self.seed, rank, world_size, self.names, self.counted_sizes()
                )
        return self._sampler

    def probabilities(self) -> dict[str, float]:
        """Each task's share of the training draws: of the batches (mixing: batch), of the examples (example)."""
        if self.mixing == "example":
            counts = self.sampler.mix(0)
            return {name: count / sum(counts) for name, count in zip(self.names, counts)}
        return dict(zip(self.names, self.sampler.probabilities))

    def loss_weights(self) -> dict[str, float]:
        """Each task's per-example loss weight: 1 with one-task batches, BAM's w_t with mixed ones (`loss_weights`)."""
        if self.mixing == "batch":
            return {name: 1.0 for name in self.names}
        multiples = self.multiples_of_tasks() if self.multiples else None
        served = self.sizes() if self.transfer else None
        return dict(zip(self.names, loss_weights(self.counted_sizes(), self.exponent, multiples, served)))

    def epoch_mix(self, epoch: int) -> dict[str, int]:
        """Training batches (mixing: batch) or examples (mixing: example) per task in an epoch, for logging."""
        return dict(zip(self.names, self.sampler.mix(epoch)))

    def collator(self, split: str) -> TaskCollator | MixedTaskCollator:
        if split == "train" and self.mixing == "example":
            return MixedTaskCollator(self.require_tokenizer().pad_token_id)
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
