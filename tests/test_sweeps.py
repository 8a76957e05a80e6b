"""Sweeps: an Optuna search, a crashed job that does not stop its sweep, the sweep summary, submitit_local jobs."""

import csv
import importlib.util
import json
import os
import subprocess
import sys

import pytest
import yaml
from conftest import REPO
from settings import FAST

SMALL = FAST  # tests/settings.py


def _needs(module, extra):
    return pytest.mark.skipif(
        importlib.util.find_spec(module) is None, reason=f"{module} not installed (pip install 'kdlab[{extra}]')"
    )


def _search(name):
    """`hparams_search=NAME`, or `+hparams_search=NAME` while conf/train.yaml has no hparams_search default."""
    defaults = yaml.safe_load((REPO / "conf" / "train.yaml").read_text())["defaults"]
    listed = any(isinstance(d, dict) and "hparams_search" in d for d in defaults)
    return f"{'' if listed else '+'}hparams_search={name}"


def _sweep(tmp_path):
    (folder,) = (tmp_path / "outputs" / "sweeps").iterdir()
    return folder


def _summary(folder):
    with open(folder / "summary.csv", newline="") as handle:
        return list(csv.DictReader(handle))


@_needs("hydra_plugins.hydra_optuna_sweeper", "sweep")
def test_optuna_search_runs_three_trials_and_reports_the_best(cli):
    result = cli(
        _search("hinton_optuna"),
        "hydra.sweeper.n_trials=3",
        "hydra.sweeper.sampler.n_startup_trials=3",
        *SMALL,
        env={"OMP_NUM_THREADS": "1"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    folder = _sweep(cli.tmp_path)
    jobs = sorted((p for p in folder.iterdir() if p.name.isdigit()), key=lambda p: int(p.name))
    assert [p.name for p in jobs] == ["0", "1", "2"]
    scores = [json.loads((job / "metrics.json").read_text())["student/val/acc"] for job in jobs]
    best = yaml.safe_load((folder / "optimization_results.yaml").read_text())
    assert best["name"] == "optuna" and set(best["best_params"]) == {"loss.temperature", "loss.alpha"}
    assert best["best_value"] == pytest.approx(max(scores), abs=1e-9)
    losses = [yaml.safe_load((job / "config.yaml").read_text())["loss"] for job in jobs]
    assert all(1.0 <= loss["temperature"] <= 8.0 and 0.1 <= loss["alpha"] <= 1.0 for loss in losses)
    assert len({loss["temperature"] for loss in losses}) == 3  # three different trials
    best_jobs = [loss for loss, score in zip(losses, scores) if score == max(scores)]  # ties are possible
    assert any(
        loss["temperature"] == pytest.approx(best["best_params"]["loss.temperature"])
        and loss["alpha"] == pytest.approx(best["best_params"]["loss.alpha"])
        for loss in best_jobs
    )
    # the teacher is trained by the first trial only; the others reuse it
    assert json.loads((jobs[2] / "teacher" / "teacher.json").read_text())["origin"].startswith("reused: ")
    rows = _summary(folder)
    assert [r["status"] for r in rows] == ["ok", "ok", "ok"]
    assert [float(r["student/val/acc"]) for r in rows] == scores
    assert all(
        float(r["loss.temperature"]) == yaml.safe_load((job / "config.yaml").read_text())["loss"]["temperature"]
        for r, job in zip(rows, jobs)
    )
    assert "best trial: " in result.stdout and "sweep summary" in result.stdout


@pytest.fixture(scope="module")
def crashed_sweep(tmp_path_factory):
    """A 2-job sweep whose job 0 crashes inside Lightning (val_check_interval 5 > the 4 training batches of
    debug=fast: a ValueError, not a kdlab error) and whose job 1 runs; MLflow tracks both."""
    tmp = tmp_path_factory.mktemp("crash")
    env = {
        **os.environ,
        "KDLAB_OUTPUT_DIR": str(tmp / "outputs"),
        "KDLAB_CACHE_DIR": str(tmp / "cache"),
        "HF_HUB_OFFLINE": "1",
        "WANDB_MODE": "disabled",
        "OMP_NUM_THREADS": "1",
    }
    logger = ["logger=mlflow"] if importlib.util.find_spec("mlflow") else []
    result = subprocess.run(
        [sys.executable, "-m", "kdlab.train", "-m", "trainer.val_check_interval=5,1.0", *SMALL, *logger],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    return result, _sweep(tmp), tmp


def test_a_crashed_job_is_recorded_and_the_sweep_goes_on_and_exits_non_zero(crashed_sweep):
    result, folder, _ = crashed_sweep
    assert result.returncode == 1, result.stderr[-3000:]
    crashed, finished = folder / "0", folder / "1"
    error = json.loads((crashed / "error.json").read_text())
    assert error["type"] == "ValueError" and "val_check_interval" in error["message"] and not error["kdlab_error"]
    assert error["traceback"].startswith("Traceback (most recent call last)") and "trainer.fit" in error["traceback"]
    log = (crashed / "train.log").read_text()
    assert "job failed: ValueError" in log and "Traceback (most recent call last)" in log
    assert not (crashed / "metrics.json").exists()
    assert (finished / "metrics.json").exists() and not (finished / "error.json").exists()
    (line,) = [line for line in result.stderr.splitlines() if line.startswith("kdlab: error: ")]
    assert line.startswith(
        "kdlab: error: 1 of 2 sweep jobs failed (job 0: ValueError: `val_check_interval` (5) must be"
    )
    assert line.endswith(f"table: {folder / 'summary.csv'}")


def test_the_summary_lists_every_job_with_overrides_metrics_or_error(crashed_sweep):
    result, folder, _ = crashed_sweep
    rows = _summary(folder)
    assert [(r["job"], r["status"], r["trainer.val_check_interval"]) for r in rows] == [
        ("0", "failed", "5"),
        ("1", "ok", "1.0"),
    ]
    assert rows[0]["error"].startswith("ValueError: ") and rows[0]["student/test/acc"] == ""
    metrics = json.loads((folder / "1" / "metrics.json").read_text())
    assert float(rows[1]["student/test/acc"]) == metrics["student/test/acc"] and rows[1]["error"] == ""
    assert rows[0]["debug"] == rows[1]["debug"] == "fast"
    printed = result.stdout[result.stdout.index("sweep summary") :]
    assert (
        "job 0 failed: ValueError: `val_check_interval` (5)" in printed
        and f"{metrics['student/test/acc']:.2f}" in printed
    )


@_needs("mlflow", "tracking")
def test_the_crashed_jobs_tracking_run_is_closed_as_failed(crashed_sweep, monkeypatch):
    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 reads its file store only when asked to
    _, folder, tmp = crashed_sweep
    client = MlflowClient(f"file:{tmp / 'outputs' / 'mlruns'}")
    runs = client.search_runs([client.get_experiment_by_name("kdlab").experiment_id])
    status = {r.info.run_name: r.info.status for r in runs}
    assert status.pop("hinton-reviews/0/teacher") == "FAILED"
    assert status == {"hinton-reviews/1/teacher": "FINISHED", "hinton-reviews/1/student": "FINISHED"}
    assert {r.data.tags["kdlab.group"] for r in runs} == {folder.name}  # group = the sweep's name


def test_the_summary_command_rebuilds_the_table(crashed_sweep):
    _, folder, _ = crashed_sweep
    before = (folder / "summary.csv").read_text()
    (folder / "summary.csv").unlink()
    out = subprocess.run(
        [sys.executable, "-m", "kdlab.sweep", str(folder)], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert (folder / "summary.csv").read_text() == before
    assert "sweep summary" in out.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "kdlab.sweep", str(folder / "0")], capture_output=True, text=True, timeout=120
    )
    assert bad.returncode == 2
    assert (
        bad.stderr.strip()
        == f"kdlab: error: {folder / '0'}: not a sweep folder (no job folder with .hydra/overrides.yaml)"
    )


def test_a_sweep_of_config_errors_exits_2_and_keeps_each_jobs_record(cli):
    result = cli("-m", "loss.temperature=0,-1", *SMALL)
    assert result.returncode == 2, result.stderr[-3000:]
    folder = _sweep(cli.tmp_path)
    rows = _summary(folder)
    assert [(r["status"], r["error"]) for r in rows] == [
        ("failed", "ConfigError: loss.temperature: must be > 0, got 0"),
        ("failed", "ConfigError: loss.temperature: must be > 0, got -1"),
    ]
    assert (
        "kdlab: error: 2 of 2 sweep jobs failed (job 0: ConfigError: loss.temperature: must be > 0, got 0)"
        in result.stderr
    )


@_needs("hydra_plugins.hydra_submitit_launcher", "cluster")
def test_two_jobs_through_submitit_local_write_their_metrics_and_the_summary(cli):
    result = cli(
        "-m",
        "hydra/launcher=local",
        "method=finetune",
        "method.train=student",
        "method.student.optimizer.lr=1e-3,2e-3",
        *SMALL,
        env={"OMP_NUM_THREADS": "1"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    folder = _sweep(cli.tmp_path)
    assert (folder / ".submitit").is_dir()  # the jobs ran as submitit processes
    for job, lr in (("0", 1e-3), ("1", 2e-3)):
        metrics = json.loads((folder / job / "metrics.json").read_text())
        assert 0.0 <= metrics["student/test/acc"] <= 100.0
        assert yaml.safe_load((folder / job / "config.yaml").read_text())["method"]["student"]["optimizer"]["lr"] == lr
    rows = _summary(folder)
    assert [(r["job"], r["status"], float(r["method.student.optimizer.lr"])) for r in rows] == [
        ("0", "ok", 1e-3),
        ("1", "ok", 2e-3),
    ]
    assert "sweep summary" in result.stdout


@_needs("optuna", "sweep")
def test_optunas_sqlite_storage_works_with_the_installed_sqlalchemy(tmp_path):
    """hydra.sweeper.storage=sqlite:///... : optuna 2.10 (pinned by hydra-optuna-sweeper) fails on SQLAlchemy 2 / alembic >= 1.14."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    study = optuna.create_study(storage=storage, study_name="kdlab", direction="maximize")
    study.optimize(lambda trial: -((trial.suggest_float("x", -1.0, 1.0) - 0.25) ** 2), n_trials=3)
    again = optuna.load_study(study_name="kdlab", storage=storage)  # a later sweep continues the same study
    assert len(again.trials) == 3 and again.best_value == pytest.approx(study.best_value)


def _launcher(name, *overrides):
    """hydra.launcher as `hydra/launcher=<name>` composes it."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from kdlab.resolvers import conf_dir, register_resolvers

    register_resolvers()
    with initialize_config_dir(config_dir=conf_dir(), version_base="1.3"):
        cfg = compose("train", overrides=[f"hydra/launcher={name}", *overrides], return_hydra_config=True)
    return OmegaConf.to_container(cfg.hydra.launcher)


@_needs("hydra_plugins.hydra_submitit_launcher", "cluster")
def test_the_launcher_configs_give_submitit_valid_parameters(tmp_path):
    """hydra/launcher=slurm|local compose, and every slurm key is one submitit's SLURM executor knows (no cluster here)."""
    import submitit
    from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf

    launcher = _launcher("slurm", "hydra.launcher.partition=gpu")
    assert launcher["_target_"].endswith("SlurmLauncher")
    assert (launcher["partition"], launcher["gpus_per_node"], launcher["nodes"], launcher["tasks_per_node"]) == (
        "gpu",
        1,
        1,
        1,
    )
    assert (launcher["timeout_min"], launcher["mem_gb"], launcher["signal_delay_s"], launcher["max_num_timeout"]) == (
        240,
        64,
        120,
        3,
    )
    # the split the Hydra launcher makes before calling submitit: generic keys as they are, the rest slurm_<key>
    generic = set(BaseQueueConf.__dataclass_fields__)
    params = {
        k if k in generic else f"slurm_{k}": v
        for k, v in launcher.items()
        if k not in ("_target_", "submitit_folder", "max_num_timeout")
    }
    executor = submitit.AutoExecutor(folder=str(tmp_path / "submitit"), cluster="debug")
    executor.update_parameters(**params)  # raises NameError for a key submitit's SLURM executor does not know
    local = _launcher("local")
    assert local["_target_"].endswith("LocalLauncher") and local["gpus_per_node"] == 0
