"""The multi-task mixture: task draws ∝ |D_t|^a, one-task batches, content ids, eval loaders per task, bad configs."""

import hashlib
import random

import pytest
import torch

from kdlab.cache.teacher_outputs import content_id
from kdlab.data.multitask import MultiTaskDataModule, TaskBatchSampler, sampling_probabilities
from kdlab.errors import ConfigError

SIZES = [50, 200, 800]


def reviews_task(name="reviews", size=40, **overrides):
    cfg = {
        "name": name,
        "task": "classification",
        "labels": ["negative", "positive"],
        "columns": {"text": "text", "text_pair": None, "label": "label"},
        "train": {"embedded": "reviews", "split": "train", "size": size},
        "validation": {"embedded": "reviews", "split": "validation", "size": 12},
        "test": {"embedded": "reviews", "split": "test", "size": 10},
        "metrics": ["acc"],
    }
    cfg.update(overrides)
    return cfg


def sts_task(name="sts", size=24, **overrides):
    cfg = {
        "name": name,
        "task": "regression",
        "label_scale": 5.0,
        "columns": {"text": "sentence1", "text_pair": "sentence2", "label": "score"},
        "train": {"embedded": "sts_toy", "split": "train", "size": size},
        "validation": {"embedded": "sts_toy", "split": "validation", "size": 8},
        "test": {"embedded": "sts_toy", "split": "test", "size": 8},
        "metrics": ["pearson", "spearman"],
    }
    cfg.update(overrides)
    return cfg


def mixture(*tasks, **overrides):
    cfg = {
        "tasks": list(tasks),
        "sampling_exponent": 0.75,
        "seed": 0,
        "max_length": 32,
        "batch_size": 8,
        "eval_batch_size": 5,
    }
    cfg.update(overrides)
    return cfg


@pytest.mark.parametrize(
    "exponent,expected",
    [
        (1.0, [50 / 1050, 200 / 1050, 800 / 1050]),
        (0.0, [1 / 3, 1 / 3, 1 / 3]),
        # 50^0.75 = 18.803, 200^0.75 = 53.183, 800^0.75 = 150.424 (sum 222.410)
        (0.75, [0.084543, 0.239121, 0.676336]),
    ],
)
def test_drawn_task_frequencies_match_size_to_the_exponent(exponent, expected):
    assert sampling_probabilities(SIZES, exponent) == pytest.approx(expected, abs=1e-6)
    sampler = TaskBatchSampler(SIZES, [1, 1, 1], exponent, seed=3)
    assert len(sampler) == 1050  # one pass over every task
    counts = [0, 0, 0]
    for epoch in range(10):
        mix = sampler.mix(epoch)
        assert sum(mix) == 1050
        counts = [c + m for c, m in zip(counts, mix)]
    frequencies = [c / 10_500 for c in counts]
    assert frequencies == pytest.approx(expected, abs=0.015)  # ~3 standard errors of 10 500 draws


def test_batches_hold_one_task_follow_the_mix_and_repeat_with_the_seed():
    sizes, batch_sizes = [30, 7, 100], [4, 4, 16]
    sampler = TaskBatchSampler(sizes, batch_sizes, 0.0, seed=1)
    assert len(sampler) == 8 + 2 + 7
    offsets = [0, 30, 37, 137]
    for epoch in range(4):
        sampler.set_epoch(epoch)
        batches = list(sampler)
        tasks = []
        for batch in batches:
            task = next(t for t in range(3) if offsets[t] <= batch[0] < offsets[t + 1])
            assert all(offsets[task] <= i < offsets[task + 1] for i in batch)
            assert len(batch) == batch_sizes[task] and len(set(batch)) == len(batch)
            tasks.append(task)
        assert [tasks.count(t) for t in range(3)] == sampler.mix(epoch)
        assert batches == sampler.plan(epoch)  # seeded by (seed, epoch)
    assert sampler.plan(0) != sampler.plan(1)
    assert TaskBatchSampler(sizes, batch_sizes, 0.0, seed=1).plan(2) == sampler.plan(2)
    assert TaskBatchSampler(sizes, batch_sizes, 0.0, seed=2).plan(2) != sampler.plan(2)
    # uniform draws over an epoch of 17 batches: the 7-example task is drawn far more often than its size
    # alone would give, so its examples cycle through fresh shuffles
    small = [i for b in sampler.plan(0) if 30 <= b[0] < 37 for i in b]
    assert len(small) == 4 * sampler.mix(0)[1] >= 12
    assert sorted(small[:7]) == list(range(30, 37))  # every example once before any repeats


def test_datamodule_batches_carry_their_task_index_and_labels(tiny_tokenizer):
    data = MultiTaskDataModule(mixture(reviews_task(), sts_task(batch_size=4)), tokenizer=tiny_tokenizer)
    data.setup("fit")
    assert data.names == ["reviews", "sts"]
    assert data.probabilities() == pytest.approx(
        {"reviews": 40**0.75 / (40**0.75 + 24**0.75), "sts": 24**0.75 / (40**0.75 + 24**0.75)}
    )
    ids = {name: set(data.content_ids(name, "train")) for name in data.names}
    loader = data.train_dataloader()
    seen = {"reviews": 0, "sts": 0}
    for batch in loader:
        task = int(batch["task"][0])
        name = data.names[task]
        assert (batch["task"] == task).all()
        assert {bytes(row.tolist()) for row in batch["content_id"]} <= ids[name]
        if name == "reviews":
            assert batch["labels"].dtype == torch.long and len(batch["labels"]) == 8
        else:
            assert batch["labels"].dtype == torch.float32 and len(batch["labels"]) == 4
            assert (batch["token_type_ids"] == 1).any()  # sentence pairs
            assert ((batch["labels"] >= 0) & (batch["labels"] <= 1)).all()  # scaled by label_scale 5
        seen[name] += 1
    assert len(loader) == 5 + 6
    assert seen == data.epoch_mix(0) and sum(seen.values()) == 11
    vals = data.val_dataloader()
    assert len(vals) == 2
    for task, loader in enumerate(vals):
        batches = list(loader)
        assert all((b["task"] == task).all() for b in batches)
        assert sum(len(b["task"]) for b in batches) == (12, 8)[task]
        assert torch.cat([b["index"] for b in batches]).tolist() == list(range((12, 8)[task]))  # file order


def test_shared_keys_are_defaults_that_a_task_may_override(tiny_tokenizer):
    data = MultiTaskDataModule(
        mixture(reviews_task(), sts_task(batch_size=4, max_length=None)), tokenizer=tiny_tokenizer
    )
    reviews, sts = data.task_modules["reviews"].cfg, data.task_modules["sts"].cfg
    assert (reviews["batch_size"], reviews["max_length"], reviews["eval_batch_size"]) == (8, 32, 5)
    assert (sts["batch_size"], sts["max_length"]) == (4, 32)


def write_tsv(path, rows):
    path.write_text("sentence\tlabel\n" + "".join(f"{text}\t{label}\n" for text, label in rows))
    return {"path": str(path)}


def test_content_ids_follow_the_text_not_the_position(tmp_path, tiny_tokenizer):
    rows = [
        (f"the plot was {word}", label)
        for word, label in [
            ("good", "pos"),
            ("bad", "neg"),
            ("dull", "neg"),
            ("great", "pos"),
            ("good", "pos"),
            ("warm", "pos"),
        ]
    ]
    shuffled = rows[:]
    random.Random(4).shuffle(shuffled)
    assert shuffled != rows

    def task(name, source):
        return {
            "name": name,
            "task": "classification",
            "labels": ["neg", "pos"],
            "columns": {"text": "sentence", "text_pair": None, "label": "label"},
            "train": source,
            "validation": source,
            "test": source,
            "metrics": ["acc"],
        }

    data = MultiTaskDataModule(
        mixture(
            task("a", write_tsv(tmp_path / "a.tsv", rows)),
            task("b", write_tsv(tmp_path / "b.tsv", shuffled)),
            batch_size=2,
            sampling_exponent=1.0,
        ),
        tokenizer=tiny_tokenizer,
    )
    a, b = data.content_ids("a", "train"), data.content_ids("b", "train")
    assert a[0] == a[4] and len(set(a)) == 5  # the repeated text has one id
    assert a == [content_id(text) for text, _ in rows]  # the teacher-output cache's own digest
    labels_a = dict(zip(a, [r["label"] for r in data.task_modules["a"].records("train")]))
    labels_b = dict(zip(b, [r["label"] for r in data.task_modules["b"].records("train")]))
    assert labels_a == labels_b  # the shuffled file gives every text the same id
    # across epochs (new shuffles and draws) an id always comes with the same tokens
    data.setup("fit")
    tokens: dict[bytes, list[int]] = {}
    loader = data.train_dataloader()
    for epoch in range(3):
        loader.batch_sampler.set_epoch(epoch)
        for batch in loader:
            for row, ids, mask in zip(batch["content_id"], batch["input_ids"], batch["attention_mask"]):
                key = bytes(row.tolist())
                assert tokens.setdefault(key, ids[mask.bool()].tolist()) == ids[mask.bool()].tolist()
    assert set(tokens) == set(a) | set(b)
    assert content_id("a man plays", "a man is playing") != content_id("a man plays a man is playing")
    # no separator byte to collide on: a sentence holding it, or the same bytes split elsewhere, is another input
    assert content_id("a\x1fb") != content_id("a", "b") and content_id("a\x1fb", "c") != content_id("a", "b\x1fc")
    assert content_id("ab", "c") != content_id("a", "bc")
    assert (
        content_id("a") == hashlib.sha256(b"a").digest()[:16]
    )  # a sentence's id as before: its cached rows stay valid


def test_a_task_listed_twice_is_refused():
    with pytest.raises(ConfigError, match=r"^data\.tasks: task 'reviews' is listed twice \(entries 0 and 2\)$"):
        MultiTaskDataModule(mixture(reviews_task(), sts_task(), reviews_task(size=10)))
    with pytest.raises(ConfigError, match=r"^data\.tasks\[1\]\.name: is required"):
        MultiTaskDataModule(mixture(reviews_task(), sts_task(name=None)))
    with pytest.raises(ConfigError, match=r"^data\.tasks: needs at least one task"):
        MultiTaskDataModule(mixture())


@pytest.mark.parametrize("exponent", [-0.5, -1])
def test_a_negative_sampling_exponent_is_refused(exponent):
    with pytest.raises(
        ConfigError, match=rf"^data\.sampling_exponent: must be >= 0 \(0 uniform, 1 proportional\), got {exponent:g}$"
    ):
        MultiTaskDataModule(mixture(reviews_task(), sts_task(), sampling_exponent=exponent))
    with pytest.raises(ConfigError, match=r"^data\.sampling_exponent"):
        TaskBatchSampler(SIZES, [1, 1, 1], exponent)
