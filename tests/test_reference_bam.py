"""Issue 19, item 1: the BAM and Hinton reference presets, one test per point of google-research bam/ and torchdistill's
GLUE KD recipe (docs/reference_presets.md), each against the reference's rule written out here independently."""

import json
import logging
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from settings import BAM, adamw
from test_multitask import reviews_task, sts_task
from test_optim import tiny_bert
from torch import nn

from kdlab import api
from kdlab.config import validate
from kdlab.data.identity import content_id
from kdlab.data.multitask import (
    ExampleBatchSampler,
    MultiTaskDataModule,
    dataset_multiples,
    loss_weights,
    task_module,
)
from kdlab.errors import ConfigError
from kdlab.losses.soft_target import SoftTargetKDLoss
from kdlab.methods.bam import BAM as BAMModule
from kdlab.methods.bam import TeacherPredictions
from kdlab.models.multitask import build_multitask_model
from kdlab.optim import AdamWeightDecay, build_optimizer
from kdlab.presets import deviations, preset_points, record_deviations

REPO = Path(__file__).resolve().parents[1]
BAM_PRESET = OmegaConf.load(REPO / "conf" / "method" / "bam_reference.yaml")
HINTON_PRESET = OmegaConf.load(REPO / "conf" / "experiment" / "hinton_reference.yaml")
LR, LAYERS = 1e-4, 3
# the toy BAM of tests/settings.py under the preset: its two tasks (reviews, sts), so both orders names sts
BAM_REF = [*BAM, "method=bam_reference", "method.both_orders=[sts]"]


def preset_optimizer(stage: str, **given) -> dict:
    """A stage's optimizer node as bam_reference composes it: conf/optimizer/adamw.yaml, then the preset's values."""
    return {**adamw(lr=LR), **OmegaConf.to_container(BAM_PRESET[stage].optimizer), "lr": LR, **given}


def reference_lr(name: str, decay: float = 0.9, n_layers: int = LAYERS) -> float:
    """bam/bert/optimization.py get_key_to_depths + _get_edecay_lrs: task heads n+2, pooler n+1, layer_i i+1,
    embeddings 0; lr · decay^(n + 2 − depth)."""
    if name.startswith("classifier."):
        depth = n_layers + 2
    elif ".pooler." in name:
        depth = n_layers + 1
    elif ".embeddings." in name:
        depth = 0
    else:
        depth = int(name.split("encoder.layer.")[1].split(".")[0]) + 1
    return LR * decay ** (n_layers + 2 - depth)


def lr_of(optimizer: torch.optim.Optimizer, model: nn.Module) -> dict[str, float]:
    names = {id(p): n for n, p in model.named_parameters()}
    # the group's own lr (the scheduler's multiplier, 0 at BERT's step 0, has already scaled group["lr"])
    return {names[id(p)]: group["initial_lr"] for group in optimizer.param_groups for p in group["params"]}


# --- layerwise decay: the pooler's own step (and the teachers use it too) -------------------------------------------


@pytest.mark.parametrize("stage", ["student", "teacher"])
def test_with_the_pooler_step_every_group_gets_bams_lr(stage):
    model = tiny_bert()
    optimizer = build_optimizer(model.named_parameters(), preset_optimizer(stage), 100)["optimizer"]
    lrs = lr_of(optimizer, model)
    assert set(lrs) == {name for name, _ in model.named_parameters()}
    for name, lr in lrs.items():
        assert lr == pytest.approx(reference_lr(name), rel=1e-12), name
    assert lrs["classifier.weight"] == LR and lrs["bert.pooler.dense.weight"] == pytest.approx(0.9 * LR)
    assert lrs["bert.embeddings.word_embeddings.weight"] == pytest.approx(LR * 0.9**5)


def test_without_the_pooler_step_pooler_and_heads_share_the_full_lr():
    """kdlab's default: D = layers + 1, so every parameter below the heads gets 1/0.9 = 1.11x BAM's lr."""
    model = tiny_bert()
    optimizer = build_optimizer(model.named_parameters(), preset_optimizer("student", pooler_step=False), 100)
    lrs = lr_of(optimizer["optimizer"], model)
    assert lrs["bert.pooler.dense.weight"] == lrs["classifier.weight"] == LR
    for name, lr in lrs.items():
        if not name.startswith(("classifier.", "bert.pooler.")):
            assert lr == pytest.approx(reference_lr(name) / 0.9, rel=1e-12), name


def test_the_multitask_students_pooler_and_heads(tiny_tokenizer):
    tasks = [{"name": "a", "task": "classification", "labels": ["0", "1"]}, {"name": "b", "task": "regression"}]
    spec = {"config": {"model_type": "bert", "hidden_size": 32, "num_hidden_layers": LAYERS, "num_attention_heads": 2}}
    model = build_multitask_model(
        {**spec, "config": {**spec["config"], "intermediate_size": 64}}, tasks, tiny_tokenizer
    )
    lrs = lr_of(build_optimizer(model.named_parameters(), preset_optimizer("student"), 100)["optimizer"], model)
    assert lrs["heads.a.weight"] == lrs["heads.b.bias"] == LR
    assert lrs["encoder.pooler.dense.weight"] == pytest.approx(0.9 * LR)
    assert lrs["encoder.encoder.layer.2.output.dense.weight"] == pytest.approx(0.9**2 * LR)
    assert lrs["encoder.embeddings.word_embeddings.weight"] == pytest.approx(0.9**5 * LR)


# --- Adam ε and the schedule ---------------------------------------------------------------------------------------


def test_adam_epsilon_is_bams_1e_6_and_kdlabs_1e_8():
    model = tiny_bert()
    for stage in ("student", "teacher"):
        groups = build_optimizer(model.named_parameters(), preset_optimizer(stage), 10)["optimizer"].param_groups
        assert {group["eps"] for group in groups} == {1e-6}
    default = build_optimizer(model.named_parameters(), adamw(lr=LR), 10)["optimizer"].param_groups
    assert {group["eps"] for group in default} == {1e-8}


def test_adam_without_bias_correction_is_bams_update():
    """bam/bert/optimization.py AdamWeightDecayOptimizer: m, v updated as Adam's, no division by (1 − β^t), then
    p ← p − lr·(m / (√v + ε) + wd·p)."""
    model = tiny_bert()
    for stage in ("student", "teacher"):
        optimizer = build_optimizer(model.named_parameters(), preset_optimizer(stage), 10)["optimizer"]
        assert isinstance(optimizer, AdamWeightDecay)
    p0 = torch.tensor([0.5, -1.0, 2.0])
    parameter = nn.Parameter(p0.clone())
    lr, wd, eps, grads = 0.1, 0.01, 1e-6, [torch.tensor([0.3, -0.2, 0.05]), torch.tensor([-0.1, 0.4, 0.2])]
    optimizer = AdamWeightDecay([{"params": [parameter], "weight_decay": wd}], lr=lr, betas=(0.9, 0.999), eps=eps)
    p, m, v = p0.clone(), torch.zeros(3), torch.zeros(3)
    for grad in grads:
        parameter.grad = grad.clone()
        optimizer.step()
        m, v = 0.9 * m + 0.1 * grad, 0.999 * v + 0.001 * grad**2
        p = p - lr * (m / (v.sqrt() + eps) + wd * p)
        assert torch.allclose(parameter.detach(), p, atol=1e-7)
    # torch's AdamW (kdlab's default) corrects the moments: its first step is lr·sign(g), BAM's 0.1/√0.001 = 3.16× that
    corrected, plain = nn.Parameter(p0.clone()), nn.Parameter(p0.clone())
    for param, opt in ((corrected, torch.optim.AdamW([corrected], lr=lr, eps=eps, weight_decay=0.0)),
                       (plain, AdamWeightDecay([plain], lr=lr, betas=(0.9, 0.999), eps=eps))):  # fmt: skip
        param.grad = grads[0].clone()
        opt.step()
    assert torch.allclose(p0 - corrected.detach(), lr * grads[0].sign(), rtol=1e-4)
    assert torch.allclose(p0 - plain.detach(), lr * 0.1 / 0.001**0.5 * grads[0].sign(), rtol=1e-3)  # ε: 6e-4


def test_bert_adam_has_one_kernel():
    with pytest.raises(ConfigError, match=r"^optimizer\.implementation: must be null with bias_correction: false"):
        build_optimizer(tiny_bert().named_parameters(), adamw(lr=LR, bias_correction=False, implementation="fused"), 10)


def lrs_over(cfg: dict, total: int) -> list[float]:
    """The head group's lr at each of `total` steps, as the scheduler sets it."""
    model = tiny_bert()
    setup = build_optimizer(model.named_parameters(), cfg, total)
    optimizer, scheduler = setup["optimizer"], setup["lr_scheduler"]["scheduler"]
    top = max(range(len(optimizer.param_groups)), key=lambda g: optimizer.param_groups[g]["initial_lr"])
    out = []
    for _ in range(total):
        out.append(optimizer.param_groups[top]["lr"])
        optimizer.step()
        scheduler.step()
    return out


def test_bert_schedule_warms_to_almost_lr_then_restarts_at_point_nine_lr():
    """bam/bert/optimization.py: polynomial_decay(lr, step, T, power 1) = lr·(1 − t/T), overridden by lr·t/W while
    t < W = int(T·0.1): the warm-up climbs to lr·(W−1)/W, the lr falls to 0.9·lr at t = W and follows lr·(1 − t/T)."""
    total, warmup = 1000, 100
    bert = lrs_over(preset_optimizer("student"), total)
    for t in (0, 1, 50, 99, 100, 101, 500, 999):
        reference = LR * t / warmup if t < warmup else LR * (1 - t / total)
        assert bert[t] == pytest.approx(reference, rel=1e-9, abs=1e-15), t
    assert bert[0] == 0.0 and max(bert) == pytest.approx(0.99 * LR) and bert[warmup] == pytest.approx(0.9 * LR)
    linear = lrs_over(preset_optimizer("student", schedule="linear"), total)
    assert linear[warmup - 1] == linear[warmup] == pytest.approx(LR)  # kdlab: the full lr at the end of the warm-up
    for t in (100, 400, 900):  # and 1/0.9 of BAM's lr at every later step
        assert linear[t] == pytest.approx(bert[t] / 0.9, rel=1e-9)


def test_a_bad_schedule_or_pooler_step_is_one_line_naming_the_key():
    model = tiny_bert()
    with pytest.raises(ConfigError, match=r"^optimizer\.schedule: must be one of \['linear', 'bert'\], got 'cosine'$"):
        build_optimizer(model.named_parameters(), adamw(lr=LR, schedule="cosine"), 10)
    with pytest.raises(ConfigError, match=r"^optimizer\.pooler_step: must be true or false, got 'yes'$"):
        build_optimizer(model.named_parameters(), adamw(lr=LR, pooler_step="yes"), 10)


# --- the task mix: dataset multiples, loss weights, batches that mix tasks ------------------------------------------

# bam/data/task_weighting.py's own table of GLUE training sizes (MRPC and STS-B counted in both orders)
GLUE = {
    "cola": 8551,
    "mnli": 392702,
    "mrpc": 7336,
    "qnli": 108436,
    "qqp": 363869,
    "sst": 67349,
    "sts": 11498,
    "rte": 2490,
}


def test_dataset_multiples_are_bams_on_its_glue_sizes():
    """round((392702 / |D_t|)^0.25): cola 2.60, mrpc 2.71, qnli 1.38, qqp 1.02, sst 1.55, sts 2.42, rte 3.54."""
    multiples = dict(zip(GLUE, dataset_multiples(list(GLUE.values()), 0.75)))
    assert multiples == {"cola": 3, "mnli": 1, "mrpc": 3, "qnli": 1, "qqp": 1, "sst": 2, "sts": 2, "rte": 4}


@pytest.mark.parametrize("with_multiples", [True, False])
def test_each_tasks_share_of_the_loss_is_proportional_to_size_to_the_075(with_multiples):
    sizes = list(GLUE.values())
    multiples = dataset_multiples(sizes, 0.75) if with_multiples else [1] * len(sizes)
    weights = loss_weights(sizes, 0.75, multiples if with_multiples else None)
    mass = [m * s * w for m, s, w in zip(multiples, sizes, weights)]
    target = [s**0.75 for s in sizes]
    for got, want in zip(mass, target):
        assert got / sum(mass) == pytest.approx(want / sum(target), rel=1e-12)
    if with_multiples:  # task_weighting.py: normalised, times the number of tasks
        assert sum(weights) == pytest.approx(len(sizes))
    else:  # get_task_weights: the expected weight of an example is 1
        assert sum(w * s for w, s in zip(weights, sizes)) / sum(sizes) == pytest.approx(1.0)


def test_example_batches_mix_tasks_and_cover_the_pool_with_its_multiples():
    sizes, multiples, batch = [10, 40], [3, 1], 8
    sampler = ExampleBatchSampler(sizes, batch, multiples, seed=0)
    batches = sampler.global_batches(0)
    assert [len(b) for b in batches] == [8] * 8 + [6]  # 70 examples: 8 full batches and a partial one
    seen = sorted(i for b in batches for i in b)
    assert seen == sorted([i for i in range(10) for _ in range(3)] + list(range(10, 50)))
    assert sum(1 for b in batches if min(b) < 10 <= max(b)) >= len(batches) // 2  # batches hold both tasks
    assert sampler.global_batches(1) != batches and sampler.global_batches(0) == batches  # reshuffled per epoch, seeded
    assert sampler.mix(0) == [30, 40]


def toy_tasks(both_orders: bool = False) -> list[dict]:
    """tests/test_multitask.py's reviews (160 rows) and sts (10 pairs) tasks, evaluated on validation only."""
    common = {"max_length": 32, "batch_size": 4, "eval_batch_size": 8, "test": None}
    return [reviews_task(size=160, **common), sts_task(size=10, both_orders=both_orders, **common)]


def test_the_mixed_mixture_gives_float_labels_of_both_tasks_and_its_weights(tiny_tokenizer):
    data = MultiTaskDataModule(
        {"tasks": toy_tasks(), "sampling_exponent": 0.75, "seed": 0, "batch_size": 16, "mixing": "example",
         "dataset_multiples": True},
        tokenizer=tiny_tokenizer,
    )  # fmt: skip
    assert data.multiples_of_tasks() == [1, 2]  # round((160 / 10)^0.25) = 2 copies of the small task
    batch = next(iter(data.train_dataloader()))
    assert set(batch["task"].tolist()) == {0, 1} and batch["labels"].dtype == torch.float32
    assert data.probabilities() == {"reviews": 160 / 180, "sts": 20 / 180}
    weights = data.loss_weights()  # the loss shares, examples times weights, are 160^0.75 : 10^0.75
    assert 160 * weights["reviews"] / (20 * weights["sts"]) == pytest.approx((160 / 10) ** 0.75)


# --- both sentence orders -------------------------------------------------------------------------------------------


def test_both_orders_add_every_training_pair_swapped_and_leave_evaluation_alone(tiny_tokenizer):
    plain_sts, both = task_module(toy_tasks()[1]), task_module(toy_tasks(both_orders=True)[1])
    rows, doubled = plain_sts.records("train"), both.records("train")
    assert doubled[: len(rows)] == rows and len(doubled) == 2 * len(rows)
    for row, swapped in zip(rows, doubled[len(rows) :]):
        assert (swapped["text"], swapped["text_pair"], swapped["label"]) == (
            row["text_pair"],
            row["text"],
            row["label"],
        )
        assert content_id(swapped["text"], swapped["text_pair"]) != content_id(row["text"], row["text_pair"])
    assert both.records("validation") == plain_sts.records("validation")
    with pytest.raises(ConfigError, match=r"^data\.both_orders: needs sentence pairs"):
        task_module({**toy_tasks()[0], "both_orders": True})


# --- sum vs mean ----------------------------------------------------------------------------------------------------


def test_the_batch_loss_is_the_weighted_sum_or_its_mean(tiny_tokenizer):
    tasks = toy_tasks(both_orders=True)
    data = MultiTaskDataModule(
        {"tasks": tasks, "sampling_exponent": 0.75, "seed": 0, "batch_size": 12, "mixing": "example",
         "dataset_multiples": True},
        tokenizer=tiny_tokenizer,
    )  # fmt: skip
    batch = next(b for b in data.train_dataloader() if len(set(b["task"].tolist())) == 2)
    config = {"model_type": "bert", "hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2}
    model = build_multitask_model({"config": {**config, "intermediate_size": 64}}, tasks, tiny_tokenizer).eval()
    torch.manual_seed(1)
    teachers = {}
    for name, width in (("reviews", 2), ("sts", 1)):
        ids = data.content_ids(name, "train")
        teachers[name] = TeacherPredictions(ids, torch.randn(len(ids), width), "teacher")
    weights, lam = data.loss_weights(), 0.3
    expected = torch.tensor(0.0)
    with torch.no_grad():
        for row in range(len(batch["task"])):
            task = int(batch["task"][row])
            name = model.names[task]
            logits = model(batch, task)[row]  # the model's own forward, then this row
            teacher = teachers[name].lookup(batch["content_id"][row : row + 1], name)[0]
            label = batch["labels"][row]
            if name == "sts":  # (z_S − (λ·y + (1 − λ)·z_T))²
                term = (logits[0] - (lam * label + (1 - lam) * teacher[0])) ** 2
            else:  # −Σ_c (λ·onehot + (1 − λ)·softmax(z_T))_c · log softmax(z_S)_c
                target = (1 - lam) * torch.softmax(teacher, -1)
                target[int(label)] += lam
                term = -(target * torch.log_softmax(logits, -1)).sum()
            expected = expected + weights[name] * term
    for reduction, want in (("sum", expected), ("mean", expected / len(batch["task"]))):
        module = BAMModule(
            model,
            tiny_tokenizer,
            adamw(lr=LR),
            metrics={"reviews": ["acc"], "sts": ["pearson"]},
            main_metrics={"reviews": "acc", "sts": "pearson"},
            teacher_outputs=teachers,
            teacher_annealing=False,
            fixed_lambda=lam,
            loss_reduction=reduction,
            task_weights=weights,
        )
        with torch.no_grad():
            assert float(module.compute_loss(batch)["loss"]) == pytest.approx(float(want), rel=1e-5), reduction


# --- the presets as configs: deviations recorded, bad names refused ---------------------------------------------------


def test_the_bam_preset_composes_checks_and_records_an_override_as_a_deviation(tmp_path, caplog):
    cfg = api.compose(*BAM_REF)
    validate(cfg)
    assert cfg.method.mixing == "example" and cfg.method.loss_reduction == "sum"
    assert cfg.method.student.optimizer.eps == 1e-6 and cfg.method.teacher.optimizer.pooler_step is True
    found = deviations(cfg)
    assert found["method.both_orders"] == {"reference": ["mrpc", "stsb"], "run": ["sts"]}
    assert "method.mixing" not in found
    ablation = api.compose(*BAM_REF, "method.loss_reduction=mean")
    with caplog.at_level(logging.INFO, logger="kdlab.presets"):
        recorded = record_deviations(ablation, tmp_path)
    assert recorded["method.loss_reduction"] == {"reference": "sum", "run": "mean"}
    written = json.loads((tmp_path / "reference_deviations.json").read_text())
    assert written["preset"] == "bam_reference" and written["deviations"] == recorded
    lines = [r.getMessage() for r in caplog.records if r.name == "kdlab.presets"]
    assert len(lines) == 1 and "method.loss_reduction='mean' (reference 'sum')" in lines[0]


@pytest.mark.parametrize(
    "override, message",
    [
        ("method.preset=bam_referenc", r"^method\.preset: names no reference preset, got 'bam_referenc'; the presets"),
        (
            "method.preset=hinton_reference",
            r"^method\.preset: preset 'hinton_reference' reproduces method hinton, but this config runs method bam$",
        ),
        ("method.both_orders=[nli]", r"^method\.both_orders: 'nli' names no task of data\.tasks \['reviews', 'sts'\]$"),
        ("method.both_orders=[reviews]", r"^method\.both_orders: task 'reviews' has single texts"),
        ("method.mixing=task", r"^method\.mixing: must be one of \['batch', 'example'\], got 'task'$"),
        ("method.loss_reduction=max", r"^method\.loss_reduction: must be one of \['mean', 'sum'\], got 'max'$"),
        ("method.student.batch_size=0", r"^method\.student\.batch_size: must be null or an integer >= 1, got 0$"),
    ],
)
def test_bad_preset_settings_are_one_line_naming_the_key(override, message):
    with pytest.raises(ConfigError, match=message):
        validate(api.compose(*BAM_REF, override))


def test_dataset_multiples_without_mixed_batches_is_refused():
    with pytest.raises(ConfigError, match=r"^method\.dataset_multiples: applies to mixed batches only"):
        validate(api.compose(*BAM, "method.dataset_multiples=true"))


# --- Hinton: torchdistill's GLUE KD recipe with the α convention converted --------------------------------------------


def test_hinton_preset_reproduces_torchdistills_kdloss():
    """torchdistill/losses/mid_level.py KDLoss with the SST-2 recipe's temperature 3, alpha 0.9, reduction batchmean:
    alpha · CE_mean(z_S, y) + (1 − alpha) · τ² · KLDivLoss_batchmean(log_softmax(z_S/τ), softmax(z_T/τ))."""
    assert HINTON_PRESET.loss.alpha == pytest.approx(1 - 0.9) and HINTON_PRESET.loss.temperature == 3.0
    generator = torch.Generator().manual_seed(0)
    student, teacher = torch.randn(6, 2, generator=generator) * 3, torch.randn(6, 2, generator=generator) * 3
    labels = torch.tensor([0, 1, 1, 0, 1, 0])
    td_alpha, tau = 0.9, 3.0
    kl = nn.KLDivLoss(reduction="batchmean")(torch.log_softmax(student / tau, 1), torch.softmax(teacher / tau, 1))
    reference = td_alpha * nn.CrossEntropyLoss()(student, labels) + (1 - td_alpha) * tau**2 * kl
    ours = SoftTargetKDLoss(alpha=float(HINTON_PRESET.loss.alpha), temperature=float(HINTON_PRESET.loss.temperature))
    assert float(ours(student, teacher, labels).total) == pytest.approx(float(reference), abs=5e-7)


def test_the_hinton_preset_composes_and_names_a_changed_temperature(monkeypatch):
    monkeypatch.setenv("KDLAB_DATA_DIR", str(REPO / "no-data"))  # composing reads no data file
    cfg = api.compose("experiment=hinton_reference")
    assert (cfg.loss.alpha, cfg.loss.temperature, cfg.data.batch_size, cfg.data.max_length) == (0.1, 3.0, 32, 128)
    assert deviations(cfg) == {}
    assert deviations(api.compose("experiment=hinton_reference", "loss.temperature=4")) == {
        "loss.temperature": {"reference": 3.0, "run": 4.0}
    }


@pytest.mark.parametrize("preset", ["bam_reference", "hinton_reference"])
def test_the_docs_table_names_every_point_of_the_preset(preset):
    """docs/reference_presets.md: each point's key in its section's table (`<stage>` standing for teacher and student)."""
    text = (REPO / "docs" / "reference_presets.md").read_text(encoding="utf-8")
    section = (
        text.split("## BAM!")[1].split("## Hinton")[0] if preset == "bam_reference" else text.split("## Hinton")[1]
    )
    for point in preset_points(preset):
        generic = point.replace(".student.", ".<stage>.").replace(".teacher.", ".<stage>.")
        assert f"`{point}`" in section or f"`{generic}`" in section, point


def test_a_tiny_run_of_the_bam_preset(cli):
    """The toy BAM under the preset: mixed batches with multiples and weights in mix.json, the sts teacher trained and
    predicting on both orders, and the run's own settings (toy sizes, lrs, epochs) recorded as deviations."""
    result = cli(*BAM_REF, "method.max_length=32", "method.teacher.batch_size=16", "method.student.batch_size=32")
    assert result.returncode == 0, result.stderr[-3000:]
    (run,) = sorted((cli.tmp_path / "outputs" / "runs").glob("*/config.yaml"))
    folder = run.parent
    mix = json.loads((folder / "student" / "mix.json").read_text())
    assert mix["mixing"] == "example" and mix["epochs"][0] == {"reviews": 160, "sts": 192}  # 96 pairs, both orders
    assert mix["multiples"] == {"reviews": 1, "sts": 1}
    assert 160 * mix["loss_weights"]["reviews"] / (192 * mix["loss_weights"]["sts"]) == pytest.approx(
        (160 / 192) ** 0.75
    )
    recorded = json.loads((folder / "reference_deviations.json").read_text())["deviations"]
    assert recorded["method.student.batch_size"] == {"reference": 128, "run": 32}
    assert "method.mixing" not in recorded and "method.loss_reduction" not in recorded
    assert f"preset bam_reference: {len(recorded)} point(s) deviate from the reference" in result.stdout


def test_kdlabs_default_task_configs_are_unchanged_so_stored_teachers_keep_their_keys():
    from kdlab.pipelines.bam import bam_tasks

    default = bam_tasks(api.compose(*BAM))
    assert all("both_orders" not in task for task in default) and {t["max_length"] for t in default} == {32}
    preset = {t["name"]: t for t in bam_tasks(api.compose(*BAM_REF))}
    assert preset["sts"]["both_orders"] is True and "both_orders" not in preset["reviews"]
    assert {t["max_length"] for t in preset.values()} == {128}
