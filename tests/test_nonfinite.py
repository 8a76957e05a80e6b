"""A non-finite loss stops training (issue 9): one line naming the step and the loss terms, exit 2, what earlier
stages finished is kept, and nothing of the failed stage looks finished; no step after the NaN is taken."""

from __future__ import annotations

import csv
import json
import math
import re

import pytest
import torch
from conftest import run_dirs
from settings import FAST, adamw

from kdlab.errors import TrainingError

SMALL = FAST  # tests/settings.py


def test_a_model_that_outputs_nan_stops_at_its_first_step_naming_the_loss(tiny_tokenizer):
    """The check itself, on a real tiny model whose head was overwritten with NaN (no trainer: step 0)."""
    from kdlab.methods.finetune import Finetune
    from kdlab.models.backbone import build_model

    model = build_model(
        {"config": {"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 64}},
        "classification",
        ["neg", "pos"],
        tiny_tokenizer,
    )
    module = Finetune(model, tiny_tokenizer, "classification", 2, adamw(lr=1e-3), ["acc"])
    encoded = tiny_tokenizer(["a good film", "a bad one"], padding=True, return_tensors="pt")
    batch = {**encoded, "labels": torch.tensor([1, 0])}
    assert math.isfinite(float(module.training_step(batch, 0)))
    with torch.no_grad():
        model.classifier.weight.fill_(float("nan"))
    with pytest.raises(
        TrainingError, match=r"^train loss is not finite at step 0: loss=nan \(epoch 0, batch 3\); training stopped$"
    ):
        module.training_step(batch, 3)


def test_a_diverging_student_stops_the_run_with_one_line_keeping_the_teacher(cli, tmp_path):
    """Hinton KD with a student learning rate of 1e30: the first update makes its weights overflow, so the next loss is NaN."""
    result = cli(*SMALL, "method.student.optimizer.lr=1e30", timeout=300)
    assert result.returncode == 2, result.stderr[-3000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("kdlab: error:")]
    assert len(errors) == 1 and "Traceback" not in result.stderr, result.stderr[-3000:]
    found = re.fullmatch(
        r"kdlab: error: train loss is not finite at step (\d+): loss=(\S+) loss_soft=(\S+) loss_hard=(\S+) "
        r"\(epoch 0, batch (\d+)\); training stopped",
        errors[0],
    )
    assert found, errors[0]
    step = int(found.group(1))
    assert step >= 1 and not math.isfinite(float(found.group(2)))

    (run,) = run_dirs(tmp_path)
    assert (run / "teacher" / "model" / "config.json").exists()  # the finished teacher stage is kept
    assert not (run / "metrics.json").exists() and not (run / "student" / "model").exists()  # nothing finished-looking
    # the run folder says how it ended: the line in train.log, the error in error.json (kdlab-report: a failed run)
    message = errors[0].removeprefix("kdlab: error: ")
    assert f"run failed: TrainingError: {message}" in (run / "train.log").read_text()
    recorded = json.loads((run / "error.json").read_text())
    assert recorded["type"] == "TrainingError" and recorded["message"] == message and recorded["kdlab_error"] is True
    with open(run / "logs" / "student" / "metrics.csv", newline="") as handle:
        logged = [row for row in csv.DictReader(handle) if row.get("train/loss")]
    assert logged and all(
        math.isfinite(float(row["train/loss"])) for row in logged
    )  # a NaN is never logged as a train step
    assert max(int(row["step"]) for row in logged) < step  # and no step after it was taken
