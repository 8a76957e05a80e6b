"""End to end through the CLI: teacher fine-tuning → KD student (→ no-KD baseline), run folder, exports, reuse."""

import json

import pytest
import torch
from conftest import run_dirs

SMALL = [
    "method.deploy_benchmark=false",  # no export timing in tests (tests/test_deploy.py times them)
    "data.train.size=1200",
    "data.validation.size=200",
    "data.test.size=400",
    "model.teacher.config.hidden_size=64",
    "model.teacher.config.num_hidden_layers=2",
    "model.teacher.config.intermediate_size=128",
    "method.teacher.epochs=5",
    "method.student.epochs=5",
    "data.batch_size=16",
    "trainer.enable_progress_bar=false",
]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """One small hinton run with baseline through `python -m kdlab.train` (shared by the tests below)."""
    import os
    import subprocess
    import sys

    from conftest import REPO

    tmp = tmp_path_factory.mktemp("e2e")
    env = {
        **os.environ,
        "KDLAB_OUTPUT_DIR": str(tmp / "outputs"),
        "KDLAB_CACHE_DIR": str(tmp / "cache"),
        "HF_HUB_OFFLINE": "1",
    }
    result = subprocess.run(
        [sys.executable, "-m", "kdlab.train", *SMALL, "method.baseline=true"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (run,) = run_dirs(tmp)
    return run, result, env, tmp


def test_run_folder_has_config_commit_metrics_checkpoints_and_models(finished_run):
    run, result, _, _ = finished_run
    assert "kdlab results" in result.stdout and "student (no KD)" in result.stdout
    assert "loss:\n  alpha: 0.5" in (run / "config.yaml").read_text()
    info = json.loads((run / "run.json").read_text())
    assert len(info["git"]["commit"] or "") == 40
    metrics = json.loads((run / "metrics.json").read_text())
    for role in ("teacher", "student", "baseline"):
        for key in ("val/acc", "test/acc", "val/f1", "test/f1"):
            assert isinstance(metrics[f"{role}/{key}"], float)
    for stage in ("teacher", "student", "baseline"):
        assert (run / stage / "checkpoints" / "best.ckpt").exists() and (
            run / stage / "checkpoints" / "last.ckpt"
        ).exists()
        assert (run / stage / "model" / "model.safetensors").exists()
    header = (run / "logs" / "student" / "metrics.csv").read_text().splitlines()[0].split(",")
    assert {"train/loss", "train/loss_soft", "train/loss_hard", "val/acc"} <= set(header)


def test_students_and_teacher_score_above_chance(finished_run):
    run, _, _, _ = finished_run
    metrics = json.loads((run / "metrics.json").read_text())
    # 400 balanced test examples: chance is 0.5 ± 0.025; 0.6 is four standard deviations above it
    assert metrics["teacher/test/acc"] > 60
    assert metrics["student/test/acc"] > 60
    assert metrics["baseline/test/acc"] > 60


def test_exported_student_loads_with_automodel_and_reproduces_test_accuracy(finished_run):
    from transformers import AutoModel, AutoModelForSequenceClassification, AutoTokenizer

    from kdlab.data.embedded import reviews

    run, _, _, _ = finished_run
    folder = run / "student" / "model"
    assert AutoModel.from_pretrained(folder).config.num_hidden_layers == 1
    model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    rows = reviews("test", size=400)
    with torch.no_grad():
        batch = tokenizer([r["text"] for r in rows], padding=True, truncation=True, max_length=64, return_tensors="pt")
        predicted = model(**batch).logits.argmax(-1).tolist()
    accuracy = 100 * sum(model.config.id2label[p] == r["label"] for p, r in zip(predicted, rows)) / len(rows)
    metrics = json.loads((run / "metrics.json").read_text())
    assert accuracy == pytest.approx(metrics["student/test/acc"], abs=1e-4)  # float32 ×100


def test_second_run_reuses_the_stored_teacher(finished_run):
    import subprocess
    import sys

    from conftest import REPO

    first, _, env, tmp = finished_run
    result = subprocess.run(
        [sys.executable, "-m", "kdlab.train", *SMALL, "method.student.epochs=1"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    second = run_dirs(tmp)[-1]
    info = json.loads((second / "teacher" / "teacher.json").read_text())
    assert info["origin"].startswith("reused: ")
    assert info["outputs"]["hit"] is True  # the teacher never ran: its logits came from the cache
    assert json.loads((first / "teacher" / "teacher.json").read_text())["outputs"]["hit"] is False
    assert not (second / "teacher" / "checkpoints").exists()  # no teacher training happened
    teacher_metrics = json.loads((first / "metrics.json").read_text())["teacher/test/acc"]
    assert json.loads((second / "metrics.json").read_text())["teacher/test/acc"] == teacher_metrics


def test_kdlab_eval_on_the_exported_model_and_its_checkpoint(finished_run):
    import subprocess
    import sys

    from conftest import REPO

    run, _, env, tmp = finished_run
    expected = json.loads((run / "metrics.json").read_text())
    for target in (run / "student" / "model", run / "student" / "checkpoints" / "best.ckpt"):
        result = subprocess.run(
            [sys.executable, "-m", "kdlab.eval", f"model_path={target}"],  # the run's own data
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert result.returncode == 0, result.stderr[-3000:]
        line = next(line for line in result.stdout.splitlines() if line.startswith("test/acc"))
        assert line.split("\t")[1] == f"{expected['student/test/acc']:.2f}"  # scores print ×100, 2 decimals


def test_multirun_sweep_and_cached_teacher_outputs_train_like_a_live_teacher(cli):
    """Two sweep jobs, teacher logits from the cache vs live every step: same seed ⇒ the same student."""
    result = cli(
        "-m",
        "method.teacher_outputs=cache,live",
        "debug=fast",
        "trainer.limit_train_batches=8",
        "data.train.size=200",
        "data.validation.size=64",
        "data.test.size=64",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (sweep,) = (cli.tmp_path / "outputs" / "sweeps").iterdir()
    jobs = sorted(p for p in sweep.iterdir() if p.name.isdigit())
    modes = [json.loads((job / "teacher" / "teacher.json").read_text())["outputs"]["mode"] for job in jobs]
    assert modes == ["cache", "live"]
    cached, live = (json.loads((job / "metrics.json").read_text()) for job in jobs)
    assert json.loads((jobs[1] / "teacher" / "teacher.json").read_text())["origin"].startswith("reused: ")
    for key in ("student/val/loss", "student/test/loss", "student/test/acc"):
        assert cached[key] == pytest.approx(live[key], abs=1e-4), key


def test_wandb_offline_run_records_metrics_and_config(cli):
    result = cli(
        "logger=wandb",
        "debug=fast",
        "data.train.size=200",
        "data.validation.size=50",
        "data.test.size=50",
        env={"WANDB_MODE": "offline"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (run,) = run_dirs(cli.tmp_path)
    offline = sorted((run / "wandb").glob("offline-run-*"))
    assert len(offline) == 2  # one W&B run per stage: teacher, student
    assert (run / "logs" / "student" / "metrics.csv").exists()  # csv stays on beside W&B
    # offline runs keep config and history in the run's .wandb record file (synced later by `wandb sync`)
    record = next(offline[-1].glob("run-*.wandb")).read_bytes()
    assert b"temperature" in record and b"test/acc" in record and b"val/acc" in record


def test_sentence_pair_regression_through_a_user_config_folder(cli, tmp_path):
    """A user's own data config (found through hydra.searchpath) with sentence pairs and gold scores 0–5."""
    import random

    from kdlab.data.embedded import reviews

    rows = reviews("train", size=600)
    rng = random.Random(0)
    lines = ["sentence1\tsentence2\tscore"]
    for _ in range(500):
        a, b = rng.sample(rows, 2)
        lines.append(f"{a['text']}\t{b['text']}\t{5.0 if a['label'] == b['label'] else 0.0}")
    data_file = tmp_path / "pairs.tsv"
    data_file.write_text("\n".join(lines) + "\n")
    conf = tmp_path / "myconf" / "data"
    conf.mkdir(parents=True)
    (conf / "toy_pairs.yaml").write_text(
        "name: toy_pairs\ntask: regression\nlabels: null\nlabel_scale: 5.0\n"
        "columns: {text: sentence1, text_pair: sentence2, label: score}\n"
        f"train: {{path: {data_file}, limit: 400, seed: 0}}\nvalidation: {{path: {data_file}, limit: 100, seed: 1}}\n"
        f"test: {{path: {data_file}, limit: 100, seed: 2}}\n"
        "max_length: 96\nbatch_size: 16\neval_batch_size: 64\nnum_workers: 0\nmetrics: [pearson, spearman]\nmain_metric: spearman\n"
    )
    result = cli(
        f"hydra.searchpath=[file://{tmp_path / 'myconf'}]", "data=toy_pairs", "debug=fast", "method.baseline=true"
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (run,) = run_dirs(cli.tmp_path)
    metrics = json.loads((run / "metrics.json").read_text())
    for role in ("teacher", "student", "baseline"):
        assert -100.0 <= metrics[f"{role}/test/spearman"] <= 100.0 and -100.0 <= metrics[f"{role}/val/pearson"] <= 100.0
    from transformers import AutoConfig

    assert AutoConfig.from_pretrained(run / "student" / "model").problem_type == "regression"


def test_finetune_method_trains_one_model(cli):
    result = cli(
        "method=finetune",
        "method.train=student",
        "debug=fast",
        "data.train.size=200",
        "data.validation.size=50",
        "data.test.size=50",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (run,) = run_dirs(cli.tmp_path)
    assert set(json.loads((run / "metrics.json").read_text())) == {
        "student/val/acc",
        "student/val/f1",
        "student/val/loss",
        "student/test/acc",
        "student/test/f1",
        "student/test/loss",
        "student/checkpoint/epoch",
        "student/checkpoint/step",
    }
    assert (run / "student" / "model" / "config.json").exists() and not (run / "teacher").exists()


def test_hidden_state_matching_run_logs_its_term(cli):
    result = cli(
        "debug=fast",
        "method.teacher_outputs=live",
        "loss.hidden.weight=0.5",
        "data.train.size=200",
        "data.validation.size=50",
        "data.test.size=50",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (run,) = run_dirs(cli.tmp_path)
    rows = (run / "logs" / "student" / "metrics.csv").read_text().splitlines()
    column = rows[0].split(",").index("train/loss_hidden")
    assert any(row.split(",")[column] and float(row.split(",")[column]) > 0 for row in rows[1:])
