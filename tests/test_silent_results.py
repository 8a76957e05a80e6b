"""Three ways a run used to give a wrong result without a word (issue 16): a stale stored teacher after a
data file changed in place, the teacher checkpoint taken from its earliest tied epoch, and `kdlab-eval`
scoring a model on another task's data."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from conftest import kdlab_folders
from settings import TINY_TEACHER

WORDS = {"1": ["good", "great", "fine", "lovely"], "0": ["bad", "awful", "poor", "dull"]}
TINY = [
    "method.deploy_benchmark=false",  # no export timing in tests (tests/test_deploy.py times them)
    "data=sst2",
    *TINY_TEACHER,
    "model.teacher.vocab_size=200",
    "method.teacher.epochs=2",
    "method.student.epochs=1",
    "data.batch_size=16",
    "trainer.enable_progress_bar=false",
]


def write_sst2(root: Path, sizes: dict[str, int] | None = None, flip: tuple[str, ...] = ()) -> Path:
    """A learnable SST-2-shaped folder (a sentiment word decides the label); `flip` inverts the labels of those files."""
    folder = root / "glue" / "SST-2"
    folder.mkdir(parents=True, exist_ok=True)
    for name, size in (sizes or {"train": 96, "dev": 32, "test": 32}).items():
        rng = random.Random(name)
        lines = ["sentence\tlabel"]
        for _ in range(size):
            label = rng.choice("01")
            written = str(1 - int(label)) if name in flip else label
            lines.append(
                f"the film was {rng.choice(WORDS[label])} and {rng.choice(['long', 'short', 'new'])}\t{written}"
            )
        (folder / f"{name}.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


def teacher_record(run) -> dict:
    return json.loads((run.path / "teacher" / "teacher.json").read_text())


def test_teacher_store_is_keyed_by_data_content_not_file_name(tmp_path):
    from kdlab.api import train

    data = write_sst2(tmp_path / "data")
    with kdlab_folders(tmp_path, KDLAB_DATA_DIR=str(data)):
        first = train(*TINY)
        assert teacher_record(first)["origin"].startswith("trained in this run")
        again = train(*TINY)
        assert teacher_record(again)["origin"].startswith("reused")
        assert again.metrics["teacher/test/acc"] == first.metrics["teacher/test/acc"]

        write_sst2(data, flip=("train",))  # the same file names, every training label flipped
        relabelled = train(*TINY)
        assert teacher_record(relabelled)["origin"].startswith("trained in this run")

        write_sst2(data, flip=("train", "test"))  # only the test file changes: same teacher, scored on the new rows
        rescored = train(*TINY)
        assert teacher_record(rescored)["origin"].startswith("reused")
        # binary labels, every one flipped: the reused teacher's accuracy on the new file is exactly the complement
        assert rescored.metrics["teacher/test/acc"] == pytest.approx(100.0 - relabelled.metrics["teacher/test/acc"])
        assert rescored.metrics["teacher/val/acc"] == relabelled.metrics["teacher/val/acc"]


class ScriptedValidation:
    """A LightningModule factory whose epoch e logs scripted val/acc and val/loss values."""

    @staticmethod
    def module(acc: list[float], loss: list[float]):
        import pytorch_lightning as pl
        import torch

        class Scripted(pl.LightningModule):
            def __init__(self):
                super().__init__()
                self.layer = torch.nn.Linear(2, 1)

            def training_step(self, batch, batch_idx):
                return self.layer(batch[0]).pow(2).mean()

            def validation_step(self, batch, batch_idx):
                self.log("val/acc", acc[self.current_epoch])
                self.log("val/loss", loss[self.current_epoch])

            def configure_optimizers(self):
                return torch.optim.SGD(self.parameters(), lr=0.01)

        return Scripted()


def fit_scripted(tmp_path: Path, acc: list[float], loss: list[float], **options) -> tuple[int, object]:
    import pytorch_lightning as pl
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    from kdlab.callbacks import BestCheckpoint

    loader = DataLoader(TensorDataset(torch.ones(4, 2)), batch_size=2)
    callback = BestCheckpoint(dirpath=str(tmp_path / "ckpt"), filename="best", monitor="val/acc", mode="max", **options)
    trainer = pl.Trainer(
        max_epochs=len(acc),
        callbacks=[callback],
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    trainer.fit(ScriptedValidation.module(acc, loss), train_dataloaders=loader, val_dataloaders=loader)
    return int(torch.load(callback.best_model_path, weights_only=True)["epoch"]) + 1, callback


def test_a_tie_on_the_monitored_metric_is_broken_by_the_validation_loss(tmp_path):
    acc = [0.5, 1.0, 1.0, 1.0, 0.9]
    loss = [0.70, 0.64, 0.08, 0.30, 0.05]
    epoch, callback = fit_scripted(tmp_path / "a", acc, loss)
    assert epoch == 3 and callback.best_tie == pytest.approx(0.08)
    assert fit_scripted(tmp_path / "b", acc, loss, tie_break=None)[0] == 2  # Lightning's rule: the earliest tied epoch
    assert fit_scripted(tmp_path / "c", acc, loss, tie_mode="max")[0] == 2
    # a strictly better monitored value still wins whatever its loss
    assert fit_scripted(tmp_path / "d", [0.5, 0.9, 1.0], [0.1, 0.2, 0.9])[0] == 3


def test_the_tie_state_survives_a_checkpoint_round_trip(tmp_path):
    from kdlab.callbacks import BestCheckpoint

    _, callback = fit_scripted(tmp_path, [1.0, 1.0], [0.5, 0.2])
    restored = BestCheckpoint(dirpath=str(tmp_path / "ckpt"), filename="best", monitor="val/acc", mode="max")
    restored.load_state_dict(callback.state_dict())
    assert restored.best_tie == pytest.approx(0.2)


def test_a_bad_tie_mode_is_a_config_error_naming_the_key():
    from kdlab.api import compose
    from kdlab.config import validate
    from kdlab.errors import ConfigError

    with pytest.raises(ConfigError, match=r"callbacks\.model_checkpoint\.tie_mode.*min or max"):
        validate(compose("callbacks.model_checkpoint.tie_mode=lowest"))


def test_kdlab_eval_defaults_to_the_runs_own_data_and_refuses_other_label_names(tmp_path):
    import os
    import subprocess
    import sys

    from conftest import REPO

    from kdlab.api import train

    data = write_sst2(tmp_path / "data")
    with kdlab_folders(tmp_path, KDLAB_DATA_DIR=str(data)):
        run = train(*TINY)
    env = {
        **os.environ,
        "KDLAB_OUTPUT_DIR": str(tmp_path / "outputs"),
        "KDLAB_CACHE_DIR": str(tmp_path / "cache"),
        "HF_HUB_OFFLINE": "1",
    }  # no KDLAB_DATA_DIR: the run's resolved config names its files

    def kdlab_eval(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "kdlab.eval", f"model_path={run.path / 'student' / 'model'}", *args],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )

    own = kdlab_eval()
    assert own.returncode == 0, own.stderr[-3000:]
    lines = own.stdout.splitlines()
    assert f"data: sst2 (the config of the run {run.path})" in lines
    scores = dict(line.split("\t") for line in lines if "\t" in line)
    assert scores["test/acc"] == f"{run.metrics['student/test/acc']:.2f}"  # scores print ×100, 2 decimals
    written = Path(next(line for line in lines if line.startswith("results: ")).split(": ", 1)[1])
    assert json.loads(written.read_text())["test/acc"] == pytest.approx(run.metrics["student/test/acc"], abs=1e-6)

    other = kdlab_eval("data=reviews")  # two labels as well, but other names: another task
    assert other.returncode == 2 and "Traceback" not in other.stderr
    (line,) = [line for line in other.stderr.splitlines() if line.startswith("kdlab: error")]
    assert "data.labels" in line and "['0', '1']" in line and "['negative', 'positive']" in line
