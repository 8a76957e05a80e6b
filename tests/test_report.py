"""kdlab.api (runs and sweeps from Python), kdlab.plots (what is drawn is what was logged) and kdlab-report
(PNGs and report.md for a run or a sweep folder; one clear line for anything else)."""

from __future__ import annotations

import csv
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import kdlab_folders
from omegaconf import OmegaConf
from settings import FAST

from kdlab import api, plots
from kdlab.errors import ConfigError, DataError

REPO = Path(__file__).resolve().parents[1]
# a hinton run in a few seconds: a few batches per stage, every step logged, small data
TINY = FAST  # tests/settings.py


@pytest.fixture(scope="module")
def outputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    with kdlab_folders(root):
        yield root / "outputs"


@pytest.fixture(scope="module")
def tiny_run(outputs):
    return api.train(*TINY)


@pytest.fixture(scope="module")
def tiny_sweep(outputs, tiny_run):  # after tiny_run: its teacher is reused by every job
    return api.sweep({"loss.temperature": [4, 1]}, *TINY)


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def line(fig, label: str):
    found = [ln for ax in fig.axes for ln in ax.get_lines() if ln.get_label() == label]
    assert len(found) == 1, f"{label!r} among {[ln.get_label() for ax in fig.axes for ln in ax.get_lines()]}"
    return found[0]


def report_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "kdlab.report", *args], cwd=REPO, capture_output=True, text=True, timeout=120
    )


# --- the Python API ---------------------------------------------------------------------------------


def test_api_run_folder_is_laid_out_like_kdlab_train(tiny_run, outputs):
    run = tiny_run
    assert run.path.parent == outputs / "runs" and run.path.name.endswith("_hinton-reviews")
    assert run.method == "hinton"
    assert run.metrics == json.loads((run.path / "metrics.json").read_text())
    assert run.optimized_metric == run.metrics["student/val/acc"]
    assert OmegaConf.load(run.path / "config.yaml").paths.output_dir == str(run.path)
    assert [str(o) for o in OmegaConf.load(run.path / ".hydra" / "overrides.yaml")] == TINY
    assert "stage student" in (run.path / "train.log").read_text()
    assert {"student", "teacher"} <= {p.name for p in (run.path / "logs").iterdir()}
    assert api.load_run(run.path).metrics == run.metrics


def test_api_errors_are_kdlab_errors_and_leave_no_folder(outputs):
    before = sorted((outputs / "runs").iterdir()) if (outputs / "runs").exists() else []
    with pytest.raises(ConfigError, match=r"^loss\.alpha: must be in \[0, 1\], got 2$"):
        api.train("loss.alpha=2")
    with pytest.raises(ConfigError, match=r"^overrides: Could not override 'loss\.temprature'"):
        api.train("loss.temprature=3")
    with pytest.raises(ConfigError, match=r"Could not find 'experiment/nope'"):
        api.train("experiment=nope")
    with pytest.raises(ConfigError, match=r"^loss\.temperature: a sweep needs a non-empty list"):
        api.sweep({"loss.temperature": []})
    with pytest.raises(ConfigError, match=r"^loss\.temperature: must be > 0, got 0$"):  # checked before any job runs
        api.sweep({"loss.temperature": [1, 0]}, "debug=fast")
    after = sorted((outputs / "runs").iterdir()) if (outputs / "runs").exists() else []
    assert after == before
    assert not (outputs / "sweeps").exists() or all(any(p.iterdir()) for p in (outputs / "sweeps").iterdir())
    with pytest.raises(DataError, match="metrics.json: is missing"):
        api.load_run(outputs)


def test_api_grid_order():
    assert api.grid({"a": [1, 2], "b": ["x", "y"]}) == [["a=1", "b=x"], ["a=1", "b=y"], ["a=2", "b=x"], ["a=2", "b=y"]]


def test_api_composes_inside_a_hydra_the_caller_set_up(tmp_path):
    from hydra import compose, initialize_config_dir

    (tmp_path / "mine.yaml").write_text("x: 1\n")
    with initialize_config_dir(config_dir=str(tmp_path), version_base="1.3"):
        assert api.compose("debug=fast").trainer.limit_train_batches == 4
        assert compose("mine").x == 1  # the caller's Hydra is back


def test_api_sweep_job_folders(tiny_sweep):
    sweep = tiny_sweep
    assert [job.path for job in sweep.jobs] == [sweep.path / "0", sweep.path / "1"]
    for job, temperature in zip(sweep.jobs, ("4", "1")):
        assert [str(o) for o in OmegaConf.load(job.path / ".hydra" / "overrides.yaml")] == [
            *TINY,
            f"loss.temperature={temperature}",
        ]
        assert OmegaConf.load(job.path / "config.yaml").loss.temperature == float(temperature)
        assert OmegaConf.load(job.path / ".hydra" / "hydra.yaml").hydra.job.num == int(job.path.name)
        assert "reusing" in (job.path / "train.log").read_text()  # the teacher of tiny_run, same config


def test_api_sweep_goes_on_after_a_failed_job_records_it_then_raises(outputs, tiny_run):
    sweep_dir = outputs / "sweeps" / "with_failure"
    with pytest.raises(
        ValueError, match="invalid accelerator name"
    ):  # Lightning's own error, raised after every job ran
        api.sweep({"trainer.accelerator": ["nonsense", "cpu"]}, *TINY, sweep_dir=sweep_dir)
    error = json.loads((sweep_dir / "0" / "error.json").read_text())
    assert error["type"] == "ValueError" and not error["kdlab_error"]
    assert (sweep_dir / "1" / "metrics.json").exists()  # the job after the failure ran
    summary = read_csv(sweep_dir / "summary.csv")
    assert [(row["job"], row["status"]) for row in summary] == [("0", "failed"), ("1", "ok")]
    jobs = plots.read_sweep(sweep_dir)
    assert [job.status for job in jobs] == ["failed", "ok"] and jobs[0].error.startswith("ValueError: You selected")
    assert report_cli(str(sweep_dir)).returncode == 0
    text = (sweep_dir / "report" / "report.md").read_text()
    assert "- jobs: 2 (1 failed, 1 ok)" in text and "| 0 | nonsense | failed |  | ValueError: You selected" in text


# --- plots: what is drawn is what was logged ------------------------------------------------------------


def test_hinton_curves_are_the_logged_values(tiny_run):
    figures = plots.plot_run(tiny_run.path)
    assert set(figures) == {"losses", "validation"}
    rows = read_csv(tiny_run.path / "logs" / "student" / "metrics.csv")
    for key in ("train/loss_soft", "train/loss_hard", "train/loss"):
        logged = [(float(r["step"]), float(r[key])) for r in rows if r[key]]
        assert len(logged) == 4  # debug=fast: 4 batches, each logged
        drawn = line(figures["losses"], f"student: {key}")
        assert list(zip(drawn.get_xdata(), drawn.get_ydata())) == logged

    teacher = read_csv(tiny_run.path / "logs" / "teacher" / "metrics.csv")
    val = [(float(r["epoch"]), float(r["step"]), float(r["val/acc"])) for r in teacher if r["val/acc"]]
    trained_epochs = max(float(r["epoch"]) for r in teacher if r["train/loss"])
    during, after = [v for v in val if v[0] <= trained_epochs], [v for v in val if v[0] > trained_epochs]
    drawn = line(figures["validation"], "teacher: val/acc")
    assert list(zip(drawn.get_xdata(), drawn.get_ydata())) == [(step, acc) for _, step, acc in during]
    star = line(figures["validation"], "_teacher: val/acc (best checkpoint)")  # the re-evaluation after fit
    assert (star.get_xdata()[0], star.get_ydata()[0]) == after[0][1:]
    assert star.get_ydata()[0] == pytest.approx(tiny_run.metrics["teacher/val/acc"])
    # the validation whose checkpoint was kept (metrics.json names its epoch) is ringed on the curve
    kept_epoch = tiny_run.metrics["teacher/checkpoint/epoch"]
    ring = line(figures["validation"], "_teacher: val/acc (kept checkpoint)")
    assert [(e, s, a) for e, s, a in during if e == kept_epoch - 1] == [
        (kept_epoch - 1, ring.get_xdata()[0], ring.get_ydata()[0])
    ]
    assert "○ where it was kept" in figures["validation"].axes[0].get_title()


def test_sweep_plot_is_metric_against_the_swept_value(tiny_sweep):
    fig = plots.plot_sweep(tiny_sweep.path)
    (drawn,) = fig.axes[0].get_lines()
    expected = sorted((float(job.config.loss.temperature), job.metrics["student/val/acc"]) for job in tiny_sweep.jobs)
    assert list(zip(drawn.get_xdata(), drawn.get_ydata())) == expected
    assert fig.axes[0].get_xlabel() == "loss.temperature" and fig.axes[0].get_ylabel() == "student/val/acc"
    other = plots.plot_sweep(tiny_sweep.path, metric="student/val/loss")
    assert sorted(other.axes[0].get_lines()[0].get_ydata()) == sorted(
        j.metrics["student/val/loss"] for j in tiny_sweep.jobs
    )
    with pytest.raises(DataError, match="no job sets data.batch_size"):
        plots.plot_sweep(tiny_sweep.path, param="data.batch_size")


def write_run(
    folder: Path, method: dict, metrics: dict, logs: dict[str, str], extra: dict[str, str] | None = None
) -> Path:
    """A run folder written by hand: config.yaml, metrics.json, logs/<stage>/metrics.csv."""
    OmegaConf.save(
        OmegaConf.create({"method": method, "optimized_metric": "student/val/glue_mean"}), folder / "config.yaml"
    )
    (folder / "metrics.json").write_text(json.dumps(metrics))
    for stage, text in logs.items():
        (folder / "logs" / stage).mkdir(parents=True)
        (folder / "logs" / stage / "metrics.csv").write_text(text)
    for name, text in (extra or {}).items():
        (folder / name).write_text(text)
    return folder


def test_bam_lambda_schedule_and_task_metrics(tmp_path):
    csv_text = (
        "epoch,step,train/lambda,train/loss,val/glue_mean,val/a/acc,val/b/pearson\n"
        "0,0,0.0,0.9,,,\n0,1,0.25,0.8,,,\n0,1,,,0.30,0.50,0.10\n"
        "1,2,0.5,0.7,,,\n1,3,0.75,0.6,,,\n1,3,,,0.40,0.60,0.20\n"
        "2,4,,,0.40,0.60,0.20\n"  # validate() after fit: the best checkpoint
    )
    run = write_run(
        tmp_path, {"name": "bam", "monitor": "val/glue_mean"}, {"student/val/glue_mean": 0.4}, {"student": csv_text}
    )
    figures = plots.plot_run(run)
    lam = line(figures["lambda"], "student: train/lambda")
    assert list(lam.get_xdata()) == [0, 1, 2, 3] and list(lam.get_ydata()) == [0.0, 0.25, 0.5, 0.75]
    assert [ax.get_title().split("  ")[0] for ax in figures["tasks"].axes] == ["a", "b", "glue_mean"]
    pearson = line(figures["tasks"], "student: val/b/pearson")
    assert list(pearson.get_xdata()) == [1, 3] and list(pearson.get_ydata()) == [0.10, 0.20]
    star = line(figures["tasks"], "_student: val/glue_mean (best checkpoint)")
    assert (star.get_xdata()[0], star.get_ydata()[0]) == (4, 0.40)


def test_trans_encoder_spearman_per_cycle(tmp_path):
    metrics = {
        "bi_start/val/spearman": 30.0,
        "bi_start/test/spearman": 28.0,
        "bi_cycle1/val/spearman": 35.0,
        "bi_cycle1/test/spearman": 33.0,
        "bi_cycle2/val/spearman": 36.0,
        "bi_cycle2/test/spearman": 34.0,
        "cross_cycle1/val/spearman": 5.0,
        "cross_cycle1/test/spearman": 4.0,
        "cross_cycle2/val/spearman": 7.0,
        "cross_cycle2/test/spearman": 6.0,
    }
    info = json.dumps({"bi_encoders": ["bi"], "cross_encoders": ["cross"], "cycles": 2})
    run = write_run(
        tmp_path,
        {"name": "trans_encoder", "cycles": 2},
        metrics,
        {"cycle1/bi": "epoch,step,train/loss\n0,0,0.5\n0,1,0.4\n"},
        {"trans_encoder.json": info},
    )
    figures = plots.plot_run(run)
    assert line(figures["cycles"], "bi: val").get_ydata().tolist() == [30.0, 35.0, 36.0]
    assert line(figures["cycles"], "bi: test").get_xdata().tolist() == [0, 1, 2]
    assert line(figures["cycles"], "cross: test").get_xdata().tolist() == [1, 2]
    assert line(figures["cycles"], "cross: val").get_ydata().tolist() == [5.0, 7.0]
    assert line(figures["losses"], "cycle1/bi: train/loss").get_ydata().tolist() == [0.5, 0.4]


def test_multilingual_starts_from_the_untrained_student(tmp_path):
    csv_text = (
        "epoch,step,train/loss,val/mse,val/mse/en-x,val/translation_acc,val/translation/en-x/mean\n"
        "0,3,0.1,,,,\n0,3,,4.0,4.0,10.0,10.0\n1,4,,4.0,4.0,10.0,10.0\n"
    )
    run = write_run(
        tmp_path,
        {"name": "multilingual", "monitor": "val/translation_acc"},
        {"student_init/val/mse": 5.0, "student_init/val/translation_acc": 2.0},
        {"student": csv_text},
    )
    fig = plots.plot_run(run)["validation"]
    assert list(zip(line(fig, "student: val/mse").get_xdata(), line(fig, "student: val/mse").get_ydata())) == [
        (0, 5.0),
        (3, 4.0),
    ]
    assert line(fig, "student: val/translation_acc").get_ydata().tolist() == [2.0, 10.0]
    assert line(fig, "student: val/translation/en-x/mean").get_ydata().tolist() == [
        10.0
    ]  # no init value per pair logged


def test_sweep_of_two_keys_one_line_per_value_of_the_other(tmp_path):
    """Jobs written by hand, as a multirun leaves them; job 4 has no metrics.json (failed or still running)."""
    grid = [("1", "adamw"), ("4", "adamw"), ("1", "sgd"), ("4", "sgd"), ("2", "sgd")]
    for num, (temperature, opt) in enumerate(grid):
        job = tmp_path / str(num)
        (job / ".hydra").mkdir(parents=True)
        OmegaConf.save(
            OmegaConf.create(["debug=fast", f"loss.temperature={temperature}", f"+opt={opt}"]),
            job / ".hydra" / "overrides.yaml",
        )
        OmegaConf.save(OmegaConf.create({"optimized_metric": "student/val/acc"}), job / "config.yaml")
        if num < 4:
            (job / "metrics.json").write_text(json.dumps({"student/val/acc": num / 10}))
    assert plots.varying(plots.read_sweep(tmp_path)) == ["loss.temperature", "opt"]
    fig = plots.plot_sweep(tmp_path)
    assert line(fig, "opt=adamw").get_xdata().tolist() == [1.0, 4.0]
    assert line(fig, "opt=sgd").get_ydata().tolist() == [0.2, 0.3]  # job 4 is left out
    by_opt = plots.plot_sweep(tmp_path, param="opt")  # categories, in first-seen order
    assert line(by_opt, "loss.temperature=4").get_xdata().tolist() == [0, 1]
    assert [t.get_text() for t in by_opt.axes[0].get_xticklabels()] == ["adamw", "sgd"]
    assert report_cli(str(tmp_path)).returncode == 0
    text = (tmp_path / "report" / "report.md").read_text()
    assert "- jobs: 5 (4 ok, 1 incomplete)" in text and "| 4 | 2 | sgd | incomplete |  |" in text
    assert {p.name for p in (tmp_path / "report").glob("*.png")} == {"sweep_loss.temperature.png", "sweep_opt.png"}


# --- kdlab-report ------------------------------------------------------------------------------------


def test_report_of_a_run(tiny_run, tmp_path):
    out = report_cli(str(tiny_run.path))
    assert out.returncode == 0, out.stderr
    folder = tiny_run.path / "report"
    assert out.stdout.strip() == f"report: {folder / 'report.md'}"
    assert {p.name for p in folder.glob("*.png")} == {"losses.png", "validation.png"}
    assert all((folder / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for name in ("losses.png", "validation.png"))
    text = (folder / "report.md").read_text()
    assert "![losses](losses.png)" in text and "![validation](validation.png)" in text
    assert "- method: **hinton**" in text and "| loss.temperature | 2.0 |" in text and "`debug=fast`" in text
    student_row = next(r for r in text.splitlines() if r.startswith("| student |"))
    header = next(r for r in text.splitlines() if r.startswith("| model |"))
    cells = dict(zip(header.strip("| ").split(" | "), student_row.strip("| ").split(" | ")))
    assert cells["val/acc"] == f"{tiny_run.metrics['student/val/acc']:.2f}"
    # --out elsewhere
    assert report_cli(str(tiny_run.path), "--out", str(tmp_path / "r")).returncode == 0
    assert (tmp_path / "r" / "report.md").exists() and (tmp_path / "r" / "losses.png").exists()


def test_report_of_a_sweep(tiny_sweep):
    out = report_cli(str(tiny_sweep.path))
    assert out.returncode == 0, out.stderr
    folder = tiny_sweep.path / "report"
    assert [p.name for p in folder.glob("*.png")] == ["sweep_loss.temperature.png"]
    text = (folder / "report.md").read_text()
    assert "- swept: loss.temperature" in text and "- jobs: 2 (2 ok)" in text
    assert "![student/val/acc vs loss.temperature](sweep_loss.temperature.png)" in text
    for job in tiny_sweep.jobs:
        row = f"| {job.path.name} | {job.config.loss.temperature:g} | ok | {job.metrics['student/val/acc']:.2f} |"
        assert row in text
    # the report folder is not taken for a job on the next report
    assert report_cli(str(tiny_sweep.path)).returncode == 0 and "- jobs: 2 (2 ok)" in (folder / "report.md").read_text()


def test_report_of_anything_else_is_one_line_and_exit_2(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    for target in (tmp_path, tmp_path / "missing"):
        out = report_cli(str(target))
        assert out.returncode == 2
        assert out.stderr.count("\n") == 1 and out.stderr.startswith(f"kdlab: error: {target}: ")
    assert "not a kdlab run folder" in report_cli(str(tmp_path)).stderr
    assert "no such folder" in report_cli(str(tmp_path / "missing")).stderr


def test_a_folder_of_runs_and_sweeps_is_refused_naming_the_folders_inside(tiny_run, tiny_sweep, outputs):
    from kdlab.report import report

    assert not plots.is_sweep(outputs) and not plots.is_sweep(outputs / "runs")
    with pytest.raises(DataError) as err:
        report(outputs)
    message = str(err.value)
    assert re.search(
        r": holds \d+ run folders? and \d+ sweep folders?, not one run or sweep: report one of them, e.g. kdlab-report ",
        message,
    )
    named = {Path(word.rstrip(",")) for word in message.split(": ", 1)[1].split() if word.startswith(str(outputs))}
    assert named and all((folder / "config.yaml").is_file() or plots.is_sweep(folder) for folder in named)
    assert {tiny_run.path, tiny_sweep.path} & named
    result = report_cli(str(outputs))
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and not (outputs / "report").exists()


def test_a_metric_no_job_has_is_an_error_listing_the_metrics_that_exist(tiny_sweep, tmp_path):
    result = report_cli(str(tiny_sweep.path), "--metric", "student/val/accuracy", "--out", str(tmp_path / "r"))
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert "no finished job has the metric 'student/val/accuracy' (--metric); they have: " in result.stderr
    assert "student/val/acc," in result.stderr and not (tmp_path / "r").exists()
