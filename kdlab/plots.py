"""Plots of kdlab run and sweep folders, shared by the notebooks and `kdlab-report`.

Reads only files: a run folder's metrics.json, config.yaml and logs/<stage>/metrics.csv (the CSV
logger; Trans-Encoder stages are nested, logs/cycle1/bi/); a sweep folder's job folders (those with
.hydra/overrides.yaml) and their metrics.json and config.yaml. Draws with matplotlib's object API
(`matplotlib.figure.Figure`, no pyplot state, any backend): every function returns figures whose
lines are labelled "<stage>: <metric>" (or "<model>: <split>", "<param>=<value>"), so a test or a
notebook can read back what was drawn.

    from kdlab import plots
    figures = plots.plot_run("outputs/runs/<run>")        # {"losses": Figure, "validation": Figure, ...}
    plots.plot_sweep("outputs/sweeps/<sweep>", param="loss.temperature")

What each method's figures show:
    hinton         losses: the student's train/loss_soft, train/loss_hard (train/loss_hidden) and train/loss;
                   validation: val/<main metric> of teacher, student (and baseline) per step
    multilingual   losses: train/loss_source, train/loss_target, train/loss; validation: val/mse and
                   val/translation_acc, averaged and per language pair, with the value before training at step 0
    trans_encoder  cycles: dev and test Spearman of every bi- and cross-encoder per cycle (0 = start) from
                   metrics.json; losses: train/loss of every stage (SimCSE, each cycle's cross and bi)
    bam            lambda: the annealing weight train/lambda per step; tasks: val/<task>/<metric> and val/glue_mean
    finetune       losses and validation as for hinton
In every curve a validation point after the last training epoch is the best checkpoint's re-evaluation,
drawn as a star, not joined to the curve.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from kdlab.errors import DataError

NOT_A_FOLDER = (
    "not a kdlab run folder (config.yaml, metrics.json) nor a sweep folder (job folders with .hydra/overrides.yaml)"
)


# --- reading ----------------------------------------------------------------------------------------


@dataclass
class Curve:
    """One logged metric of one stage: (step, value) points; `final` is the post-training evaluation, if any."""

    stage: str
    key: str
    steps: list[float]
    values: list[float]
    final: tuple[float, float] | None = None
    kept: tuple[float, float] | None = None  # the validation point whose checkpoint the stage kept


class StageLog:
    """logs/<stage>/metrics.csv: one row per logging call; a cell is a float or absent."""

    def __init__(self, stage: str, path: Path):
        self.stage = stage
        self.path = path
        self.kept: dict[str, float] = {}  # checkpoint/epoch (1-based) and checkpoint/step of the weights the stage kept
        self.rows: list[dict[str, float]] = []
        with open(path, newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            for line, row in enumerate(reader, start=2):
                try:
                    self.rows.append({k: float(v) for k, v in row.items() if k is not None and v not in ("", None)})
                except ValueError as err:
                    raise DataError(path, f"not a number ({err})", line) from None
        self.columns = list(reader.fieldnames or [])
        trained = [r["epoch"] for r in self.rows if "epoch" in r and any(k.startswith("train/") for k in r)]
        # the last epoch that trained: a val/test row after it is the evaluation of the best checkpoint
        self.last_train_epoch = max(trained) if trained else None

    def keys(self, prefix: str = "") -> list[str]:
        """Logged metric names starting with `prefix`, in column order."""
        return [c for c in self.columns if c.startswith(prefix) and any(c in r for r in self.rows)]

    def curve(self, key: str) -> Curve:
        """`key` against `step`; a point after the last training epoch becomes `final` (the best checkpoint)."""
        steps, values, final, candidates = [], [], None, []
        for row in self.rows:
            if key not in row:
                continue
            point = (row.get("step", float(len(steps))), row[key])
            after_fit = self.last_train_epoch is not None and row.get("epoch", -1.0) > self.last_train_epoch
            if after_fit:
                final = final or point  # the validate() right after fit; a later test() row repeats the step
            else:
                steps.append(point[0])
                values.append(point[1])
                if self.kept and row.get("epoch") == self.kept["checkpoint/epoch"] - 1:
                    candidates.append(point)
        # a validation row is logged at the step before the checkpoint's global step; several per epoch with val_check_interval < 1
        kept = min(candidates, key=lambda p: abs(p[0] + 1 - self.kept["checkpoint/step"])) if candidates else None
        return Curve(self.stage, key, steps, values, final, kept)


class RunFolder:
    """A run folder: its resolved config, metrics.json (empty while running) and stage logs."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        config_file, metrics_file = self.path / "config.yaml", self.path / "metrics.json"
        if not config_file.is_file():
            raise DataError(self.path, NOT_A_FOLDER)
        self.config: DictConfig = OmegaConf.load(config_file)
        self.metrics: dict[str, float] = {}
        if metrics_file.is_file():
            try:
                self.metrics = json.loads(metrics_file.read_text(encoding="utf-8"))
            except json.JSONDecodeError as err:
                raise DataError(metrics_file, f"is not valid JSON ({err.msg})", err.lineno) from None
        logs = self.path / "logs"
        # stages in the order they ran (the CSV logger rewrites a stage's file until it ends)
        found = sorted(logs.rglob("metrics.csv"), key=lambda f: (f.stat().st_mtime, str(f))) if logs.is_dir() else []
        self.stages = {str(f.parent.relative_to(logs)): StageLog(str(f.parent.relative_to(logs)), f) for f in found}
        for name, stage in self.stages.items():
            stage_metrics = self.path / name / "metrics.json"
            if stage_metrics.is_file():
                try:
                    saved = json.loads(stage_metrics.read_text(encoding="utf-8"))
                except json.JSONDecodeError as err:
                    raise DataError(stage_metrics, f"is not valid JSON ({err.msg})", err.lineno) from None
                stage.kept = {k: float(saved[k]) for k in ("checkpoint/epoch", "checkpoint/step") if k in saved}
                if len(stage.kept) < 2:
                    stage.kept = {}

    @property
    def method(self) -> str:
        return str(OmegaConf.select(self.config, "method.name", default="unknown"))

    @property
    def overrides(self) -> list[str]:
        """The command-line overrides of the run (.hydra/overrides.yaml), or [] when it has none."""
        saved = self.path / ".hydra" / "overrides.yaml"
        return [str(item) for item in OmegaConf.load(saved)] if saved.is_file() else []

    def curves(self, key: str, stages: list[str] | None = None) -> list[Curve]:
        """`key` in every stage (or the given ones) that logged it."""
        names = stages if stages is not None else list(self.stages)
        return [self.stages[s].curve(key) for s in names if s in self.stages and key in self.stages[s].keys()]


@dataclass
class Job:
    """One job of a sweep folder: its overrides (key → value), status (ok, failed, incomplete), metrics, error."""

    path: Path
    overrides: dict[str, str]
    metrics: dict[str, float]
    optimized_metric: str | None
    status: str
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def is_sweep(path: str | Path) -> bool:
    """A sweep folder: no config.yaml of its own, job folders below it with .hydra/overrides.yaml."""
    from kdlab.sweep import job_dirs

    path = Path(path)
    return path.is_dir() and not (path / "config.yaml").exists() and bool(job_dirs(path))


def read_sweep(path: str | Path) -> list[Job]:
    """The jobs of a sweep folder in job-number order, as the sweep summary reads them (kdlab.sweep.job_row)."""
    from kdlab.sweep import job_dirs, job_row

    path = Path(path)
    if not is_sweep(path):
        raise DataError(path, NOT_A_FOLDER)
    rows = [job_row(job) for job in job_dirs(path)]
    return [
        Job(row["path"], row["overrides"], row["metrics"], row["optimized_metric"], row["status"], row["error"])
        for row in rows
    ]


def varying(jobs: list[Job]) -> list[str]:
    """The override keys whose value differs between jobs (the swept hyperparameters), in first-seen order."""
    keys: list[str] = []
    for job in jobs:
        keys += [k for k in job.overrides if k not in keys]
    return [k for k in keys if len({job.overrides.get(k) for job in jobs}) > 1]


# --- drawing ----------------------------------------------------------------------------------------


def _figure(n_axes: int, title: str, columns: int = 3) -> tuple[Any, list[Any]]:
    """A figure with `n_axes` panels, at most `columns` per row."""
    from matplotlib.figure import Figure

    ncols = min(n_axes, columns)
    nrows = math.ceil(n_axes / ncols)
    fig = Figure(figsize=(4.8 * ncols, 3.5 * nrows), layout="constrained")
    axes = list(fig.subplots(nrows, ncols, squeeze=False).flat)
    for ax in axes[n_axes:]:
        ax.set_visible(False)
    fig.suptitle(title)
    return fig, axes[:n_axes]


def _draw(ax: Any, curve: Curve, label: str | None = None) -> None:
    """A curve as a line (markers when it has few points) and its post-training value as a star of the same colour."""
    label = label or f"{curve.stage}: {curve.key}"
    (line,) = ax.plot(
        curve.steps, curve.values, marker="o" if len(curve.steps) <= 20 else None, markersize=3, label=label
    )
    if curve.final is not None:
        # "_" keeps it out of the legend; the panel title explains the star
        ax.plot(
            [curve.final[0]],
            [curve.final[1]],
            marker="*",
            markersize=10,
            linestyle="none",
            color=line.get_color(),
            label=f"_{label} (best checkpoint)",
        )
    if curve.kept is not None:  # the validation at which the kept checkpoint was written (ties: kdlab.callbacks)
        ax.plot(
            [curve.kept[0]],
            [curve.kept[1]],
            marker="o",
            markersize=9,
            markerfacecolor="none",
            linestyle="none",
            color=line.get_color(),
            label=f"_{label} (kept checkpoint)",
        )


def _finish(ax: Any, title: str, xlabel: str = "step", ylabel: str = "") -> None:
    """Title, labels, grid, and a legend that drops what every line shares (the stage or the metric)."""
    lines = [line for line in ax.get_lines() if not line.get_label().startswith("_")]
    marks = [line.get_label() for line in ax.get_lines() if line.get_label().startswith("_")]
    notes = [
        text
        for text, suffix in (("★ best checkpoint", "(best checkpoint)"), ("○ where it was kept", "(kept checkpoint)"))
        if any(m.endswith(suffix) for m in marks)
    ]
    ax.set_title(title + (f"  ({', '.join(notes)})" if notes else ""), fontsize="medium")
    ax.set_xlabel(xlabel)
    if ylabel:
        ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    if not lines:
        return
    parts = [line.get_label().split(": ", 1) for line in lines]
    if all(len(p) == 2 for p in parts):
        if len({p[0] for p in parts}) == 1:
            texts = [p[1] for p in parts]  # one stage: name the metrics
        elif len({p[1] for p in parts}) == 1:
            texts = [p[0] for p in parts]  # one metric: name the stages
        else:
            texts = [line.get_label() for line in lines]
    else:
        texts = [line.get_label() for line in lines]
    ax.legend(lines, texts, fontsize="small")


def _main_metric(run: RunFolder) -> str:
    monitor = OmegaConf.select(run.config, "method.monitor")
    return str(monitor) if monitor else "val/loss"


def plot_losses(run: RunFolder, stages: list[str] | None = None, prefix: str = "train/loss") -> Any:
    """Every `train/loss*` term of the given stages (default: all), one panel per stage."""
    names = [
        s
        for s in (stages if stages is not None else list(run.stages))
        if s in run.stages and run.stages[s].keys(prefix)
    ]
    if not names:
        raise DataError(run.path / "logs", f"no stage logged {prefix}* (logs/<stage>/metrics.csv)")
    fig, axes = _figure(len(names), f"{run.method}: training loss terms")
    for ax, stage in zip(axes, names):
        for key in run.stages[stage].keys(prefix):
            _draw(ax, run.stages[stage].curve(key))
        _finish(ax, stage, ylabel="loss")
    return fig


def plot_validation(run: RunFolder, keys: list[str], stages: list[str] | None = None) -> Any:
    """One panel per key, a line per stage that logged it (and its best-checkpoint star)."""
    keys = [k for k in keys if run.curves(k, stages)]
    if not keys:
        raise DataError(run.path / "logs", "no stage logged any validation metric")
    fig, axes = _figure(len(keys), f"{run.method}: validation")
    for ax, key in zip(axes, keys):
        for curve in run.curves(key, stages):
            _draw(ax, curve)
        _finish(ax, key)
    return fig


def hinton_figures(run: RunFolder) -> dict[str, Any]:
    student = [s for s in ("student",) if s in run.stages] or None
    return {"losses": plot_losses(run, student), "validation": plot_validation(run, [_main_metric(run), "val/loss"])}


def multilingual_figures(run: RunFolder) -> dict[str, Any]:
    log = run.stages.get("student")
    if log is None:
        raise DataError(run.path / "logs" / "student" / "metrics.csv", "is missing")
    fig, axes = _figure(2, "multilingual: validation (before training at step 0)")
    panels = (
        ("val/mse", log.keys("val/mse/")),  # the average, then each language pair
        ("val/translation_acc", [k for k in log.keys("val/translation/") if k.endswith("/mean")]),
    )
    for ax, (metric, per_pair) in zip(axes, panels):
        for key in [metric, *per_pair] if metric in log.keys() else per_pair:
            curve = log.curve(key)
            before = run.metrics.get(f"student_init/{key}")
            if before is not None:  # the student before any training step
                curve.steps.insert(0, 0.0)
                curve.values.insert(0, float(before))
            _draw(ax, curve)
        _finish(ax, metric, ylabel="×100")
    return {"losses": plot_losses(run, ["student"]), "validation": fig}


def trans_encoder_figures(run: RunFolder) -> dict[str, Any]:
    info_file = run.path / "trans_encoder.json"
    info = json.loads(info_file.read_text(encoding="utf-8")) if info_file.is_file() else {}
    names = {"bi": info.get("bi_encoders", ["bi"]), "cross": info.get("cross_encoders", ["cross"])}
    cycles = int(OmegaConf.select(run.config, "method.cycles", default=0) or info.get("cycles", 0))
    fig, (ax,) = _figure(1, "trans_encoder: Spearman ×100 per cycle (0 = start)")
    for kind in ("bi", "cross"):
        for name in names[kind]:
            for split in ("val", "test"):
                points = [
                    (c, run.metrics.get(f"{name}_{'start' if c == 0 else f'cycle{c}'}/{split}/spearman"))
                    for c in range(0, cycles + 1)
                ]
                points = [(c, v) for c, v in points if v is not None]
                if points:
                    ax.plot(
                        [c for c, _ in points],
                        [v for _, v in points],
                        marker="o",
                        linestyle="-" if split == "val" else "--",
                        label=f"{name}: {split}",
                    )
    _finish(ax, "bi- and cross-encoders", xlabel="cycle", ylabel="Spearman ×100")
    ax.set_xticks(range(0, cycles + 1))
    if not ax.get_lines():
        raise DataError(run.path / "metrics.json", "holds no <model>_cycle<c>/<split>/spearman values")
    figures = {"cycles": fig}
    if any(s.keys("train/loss") for s in run.stages.values()):
        figures["losses"] = plot_losses(run)
    return figures


def bam_figures(run: RunFolder) -> dict[str, Any]:
    log = run.stages.get("student")
    if log is None:
        raise DataError(run.path / "logs" / "student" / "metrics.csv", "is missing")
    figures = {}
    if "train/lambda" in log.keys():
        fig, (ax,) = _figure(1, "bam: teacher annealing")
        _draw(ax, log.curve("train/lambda"))
        _finish(ax, "λ (weight of the gold label)", ylabel="λ")
        figures["lambda"] = fig
    task_keys = [k for k in log.keys("val/") if k.count("/") == 2 or k == "val/glue_mean"]
    tasks = list(dict.fromkeys(k.split("/")[1] for k in task_keys if k.count("/") == 2))
    panels = [*tasks, "glue_mean"] if "val/glue_mean" in task_keys else tasks
    if not panels:
        raise DataError(log.path, "holds no val/<task>/<metric> column")
    fig, axes = _figure(len(panels), "bam: per-task validation metrics (student)")
    for ax, panel in zip(axes, panels):
        keys = ["val/glue_mean"] if panel == "glue_mean" else [k for k in task_keys if k.startswith(f"val/{panel}/")]
        for key in keys:
            _draw(ax, log.curve(key))
        _finish(ax, panel)
    figures["tasks"] = fig
    return figures


def supervised_figures(run: RunFolder) -> dict[str, Any]:
    return {"losses": plot_losses(run), "validation": plot_validation(run, [_main_metric(run), "val/loss"])}


def plot_run(path: str | Path) -> dict[str, Any]:
    """The figures of a run folder for its method (see the module docstring), by name."""
    run = RunFolder(path)
    from kdlab.registry import METHODS, resolve

    entry = METHODS.get(run.method)
    return resolve(entry.figures)(run) if entry is not None else supervised_figures(run)


def _number(value: str) -> float | None:
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def plot_sweep(path: str | Path, param: str | None = None, metric: str | None = None) -> Any:
    """`metric` (default: the jobs' optimized_metric) against the swept `param` (default: the first swept key).

    Numeric values are placed on a number line (a log axis when they span more than a factor of 20 and are
    positive), others as categories; one line per combination of the other swept keys. Jobs without the
    metric (failed or unfinished) are left out.
    """
    jobs = read_sweep(path)
    swept = varying(jobs)
    param = param or (swept[0] if swept else None)
    if param is None:
        raise DataError(path, "no override differs between its jobs: nothing to plot against")
    if not any(param in job.overrides for job in jobs):
        raise DataError(path, f"no job sets {param} (swept: {', '.join(swept) or 'nothing'})")
    metric = metric or next((job.optimized_metric for job in jobs if job.optimized_metric), None)
    if metric is None:
        raise DataError(path, "its jobs name no optimized_metric; pass the metric to plot")
    done = [job for job in jobs if metric in job.metrics and param in job.overrides]
    if not done:
        raise DataError(path, f"no finished job has {metric} in its metrics.json")
    values = [job.overrides[param] for job in done]
    numeric = all(_number(v) is not None for v in values)
    categories = list(dict.fromkeys(values))
    others = [k for k in swept if k != param]
    groups: dict[str, list[Job]] = {}
    for job in done:
        groups.setdefault(", ".join(f"{k}={job.overrides.get(k, '')}" for k in others) or metric, []).append(job)
    fig, (ax,) = _figure(1, f"sweep {Path(path).name}: {metric}")
    for label, members in groups.items():
        points = sorted(
            (
                (_number(j.overrides[param]) if numeric else categories.index(j.overrides[param]), j.metrics[metric])
                for j in members
            ),
            key=lambda p: p[0],
        )
        ax.plot([x for x, _ in points], [y for _, y in points], marker="o", label=label)
    if numeric:
        xs = [_number(v) for v in values]
        if min(xs) > 0 and max(xs) / min(xs) > 20:
            ax.set_xscale("log")
    else:
        ax.set_xticks(range(len(categories)), categories)
    _finish(ax, f"{metric} vs {param}", xlabel=param, ylabel=metric)
    return fig
