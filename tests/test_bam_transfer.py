"""Transfer sets for BAM's student (issue 18, item 1): a task's `transfer` block (hinton's data.transfer schema, key
`data.tasks[i].transfer`). The loss on transfer rows against an independent computation, the rows each task trains on
and how they count in the mix, the teachers labelling them through the cache (a second run reads them), and the
refusals, each one line naming its key."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from conftest import kdlab_folders, run_dirs
from omegaconf import OmegaConf
from settings import bam

from kdlab.data.multitask import MultiTaskDataModule
from kdlab.data.records import split_records
from kdlab.data.transfer import build
from kdlab.errors import ConfigError
from kdlab.losses.annealed import annealed_losses

# ---------------------------------------------------------------- the loss

ZS = [[1.0, 2.0, 0.5], [0.3, -1.2, 2.2], [-0.4, 0.1, 0.9], [2.0, 0.0, -1.0]]
ZT = [[0.5, 3.0, -1.0], [1.5, -0.5, 0.0], [0.2, 0.2, 1.4], [-1.0, 2.5, 0.3]]
LABELS = [2, 0, 1, 0]  # rows 1 and 3 are transfer rows: their 0 is a placeholder the loss must not read
GOLD = [True, False, True, False]


def softmax(z):
    exps = [math.exp(v) for v in z]
    return [e / sum(exps) for e in exps]


def by_hand(lam):
    """Per row, in plain Python: a gold row −Σ_c (λ·onehot(y)_c + (1 − λ)·p_T,c)·log p_S,c; a transfer row
    −Σ_c p_T,c·log p_S,c (the teacher's distribution alone)."""
    out = []
    for zs, zt, y, gold in zip(ZS, ZT, LABELS, GOLD):
        p_s, p_t = softmax(zs), softmax(zt)
        weight = lam if gold else 0.0
        out.append(-sum((weight * (c == y) + (1 - weight) * p_t[c]) * math.log(p_s[c]) for c in range(3)))
    return out


@pytest.mark.parametrize("lam", [0.0, 0.3, 1.0])
def test_a_transfer_row_learns_the_teachers_distribution_a_gold_row_the_annealed_target(lam):
    losses = annealed_losses(
        torch.tensor(ZS), torch.tensor(ZT), torch.tensor(LABELS), lam, "classification", torch.tensor(GOLD)
    )
    assert losses.tolist() == pytest.approx(by_hand(lam), abs=1e-6)


def test_a_transfer_rows_regression_target_is_the_teachers_score():
    student, teacher = torch.tensor([[0.2], [0.9], [0.5]]), torch.tensor([[0.4], [0.6], [0.5]])
    labels, gold = torch.tensor([0.0, 0.0, 0.4]), torch.tensor([True, False, True])
    # λ = 0.5: row 0 target 0.5·0 + 0.5·0.4 = 0.2 → 0; row 1 (transfer) target 0.6 → 0.09; row 2 target 0.45 → 0.0025
    losses = annealed_losses(student, teacher, labels, 0.5, "regression", gold)
    assert losses.tolist() == pytest.approx([0.0, 0.09, 0.0025], abs=1e-7)


def test_without_transfer_rows_the_loss_is_bit_for_bit_the_annealed_one():
    args = (torch.tensor(ZS), torch.tensor(ZT), torch.tensor(LABELS), 0.37, "classification")
    assert torch.equal(annealed_losses(*args, torch.ones(4, dtype=torch.bool)), annealed_losses(*args))
    with pytest.raises(ValueError, match="need a teacher"):
        annealed_losses(torch.tensor(ZS), None, torch.tensor(LABELS), 1.0, "classification", torch.tensor(GOLD))


def test_the_bam_module_routes_the_gold_mask_of_a_mixed_batch(tiny_tokenizer):
    """BAM.compute_loss on one batch of both tasks, gold and transfer rows (fixed λ, dropout off), against the mean
    of the per-row losses computed from the model's own logits."""
    from kdlab.methods.bam import BAM, TeacherPredictions
    from kdlab.models.multitask import build_multitask_model

    tasks = [
        {"name": "reviews", "task": "classification", "labels": ["negative", "positive"]},
        {"name": "sts", "task": "regression", "labels": None},
    ]
    spec = {"config": {"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 64}}
    torch.manual_seed(0)
    model = build_multitask_model(spec, tasks, tiny_tokenizer)
    rows = [
        ("a fine film", None, 0, True),
        ("dull and long", None, 0, False),
        ("a", "b", 1, False),
        ("c", "d", 1, True),
    ]
    ids = [bytes([i] * 16) for i in range(len(rows))]  # content ids are opaque keys to the lookup: any 16 bytes do
    teacher = {
        "reviews": TeacherPredictions(ids[:2], torch.tensor([[2.0, -1.0], [-0.5, 1.5]]), "reviews-cache"),
        "sts": TeacherPredictions(ids[2:], torch.tensor([[0.7], [0.2]]), "sts-cache"),
    }
    module = BAM(
        model,
        tiny_tokenizer,
        {"lr": 1e-3},
        {"reviews": ["acc"], "sts": ["pearson"]},
        {"reviews": "acc", "sts": "pearson"},
        teacher_outputs=teacher,
        teacher_annealing=False,
        fixed_lambda=0.25,
    )
    module.eval()
    encoded = tiny_tokenizer([r[0] for r in rows], [r[1] or "" for r in rows], padding=True, return_tensors="pt")
    batch = {
        **dict(encoded),
        "labels": torch.tensor([1.0, 0.0, 0.0, 0.9]),  # mixed batches carry float labels; rows 1, 2: placeholders
        "task": torch.tensor([r[2] for r in rows]),
        "content_id": torch.tensor([list(i) for i in ids], dtype=torch.uint8),
        "gold": torch.tensor([r[3] for r in rows]),
    }
    with torch.no_grad():
        loss = module.compute_loss(batch)["loss"]
        shared = model.encode(batch)
        logits = model.heads["reviews"](shared[:2])
        expected = [
            # gold row 0 (class 1): target 0.25·onehot + 0.75·softmax(z_T)
            -(
                (0.25 * torch.tensor([0.0, 1.0]) + 0.75 * torch.softmax(torch.tensor([2.0, -1.0]), -1))
                * torch.log_softmax(logits[0], -1)
            ).sum(),
            # transfer row 1: the teacher's distribution alone
            -(torch.softmax(torch.tensor([-0.5, 1.5]), -1) * torch.log_softmax(logits[1], -1)).sum(),
        ]
        scores = model.heads["sts"](shared[2:]).view(-1)
        expected += [(scores[0] - 0.7) ** 2, (scores[1] - (0.25 * 0.9 + 0.75 * 0.2)) ** 2]  # transfer, then gold
    assert loss.item() == pytest.approx(float(sum(expected) / 4), abs=1e-6)


# ---------------------------------------------------------------- the rows of each task and the mix

TOY = OmegaConf.to_container(OmegaConf.load(Path(__file__).parents[1] / "conf" / "data" / "multitask_toy.yaml"))


def mixture(mix_size, mixing="batch", multiples=False):
    """The toy mixture at 64 + 48 labelled rows with a 100-row generated transfer set on reviews; its transfer sets."""
    cfg = json.loads(json.dumps(TOY))
    for task, rows in zip(cfg["tasks"], (64, 48)):
        task["train"]["size"] = rows
        task["validation"]["size"] = task["test"]["size"] = 32
    source = {"embedded": "reviews", "split": "train", "size": 100, "seed": 1}
    cfg["tasks"][0]["transfer"] = {"sources": [source], "mix_size": mix_size}
    cfg.update(batch_size=16, mixing=mixing, dataset_multiples=multiples)
    reviews = {**cfg, **cfg["tasks"][0]}
    evaluation = split_records(reviews, "validation") + split_records(reviews, "test")
    transfer = build(
        reviews,
        split_records(reviews, "train"),
        evaluation,
        "[MASK]",
        None,
        key="data.tasks[0].transfer",
        known=("sources", "augment", "gold_repeat", "mix_size"),
    )
    return cfg, {"reviews": transfer}


def test_transfer_rows_join_their_tasks_pool_and_mix_size_says_what_counts(tiny_tokenizer):
    from kdlab.data.identity import content_id

    cfg, transfer = mixture("all")
    extra = len(transfer["reviews"].inputs)
    assert 90 <= extra <= 100  # a few generated texts repeat a labelled one
    data = MultiTaskDataModule(cfg, tokenizer=tiny_tokenizer, transfer=transfer)
    features = data.features("reviews", "train")
    assert len(features) == 64 + extra and sum(not f["gold"] for f in features) == extra
    assert [f["content_id"] for f in features if not f["gold"]] == [content_id(*i) for i in transfer["reviews"].inputs]
    assert all(f["gold"] for f in data.features("sts", "train"))  # a task without one: every row gold
    assert data.sizes() == data.counted_sizes() == [64 + extra, 48]
    assert len(data.sampler) == math.ceil((64 + extra) / 16) + 3
    weights = [(64 + extra) ** 0.75, 48**0.75]
    assert list(data.probabilities().values()) == pytest.approx([w / sum(weights) for w in weights])
    batch = next(iter(data.train_dataloader()))
    assert "gold" in batch and batch["gold"].dtype == torch.bool

    gold_only = MultiTaskDataModule(mixture("gold")[0], tokenizer=tiny_tokenizer, transfer=transfer)
    assert gold_only.sizes() == [64 + extra, 48] and gold_only.counted_sizes() == [64, 48]
    assert len(gold_only.sampler) == 4 + 3  # the epoch of the run without the transfer set
    weights = [64**0.75, 48**0.75]
    assert list(gold_only.probabilities().values()) == pytest.approx([w / sum(weights) for w in weights])
    drawn = {i for b in gold_only.sampler.plan(0) for i in b if i < 64 + extra}
    assert any(i >= 64 for i in drawn)  # reviews' batches are drawn from its labelled and its transfer rows
    record = gold_only.size_record()["reviews"]
    assert record == {
        "labelled": 64,
        "transfer": extra,
        "gold_repeat": 1,
        "rows": 64 + extra,
        "mix_size": "gold",
        "counted": 64,
    }


@pytest.mark.parametrize("mix_size", ["all", "gold"])
def test_mixed_batches_keep_each_tasks_loss_share_at_its_counted_size(tiny_tokenizer, mix_size):
    cfg, transfer = mixture(mix_size, mixing="example", multiples=True)
    data = MultiTaskDataModule(cfg, tokenizer=tiny_tokenizer, transfer=transfer)
    served, counted, weights = data.sizes(), data.counted_sizes(), data.loss_weights()
    multiples = data.multiples_of_tasks()
    assert data.epoch_mix(0) == {"reviews": served[0] * multiples[0], "sts": served[1] * multiples[1]}
    shares = [m * n * w for m, n, w in zip(multiples, served, weights.values())]
    assert shares[0] / shares[1] == pytest.approx((counted[0] / counted[1]) ** 0.75)


# ---------------------------------------------------------------- runs

SOURCES = (
    "data.tasks.0.transfer={sources: [{embedded: reviews, split: train, size: 100, seed: 1}], augment: {n_iter: 1}}",
    "data.tasks.1.transfer={sources: [{embedded: sts_toy, split: train, size: 40, seed: 1}]}",
)
RUN = [
    "trainer.enable_progress_bar=false",
    "trainer.limit_val_batches=2",
    "trainer.limit_test_batches=2",
    "trainer.log_every_n_steps=1",
    *bam(train=(96, 64), held_out=(32, 32)),
    *SOURCES,
]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The same BAM run with transfer sets twice, sharing the teacher store and the teacher-output cache."""
    from kdlab.api import train

    with kdlab_folders(tmp_path_factory.mktemp("bam_transfer")):
        return train(*RUN), train(*RUN)


def test_each_task_trains_on_its_labelled_and_transfer_rows_which_its_teacher_labels(runs):
    first, _ = runs
    transfer = json.loads((first.path / "student" / "transfer.json").read_text())
    reviews, sts = transfer["reviews"], transfer["sts"]
    assert reviews["labelled_rows"] == 96 and reviews["augment"]["copies"] > 0
    assert reviews["inputs"] == reviews["sources"][0]["kept"] + reviews["augment"]["copies"]
    assert sts["labelled_rows"] == 64 and sts["inputs"] == sts["sources"][0]["kept"] > 30
    mix = json.loads((first.path / "student" / "mix.json").read_text())
    rows = {"reviews": 96 + reviews["inputs"], "sts": 64 + sts["inputs"]}
    for name, info in mix["sizes"].items():
        assert info["rows"] == info["counted"] == rows[name] and info["mix_size"] == "all"
    per_epoch = math.ceil(rows["reviews"] / 16) + math.ceil(rows["sts"] / 16)
    assert [sum(epoch.values()) for epoch in mix["epochs"]] == [per_epoch, per_epoch]
    steps = (first.path / "logs" / "student" / "metrics.csv").read_text().splitlines()
    lambdas = [line for line in steps[1:] if line.split(",")[steps[0].split(",").index("train/lambda")]]
    assert len(lambdas) == 2 * per_epoch  # every row of every task's pool, two epochs

    teachers = json.loads((first.path / "teachers.json").read_text())
    log = (first.path / "train.log").read_text()
    for name, gold in (("reviews", 96), ("sts", 64)):
        labelled = {"gold": gold, "transfer": transfer[name]["inputs"]}
        assert teachers[name]["labelled"] == labelled
        outputs = teachers[name]["outputs"]
        assert outputs["rows"] == outputs["computed"] == gold + labelled["transfer"] and outputs["read"] == 0
        assert (
            f"teacher {name} labelled {gold} training rows + {labelled['transfer']} transfer rows "
            f"({gold + labelled['transfer']} computed, 0 read from the cache)"
        ) in log
        assert f"student, task {name}: {gold} labelled rows + {labelled['transfer']} transfer rows" in log


def test_a_second_run_reads_the_transfer_rows_teacher_outputs_from_the_cache(runs):
    first, again = runs
    teachers = json.loads((again.path / "teachers.json").read_text())
    for name in ("reviews", "sts"):
        outputs = teachers[name]["outputs"]
        assert teachers[name]["origin"].startswith("reused: ") and outputs["hit"] is True
        assert outputs["computed"] == 0 and outputs["read"] == outputs["rows"] == sum(
            teachers[name]["labelled"].values()
        )
    assert json.loads((again.path / "student" / "transfer.json").read_text())["reviews"]["augment"]["cached"] is True
    assert again.metrics["student/test/glue_mean"] == first.metrics["student/test/glue_mean"]


# ---------------------------------------------------------------- refusals

TASK0 = "data.tasks.0.transfer"
GENERATED = "{embedded: reviews, split: train, size: 50, seed: 1}"
REFUSED = {
    "leak-own-test": (
        [f"{TASK0}={{sources: [{{embedded: reviews, split: test, size: 50, seed: 0}}]}}"],
        "data.tasks[0].transfer.sources[0]: is the task 'reviews' test split's source (embedded:reviews/test): it "
        "would leak it",
    ),
    "leak-another-tasks-validation": (
        ["data.tasks.1.transfer={sources: [{embedded: reviews, split: validation, size: 50, seed: 0}]}"],
        "data.tasks[1].transfer.sources[0]: is the task 'reviews' validation split's source "
        "(embedded:reviews/validation): it would leak it",
    ),
    "plain-multitask": (
        ["method.teachers=false", f"{TASK0}={{sources: [{GENERATED}]}}"],
        "data.tasks[0].transfer: needs the task's teacher to label its rows, but method.teachers=false (plain "
        "multi-task trains on gold labels only): set it to null or method.teachers=true",
    ),
    "unknown-key": (
        [f"{TASK0}={{sources: [{GENERATED}], mix: 1}}"],
        "data.tasks[0].transfer.mix: unknown key; expected ['sources', 'augment', 'gold_repeat', 'mix_size']",
    ),
    "mix-size": (
        [f"{TASK0}={{sources: [{GENERATED}], mix_size: half}}"],
        "data.tasks[0].transfer.mix_size: must be one of ['all', 'gold'], got 'half'",
    ),
    "augment-rate": (
        [f"{TASK0}={{augment: {{p_mask: 1.5}}}}"],
        "data.tasks[0].transfer.augment.p_mask: must be a probability in [0, 1], got 1.5",
    ),
    "rest-of-train-without-limit": (
        [f"{TASK0}={{sources: [{{rest_of_train: true}}]}}"],
        "data.tasks[0].transfer.sources[0].rest_of_train: needs data.tasks[0].train.limit: the labelled rows kept; "
        "the rest become transfer text",
    ),
    "nothing": (
        [f"{TASK0}={{sources: []}}"],
        "data.tasks[0].transfer: has no sources and no augmentation: set data.tasks[0].transfer.sources, augment, "
        "or null",
    ),
}


@pytest.mark.parametrize("name", list(REFUSED))
def test_a_bad_transfer_block_is_refused_in_one_line_naming_its_key(name, tmp_path):
    from kdlab.api import compose
    from kdlab.config import validate

    overrides, line = REFUSED[name]
    with kdlab_folders(tmp_path):
        cfg = compose("experiment=bam_toy", *overrides)
        with pytest.raises(ConfigError) as err:
            validate(OmegaConf.masked_copy(cfg, [key for key in cfg if key != "hydra"]))
    assert str(err.value) == line


def test_hintons_transfer_block_has_no_mix_size(tmp_path):
    from kdlab.api import compose
    from kdlab.config import validate

    with kdlab_folders(tmp_path):
        cfg = compose(f"+data.transfer={{sources: [{GENERATED}], mix_size: gold}}")
        with pytest.raises(ConfigError, match=r"^data\.transfer\.mix_size: unknown key"):
            validate(OmegaConf.masked_copy(cfg, [key for key in cfg if key != "hydra"]))


def test_the_command_line_refuses_plain_multitask_with_a_transfer_set_before_writing_anything(cli, tmp_path):
    overrides, line = REFUSED["plain-multitask"]
    result = cli("experiment=bam_toy", *overrides, timeout=120)
    assert result.returncode == 2 and result.stderr.strip() == f"kdlab: error: {line}"
    assert run_dirs(tmp_path) == []
