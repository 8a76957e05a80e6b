"""BAM (issue 6): the annealed loss against hand computations, the λ schedule, content-keyed teacher predictions,
and the whole pipeline through the CLI (teachers → cache → multi-task student), its switches and config errors."""

import csv
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import REPO, run_dirs
from settings import BAM

from kdlab.data.identity import content_id
from kdlab.errors import DataError
from kdlab.evaluation.task_metrics import glue_mean
from kdlab.losses import annealed_loss, annealed_target
from kdlab.methods.bam import TeacherPredictions, annealing_lambda

ZS = [[1.0, 2.0, 0.5], [0.3, -1.2, 2.2]]
ZT = [[0.5, 3.0, -1.0], [1.5, -0.5, 0.0]]
Y = [2, 0]


def softmax(z):
    exps = [math.exp(v) for v in z]
    return [e / sum(exps) for e in exps]


def classification_by_hand(lam):
    """mean_i −Σ_c (λ·onehot(y_i)_c + (1 − λ)·softmax(z_T,i)_c) · log softmax(z_S,i)_c, in plain Python."""
    total = 0.0
    for zs, zt, y in zip(ZS, ZT, Y):
        p_s, p_t = softmax(zs), softmax(zt)
        total -= sum((lam * (c == y) + (1 - lam) * p_t[c]) * math.log(p_s[c]) for c in range(3))
    return total / len(Y)


@pytest.mark.parametrize("lam", [0.0, 0.3, 0.5, 1.0])
def test_annealed_classification_loss_matches_hand_computation(lam):
    loss = annealed_loss(torch.tensor(ZS), torch.tensor(ZT), torch.tensor(Y), lam, "classification")
    assert loss.item() == pytest.approx(classification_by_hand(lam), abs=1e-6)


def test_annealed_classification_end_points_by_hand():
    # λ = 1: plain CE with the gold class. Row 0: log(e + e² + e^0.5) − 0.5 = log 11.756063 − 0.5 = 1.964345;
    # row 1: log(e^0.3 + e^−1.2 + e^2.2) − 0.3 = log 10.676057 − 0.3 = 2.068028; mean 2.016187
    ce = (
        (math.log(math.e + math.e**2 + math.e**0.5) - 0.5) + (math.log(math.e**0.3 + math.e**-1.2 + math.e**2.2) - 0.3)
    ) / 2
    assert ce == pytest.approx(2.0161866, abs=1e-6)
    assert annealed_loss(
        torch.tensor(ZS), torch.tensor(ZT), torch.tensor(Y), 1.0, "classification"
    ).item() == pytest.approx(ce, abs=1e-6)
    target = annealed_target(torch.tensor(ZT), torch.tensor(Y), 0.3, "classification")
    # row 1: 0.3·[1, 0, 0] + 0.7·softmax(1.5, −0.5, 0); e^1.5, e^−0.5, e^0 = 4.481689, 0.606531, 1 (sum 6.088220)
    assert target[1].tolist() == pytest.approx([0.3 + 0.7 * 0.7361247, 0.7 * 0.0996236, 0.7 * 0.1642516], abs=1e-6)
    assert target.sum(-1).tolist() == pytest.approx([1.0, 1.0], abs=1e-6)


@pytest.mark.parametrize(
    "lam,expected",
    [
        # z_S = [0.2, 0.9, 0.5], y = [0.0, 1.0, 0.4], z_T = [0.4, 0.6, 0.5]
        # λ=0:   targets z_T → errors [−0.2, 0.3, 0.0]          → (0.04 + 0.09 + 0) / 3
        (0.0, (0.04 + 0.09 + 0.0) / 3),
        # λ=0.3: targets [0.28, 0.72, 0.47] → errors [−0.08, 0.18, 0.03] → (0.0064 + 0.0324 + 0.0009) / 3
        (0.3, (0.0064 + 0.0324 + 0.0009) / 3),
        # λ=0.5: targets [0.2, 0.8, 0.45]  → errors [0.0, 0.1, 0.05]     → (0 + 0.01 + 0.0025) / 3
        (0.5, (0.0 + 0.01 + 0.0025) / 3),
        # λ=1:   targets y → errors [0.2, −0.1, 0.1]            → (0.04 + 0.01 + 0.01) / 3
        (1.0, (0.04 + 0.01 + 0.01) / 3),
    ],
)
def test_annealed_regression_loss_matches_hand_computation(lam, expected):
    student = torch.tensor([[0.2], [0.9], [0.5]])
    teacher = torch.tensor([[0.4], [0.6], [0.5]])
    gold = torch.tensor([0.0, 1.0, 0.4])
    assert annealed_loss(student, teacher, gold, lam, "regression").item() == pytest.approx(expected, abs=1e-6)


def test_lambda_rises_linearly_from_zero_to_one():
    assert [annealing_lambda(step, 10) for step in (0, 1, 3, 5, 9, 10, 12)] == pytest.approx(
        [0.0, 0.1, 0.3, 0.5, 0.9, 1.0, 1.0]
    )
    assert annealing_lambda(0, 0) == 1.0
    with pytest.raises(ValueError, match="lambda must be in"):
        annealed_target(torch.tensor(ZT), torch.tensor(Y), 1.5, "classification")
    assert glue_mean([0.8, 0.5, 0.2]) == pytest.approx(0.5)


def test_teacher_predictions_follow_content_not_position():
    texts = [("the plot was good", None), ("a", "b"), ("the food was bad", None), ("b", "a")]
    outputs = torch.tensor([[0.0, 1.0], [2.0, 3.0], [4.0, 5.0], [6.0, 7.0]])
    predictions = TeacherPredictions([content_id(*t) for t in texts], outputs, "/cache/entry.safetensors")
    shuffled = [3, 0, 2, 1]
    batch_ids = torch.tensor([list(content_id(*texts[i])) for i in shuffled], dtype=torch.uint8)
    assert predictions.lookup(batch_ids, "reviews").tolist() == outputs[shuffled].tolist()
    unknown = torch.tensor([list(content_id("never seen"))], dtype=torch.uint8)
    with pytest.raises(
        DataError,
        match=r"^/cache/entry\.safetensors: no teacher prediction for training example "
        rf"{content_id('never seen').hex()} of task 'reviews'; BAM never trains",
    ):
        predictions.lookup(unknown, "reviews")


# --- the pipeline through the CLI -------------------------------------------------------------------------------

SMALL = BAM  # tests/settings.py


def sweep(env, tmp, *overrides):
    """Run a multirun of the small BAM experiment; its job folders in order."""
    result = subprocess.run(
        [sys.executable, "-m", "kdlab.train", "-m", *SMALL, *overrides],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (folder,) = (tmp / "outputs" / "sweeps").iterdir()
    jobs = sorted((p for p in folder.iterdir() if p.name.isdigit()), key=lambda p: int(p.name))
    assert all((job / "metrics.json").exists() for job in jobs), result.stderr[-3000:]
    return jobs, result


def environment(tmp):
    return {
        **os.environ,
        "KDLAB_OUTPUT_DIR": str(tmp / "outputs"),
        "KDLAB_CACHE_DIR": str(tmp / "cache"),
        "HF_HUB_OFFLINE": "1",
    }


def logged(run, stage, column):
    """The non-empty values of one column of a stage's metrics.csv, with their step."""
    with open(run / "logs" / stage / "metrics.csv") as handle:
        return [(int(row["step"]), float(row[column])) for row in csv.DictReader(handle) if row.get(column)]


@pytest.fixture(scope="module")
def bam_runs(tmp_path_factory):
    """One sweep: BAM, then the same with annealing off (its teachers reused from the first job), sharing one cache."""
    tmp = tmp_path_factory.mktemp("bam")
    (annealed, fixed), result = sweep(
        environment(tmp), tmp, "method.teacher_annealing=true,false", "method.fixed_lambda=0.25"
    )
    return {
        "tmp": tmp,
        "annealed": annealed,
        "fixed": fixed,
        "stdout": result.stdout,
        "cache": sorted(p for p in (tmp / "cache" / "teacher_outputs").iterdir() if not p.name.startswith(".")),
    }


@pytest.fixture(scope="module")
def plain_runs(tmp_path_factory):
    """One sweep without teachers: plain multi-task, then the same student trained on each task alone."""
    tmp = tmp_path_factory.mktemp("plain")
    jobs, _ = sweep(
        environment(tmp), tmp, "method.teachers=false", "method.single_task=false,true", "method.student.epochs=1"
    )
    return {"tmp": tmp, "multitask": jobs[0], "single": jobs[1]}


def test_bam_run_reports_per_task_metrics_and_glue_mean(bam_runs):
    run = bam_runs["annealed"]
    metrics = json.loads((run / "metrics.json").read_text())
    for role in ("teacher", "student"):
        for split in ("val", "test"):
            for key in ("reviews/acc", "reviews/f1", "sts/pearson", "sts/spearman"):
                assert -100.0 <= metrics[f"{role}/{split}/{key}"] <= 100.0
            expected = (metrics[f"{role}/{split}/reviews/acc"] + metrics[f"{role}/{split}/sts/pearson"]) / 2
            assert metrics[f"{role}/{split}/glue_mean"] == pytest.approx(expected, abs=1e-6)
    assert "kdlab results" in bam_runs["stdout"] and "val/glue_mean" in bam_runs["stdout"]
    header = (run / "logs" / "student" / "metrics.csv").read_text().splitlines()[0].split(",")
    assert {
        "train/loss",
        "train/lambda",
        "train/mix/reviews",
        "train/mix/sts",
        "val/reviews/acc",
        "val/sts/pearson",
        "val/glue_mean",
    } <= set(header)


def test_each_teacher_is_trained_once_and_its_predictions_cached(bam_runs):
    run, cache = bam_runs["annealed"], bam_runs["cache"]
    teachers = json.loads((run / "teachers.json").read_text())
    assert sorted(teachers) == ["reviews", "sts"]
    assert len(cache) == 2 and sorted(t["outputs"]["path"] for t in teachers.values()) == [str(p) for p in cache]
    from safetensors.torch import load_file

    for name, rows, width in (("reviews", 160, 2), ("sts", 96, 1)):
        assert teachers[name]["origin"].startswith("trained in this run") and teachers[name]["outputs"]["hit"] is False
        (shard,) = Path(teachers[name]["outputs"]["path"]).glob("*.safetensors")  # one shard: every row computed once
        entry = load_file(shard)
        assert tuple(entry["outputs"].shape) == (rows, width) and tuple(entry["content_ids"].shape) == (rows, 16)
        assert (run / f"teacher_{name}" / "model" / "config.json").exists()
    # the second job reused both teachers by config hash and read their predictions from the cache (no new entry)
    again = json.loads((bam_runs["fixed"] / "teachers.json").read_text())
    assert all(t["origin"].startswith("reused: ") and t["outputs"]["hit"] is True for t in again.values())
    assert not (bam_runs["fixed"] / "teacher_reviews" / "checkpoints").exists()


def test_lambda_follows_the_step_and_the_mix_is_logged(bam_runs):
    run = bam_runs["annealed"]
    mix = json.loads((run / "student" / "mix.json").read_text())
    steps_per_epoch = 10 + 6  # ceil(160 / 16) + ceil(96 / 16)
    assert [sum(epoch.values()) for epoch in mix["epochs"]] == [steps_per_epoch, steps_per_epoch]
    total = 2 * steps_per_epoch
    lambdas = logged(run, "student", "train/lambda")
    assert len(lambdas) == total
    for step, value in lambdas:
        assert value == pytest.approx(step / total, abs=1e-6)
    assert lambdas[0][1] == 0.0 and lambdas[-1][1] == pytest.approx((total - 1) / total)
    shares = logged(run, "student", "train/mix/reviews")
    assert [v for _, v in shares] == pytest.approx([epoch["reviews"] / steps_per_epoch for epoch in mix["epochs"]])
    fixed = logged(bam_runs["fixed"], "student", "train/lambda")
    assert len(fixed) == total and {v for _, v in fixed} == {0.25}


def test_exported_student_loads_and_reproduces_its_test_metric(bam_runs):
    from kdlab.data.embedded import reviews
    from kdlab.models.multitask import load_multitask

    run = bam_runs["annealed"]
    model, tokenizer = load_multitask(run / "student" / "model")
    model.eval()
    assert model.names == ["reviews", "sts"] and [t["num_labels"] for t in model.tasks] == [2, 1]
    rows = reviews("test", size=48)
    with torch.no_grad():
        batch = dict(
            tokenizer([r["text"] for r in rows], padding=True, truncation=True, max_length=32, return_tensors="pt")
        )
        predicted = model(batch, "reviews").argmax(-1).tolist()
    accuracy = 100 * sum(["negative", "positive"][p] == r["label"] for p, r in zip(predicted, rows)) / len(rows)
    assert accuracy == pytest.approx(
        json.loads((run / "metrics.json").read_text())["student/test/reviews/acc"],
        abs=1e-4,  # float32 ×100
    )


def test_without_teachers_no_teacher_is_trained_or_cached(plain_runs):
    for run in (plain_runs["multitask"], plain_runs["single"]):
        metrics = json.loads((run / "metrics.json").read_text())
        assert not [key for key in metrics if key.startswith("teacher/")] and "student/val/glue_mean" in metrics
        assert not (run / "teachers.json").exists() and not list(run.glob("teacher_*"))
    cache = plain_runs["tmp"] / "cache"
    assert not (cache / "teacher_outputs").exists() and not (cache / "teachers").exists()
    header = (plain_runs["multitask"] / "logs" / "student" / "metrics.csv").read_text().splitlines()[0].split(",")
    assert "train/loss" in header and "train/lambda" not in header


def test_single_task_trains_the_student_on_each_task_alone(plain_runs):
    from kdlab.models.multitask import load_multitask

    run = plain_runs["single"]
    metrics = json.loads((run / "metrics.json").read_text())
    for split in ("val", "test"):
        expected = (metrics[f"student/{split}/reviews/acc"] + metrics[f"student/{split}/sts/pearson"]) / 2
        assert metrics[f"student/{split}/glue_mean"] == pytest.approx(expected, abs=1e-6)
    assert not (run / "student").exists()
    for name in ("reviews", "sts"):
        model, _ = load_multitask(run / f"student_{name}" / "model")
        assert model.names == [name]
        assert json.loads((run / f"student_{name}" / "mix.json").read_text())["epochs"] == [
            {name: {"reviews": 10, "sts": 6}[name]}
        ]
    assert (plain_runs["multitask"] / "student" / "model" / "heads.json").exists()


def test_a_task_without_a_test_set_reports_validation_metrics_only(tmp_path):
    """RTE and CoLA have no labelled GLUE test set: `test: null` gives their val metrics, no test/glue_mean."""
    result = subprocess.run(
        [sys.executable, "-m", "kdlab.train", *SMALL, "data.tasks.1.test=null", "method.student.epochs=1"],
        cwd=REPO,
        env=environment(tmp_path),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (run,) = (tmp_path / "outputs" / "runs").iterdir()
    metrics = json.loads((run / "metrics.json").read_text())
    for role in ("teacher", "student"):
        assert {f"{role}/val/sts/pearson", f"{role}/val/glue_mean", f"{role}/test/reviews/acc"} <= set(metrics)
        assert (
            not [key for key in metrics if key.startswith(f"{role}/test/sts/")]
            and f"{role}/test/glue_mean" not in metrics
        )


def test_a_given_ckpt_teacher_with_the_wrong_label_count_stops_before_any_training(cli, tmp_path, tiny_tokenizer):
    """A kdlab .ckpt carries its config inside, so its head is checked when the pipeline starts (before any teacher trains)."""
    from kdlab.models.backbone import build_model
    from kdlab.models.files import checkpoint_payload

    model = build_model(
        {"config": {"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 64}},
        "classification",
        ["a", "b", "c"],
        tiny_tokenizer,
    )
    path = tmp_path / "three.ckpt"
    torch.save(
        {
            "state_dict": {f"model.{k}": v for k, v in model.state_dict().items()},
            "kdlab": checkpoint_payload(model, tiny_tokenizer),
        },
        path,
    )
    result = cli("experiment=bam_toy", f"+method.trained_teachers.sts={path}", timeout=120)
    assert result.returncode == 2, result.stderr[-2000:]
    assert result.stderr.strip().splitlines()[-1] == (
        "kdlab: error: method.trained_teachers.sts: the teacher has 3 output labels but data.labels gives 1"
    )
    (run,) = run_dirs(tmp_path)
    assert not list(run.glob("teacher_*")) and not (run / "metrics.json").exists()


def test_kdlab_eval_reproduces_the_multitask_students_metrics(bam_runs):
    run = bam_runs["annealed"]
    expected = json.loads((run / "metrics.json").read_text())
    env = environment(bam_runs["tmp"])
    data = [arg for arg in SMALL if arg.startswith("data.tasks") and "size" in arg]
    base = [
        sys.executable,
        "-m",
        "kdlab.eval",
        f"model_path={run / 'student' / 'model'}",
        "data=multitask_toy",
        "data.max_length=32",
    ]
    result = subprocess.run([*base, *data], cwd=REPO, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    printed = dict(line.split("\t") for line in result.stdout.splitlines() if "\t" in line)
    for key in ("val/reviews/acc", "test/sts/pearson", "test/glue_mean", "val/glue_mean"):
        assert printed[key] == f"{expected[f'student/{key}']:.2f}", key  # scores print ×100, 2 decimals
    # the tasks must be the model's heads in order
    wrong = subprocess.run(
        [*base, *data, "data.tasks.0.name=movies"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert wrong.returncode == 2 and wrong.stderr.strip().splitlines()[-1].startswith(
        "kdlab: error: data.tasks: must be the model's heads in order (name, kind, labels): [('reviews', 'classification'"
    )
    single = subprocess.run(
        [*base[:-2], "data=reviews"], cwd=REPO, env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert single.returncode == 2 and "is a multi-task export: choose a multi-task data config" in single.stderr
