"""Tracking (conf/logger/): TensorBoard, MLflow and offline W&B runs hold the metrics and the config, read back
through each tool's own reader; the logger configs compose and instantiate; a wrong export_artifact is one clear line."""

import json
import os
import subprocess
import sys

import pytest
import yaml
from conftest import REPO, run_dirs
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from settings import FAST

from kdlab.resolvers import conf_dir, register_resolvers

SMALL = FAST  # tests/settings.py


def _needs(*modules):
    missing = [m for m in modules if __import__("importlib").util.find_spec(m) is None]
    return pytest.mark.skipif(bool(missing), reason=f"{missing} not installed (pip install 'kdlab[tracking]')")


@pytest.mark.parametrize(
    "choice, expected",
    [
        ("csv", {"csv"}),
        ("tensorboard", {"csv", "tensorboard"}),
        ("mlflow", {"csv", "mlflow"}),
        ("wandb", {"csv", "wandb"}),
        ("many", {"csv", "tensorboard", "wandb", "mlflow"}),
        ("[tensorboard,mlflow]", {"csv", "tensorboard", "mlflow"}),
    ],
)
def test_logger_choices_compose_and_instantiate(choice, expected, tmp_path, monkeypatch):
    monkeypatch.setenv("KDLAB_OUTPUT_DIR", str(tmp_path / "out"))
    monkeypatch.setenv("WANDB_MODE", "offline")
    # as every kdlab process has it (kdlab/tracking.py), whichever tests ran before this one in its worker
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    monkeypatch.chdir(tmp_path)  # where a logger might write on construction
    register_resolvers()
    with initialize_config_dir(config_dir=conf_dir(), version_base="1.3"):
        cfg = compose("train", overrides=[f"logger={choice}"], return_hydra_config=True)
    cfg.hydra.runtime.output_dir = str(tmp_path / "run")  # what Hydra sets for a run: ${paths.output_dir}
    HydraConfig.instance().set_config(cfg)
    assert set(cfg.logger) == expected
    if "mlflow" in expected:  # a local file store shared by all runs, under the output folder
        assert cfg.logger.mlflow.tracking_uri == f"file:{tmp_path / 'out'}/mlruns"
        assert cfg.export_artifact.mlflow is False
    if "wandb" in expected:
        assert cfg.logger.wandb.group is None and cfg.export_artifact.wandb is False
    for node in cfg.logger.values():  # every logger node instantiates as it is (kdlab's own switches sit outside)
        assert type(instantiate(node)).__name__ == node._target_.rsplit(".", 1)[1]


@pytest.fixture(scope="module")
def tracked_run(tmp_path_factory):
    """One small run with every tracker (logger=many, W&B offline) and the exported models logged as artifacts."""
    tmp = tmp_path_factory.mktemp("tracked")
    env = {
        **os.environ,
        "KDLAB_OUTPUT_DIR": str(tmp / "outputs"),
        "KDLAB_CACHE_DIR": str(tmp / "cache"),
        "HF_HUB_OFFLINE": "1",
        "WANDB_MODE": "offline",
        "WANDB_SILENT": "true",
        "OMP_NUM_THREADS": "1",
        # W&B stages artifact files and caches outside the run folder: keep them in the test's folder
        "WANDB_DATA_DIR": str(tmp / "wandb-data"),
        "WANDB_CACHE_DIR": str(tmp / "wandb-cache"),
        "WANDB_CONFIG_DIR": str(tmp / "wandb-config"),
    }
    args = [
        *SMALL,
        "logger=many",
        "export_artifact.wandb=true",
        "export_artifact.mlflow=true",
        "logger.wandb.tags=[kdlab-test]",
        "loss.temperature=3.5",
    ]
    result = subprocess.run(
        [sys.executable, "-m", "kdlab.train", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (run,) = run_dirs(tmp)
    return run, json.loads((run / "metrics.json").read_text()), tmp


@_needs("tensorboard")
def test_tensorboard_event_files_hold_the_metrics(tracked_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run, metrics, _ = tracked_run
    for stage in ("teacher", "student"):
        folder = run / "tensorboard" / stage
        assert list(folder.glob("events.out.tfevents.*"))
        accumulator = EventAccumulator(str(folder)).Reload()  # every event file of the stage, in order
        tags = set(accumulator.Tags()["scalars"])
        assert {"train/loss", "val/acc", "test/acc", "test/f1"} <= tags
        assert len(accumulator.Scalars("train/loss")) >= 4  # debug=fast: 4 steps, logged every step
        assert accumulator.Scalars("test/acc")[-1].value == pytest.approx(metrics[f"{stage}/test/acc"], abs=1e-6)
        if stage == "student":
            assert {"train/loss_soft", "train/loss_hard"} <= tags


@_needs("mlflow")
def test_mlflow_runs_hold_metrics_config_and_exported_model(tracked_run, monkeypatch):
    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 reads its file store only when asked to
    run, metrics, tmp = tracked_run
    client = MlflowClient(f"file:{tmp / 'outputs' / 'mlruns'}")
    experiment = client.get_experiment_by_name("kdlab")
    runs = {r.info.run_name: r for r in client.search_runs([experiment.experiment_id])}
    assert set(runs) == {"hinton-reviews/teacher", "hinton-reviews/student"}
    student = runs["hinton-reviews/student"]
    assert student.info.status == "FINISHED"
    assert student.data.tags["kdlab.stage"] == "student" and student.data.tags["kdlab.group"] == "hinton-reviews"
    assert student.data.tags["kdlab.run_dir"] == str(run)
    assert student.data.metrics["test/acc"] == pytest.approx(metrics["student/test/acc"], abs=1e-6)
    assert len(client.get_metric_history(student.info.run_id, "train/loss")) >= 4
    assert client.get_metric_history(student.info.run_id, "val/acc")
    # the resolved config: flattened as params, and whole as the artifact config.yaml
    assert float(student.data.params["loss/temperature"]) == 3.5
    assert student.data.params["data/train/size"] == "200"
    artifacts = {a.path for a in client.list_artifacts(student.info.run_id)}
    assert {"config.yaml", "model"} <= artifacts
    downloaded = client.download_artifacts(student.info.run_id, "config.yaml", str(tmp / "dl"))
    assert yaml.safe_load(open(downloaded)) == yaml.safe_load((run / "config.yaml").read_text())
    model_files = {a.path for a in client.list_artifacts(student.info.run_id, "model")}
    assert "model/model.safetensors" in model_files and "model/config.json" in model_files


def _wandb_inspect(folder, *flags):
    """`wandb leet inspect`: W&B's own reader of an offline run's .wandb transaction log (no network)."""
    out = subprocess.run(
        [sys.executable, "-m", "wandb", "leet", "inspect", *flags, str(folder)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "WANDB_MODE": "offline"},
    )
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout


def test_wandb_offline_runs_hold_metrics_config_and_exported_model(tracked_run):
    run, metrics, _ = tracked_run
    offline = sorted((run / "wandb").glob("offline-run-*"))
    assert len(offline) == 2  # one W&B run per stage
    summaries = {folder: json.loads(_wandb_inspect(folder, "--summary", "--json")) for folder in offline}
    assert sorted(s["name"] for s in summaries.values()) == ["hinton-reviews/student", "hinton-reviews/teacher"]
    folder, student = next((f, s) for f, s in summaries.items() if s["name"] == "hinton-reviews/student")
    assert student["state"] == "finished" and student["exit_code"] == 0 and student["tags"] == ["kdlab-test"]
    assert student["project"] == "kdlab"
    assert student["config"]["loss"]["temperature"] == 3.5 and student["config"]["data"]["train"]["size"] == 200
    assert student["summary"]["test/acc"] == pytest.approx(metrics["student/test/acc"], abs=1e-6)
    records = [json.loads(line) for line in _wandb_inspect(folder, "--json").splitlines() if line.strip()]
    (header,) = [r["run"] for r in records if r["type"] == "run"]
    assert header["run_group"] == "hinton-reviews" and header["job_type"] == "student"
    assert sum("train/loss" in r["history"]["item"] for r in records if r["type"] == "history") >= 4
    (artifact,) = [r["artifact"] for r in records if r["type"] == "artifact"]
    assert artifact["type"] == "model" and artifact["name"] == "hinton-reviews-student"
    assert {"model.safetensors", "config.json", "tokenizer.json"} <= {
        c["path"] for c in artifact["manifest"]["contents"]
    }


def test_export_artifact_for_a_logger_without_artifacts_is_one_clear_line(cli):
    result = cli(*SMALL, "+export_artifact.csv=true")
    assert result.returncode == 2, result.stderr[-2000:]
    assert result.stderr.strip().splitlines()[-1] == (
        "kdlab: error: export_artifact.csv: is for the wandb and mlflow loggers, not pytorch_lightning.loggers.CSVLogger"
    )


@_needs("tensorboard", "mlflow")
def test_each_stage_shows_the_settings_it_trained_with(tracked_run, monkeypatch):
    from mlflow.tracking import MlflowClient

    run, _, tmp = tracked_run
    student = yaml.safe_load((run / "tensorboard" / "student" / "hparams.yaml").read_text())
    teacher = yaml.safe_load((run / "tensorboard" / "teacher" / "hparams.yaml").read_text())
    assert student["loss"]["temperature"] == 3.5 and student["data"]["train"]["size"] == 200  # no longer {}
    assert teacher["loss"] == {"alpha": 0.0, "terms": "gold labels only: no teacher, no KD term"}
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    client = MlflowClient(f"file:{tmp / 'outputs' / 'mlruns'}")
    runs = {r.info.run_name: r for r in client.search_runs([client.get_experiment_by_name("kdlab").experiment_id])}
    assert runs["hinton-reviews/teacher"].data.params["loss/alpha"] == "0.0"
    assert runs["hinton-reviews/student"].data.params["loss/alpha"] == "0.5"


@_needs("tensorboard")
def test_a_reused_teacher_reports_its_metrics_to_the_trackers(tmp_path):
    from conftest import kdlab_folders
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from kdlab.api import train

    with kdlab_folders(tmp_path):
        first = train(*SMALL, "logger=tensorboard")
        second = train(*SMALL, "logger=tensorboard")
    assert json.loads((second.path / "teacher" / "teacher.json").read_text())["origin"].startswith("reused")
    assert not (second.path / "logs" / "teacher").exists()  # the CSV log holds what trained in this folder only
    events = EventAccumulator(str(second.path / "tensorboard" / "teacher")).Reload()
    assert events.Scalars("test/acc")[-1].value == pytest.approx(first.metrics["teacher/test/acc"], abs=1e-6)
