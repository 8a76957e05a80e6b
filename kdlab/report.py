"""`kdlab-report RUN_OR_SWEEP_DIR`: the plots of a run or sweep folder as PNG files and a Markdown summary.

    kdlab-report outputs/runs/<run>                  # -> outputs/runs/<run>/report/report.md + <figure>.png
    kdlab-report outputs/sweeps/<sweep>              # metric vs each swept key, and a table of the jobs
    kdlab-report outputs/sweeps/<sweep> --param loss.temperature --metric student/val/f1 --out /tmp/report

The figures are those of `kdlab.plots` (the notebooks draw the same ones). report.md holds the run's
method, key config values, overrides and commit, the final metrics (metrics.json) as a table, and
links to the PNGs; a sweep's report.md lists every job with its swept values and metric. A folder that
is neither a run nor a sweep folder is one line on stderr and exit code 2. Headless by construction: the
figures are `matplotlib.figure.Figure` objects saved by the Agg renderer, whatever MPLBACKEND says.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from kdlab.errors import KdlabError
from kdlab.evaluation.names import format_metric
from kdlab.registry import METHODS

# the config values a reader checks first (besides each method's own `keys` in kdlab.registry); absent keys are skipped
COMMON_KEYS = ["data.name", "run_name", "seed", "optimized_metric"]


def _cell(value: Any, column: str) -> str:
    if isinstance(value, float):
        return format_metric(column, value)
    return str(value).replace("|", "\\|")


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(_cell(v, c) for v, c in zip(row, header)) + " |" for row in rows]


def metrics_table(metrics: dict[str, float]) -> list[str]:
    """metrics.json as a Markdown table: one row per model (`student/val/acc` → row student, column val/acc)."""
    roles: dict[str, dict[str, float]] = {}
    for name, value in metrics.items():
        role, _, metric = name.partition("/")
        roles.setdefault(role, {})[metric or role] = value
    columns = list(dict.fromkeys(m for values in roles.values() for m in sorted(values)))
    return _table(
        ["model", *columns], [[role, *(values.get(c, "") for c in columns)] for role, values in roles.items()]
    )


def _write(fig: Any, out: Path, name: str) -> str:
    filename = re.sub(r"[^A-Za-z0-9_.-]+", "_", name) + ".png"
    fig.savefig(out / filename, dpi=110)
    return filename


def report_run(path: Path, out: Path) -> Path:
    """Write the run's figures and report.md into `out`; returns report.md."""
    from kdlab import plots

    run = plots.RunFolder(path)
    out.mkdir(parents=True, exist_ok=True)
    lines = [
        f"# kdlab run report: {run.path.name}",
        "",
        f"- folder: `{run.path.resolve()}`",
        f"- method: **{run.method}**",
    ]
    if run.overrides:
        lines.append("- overrides: " + " ".join(f"`{o}`" for o in run.overrides))
    info_file = run.path / "run.json"
    if info_file.is_file():
        git = json.loads(info_file.read_text(encoding="utf-8")).get("git") or {}
        if git.get("commit"):
            lines.append(f"- commit: `{git['commit'][:12]}`" + (" (uncommitted changes)" if git.get("dirty") else ""))
    optimized = OmegaConf.select(run.config, "optimized_metric")
    if optimized and optimized in run.metrics:
        lines.append(f"- {optimized} = **{format_metric(optimized, run.metrics[optimized])}**")
    if not run.metrics:
        lines.append("- no metrics.json: the run has not finished (or failed)")
    config_rows = []
    entry = METHODS.get(run.method)
    for key in [*COMMON_KEYS, *(entry.keys if entry is not None else ())]:
        value = OmegaConf.select(run.config, key, default=None)
        if value is not None and not OmegaConf.is_config(value):
            config_rows.append([key, str(value)])  # as written: 2e-05 stays 2e-05
    lines += ["", "## Key config values", "", *_table(["key", "value"], config_rows)]
    if run.metrics:
        lines += ["", "## Final metrics (metrics.json)", "", *metrics_table(run.metrics)]
    lines += ["", "## Plots", ""]
    try:
        figures = plots.plot_run(run.path)
    except KdlabError as err:  # e.g. a run logged without the CSV logger: the summary still stands
        lines.append(f"No plots: {err}")
        print(f"kdlab-report: no plots for {run.path}: {err}", file=sys.stderr)
    else:
        for name, fig in figures.items():
            lines.append(f"![{name}]({_write(fig, out, name)})")
    report = out / "report.md"
    report.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return report


def report_sweep(path: Path, out: Path, param: str | None = None, metric: str | None = None) -> Path:
    """Write metric-vs-hyperparameter figures (one per swept key, or `param`) and report.md into `out`."""
    from kdlab import plots
    from kdlab.errors import DataError

    jobs = plots.read_sweep(path)
    swept = [param] if param else plots.varying(jobs)
    finished = [job for job in jobs if job.ok]
    if metric is not None and finished and not any(metric in job.metrics for job in finished):
        known = sorted({name for job in finished for name in job.metrics})
        raise DataError(path, f"no finished job has the metric {metric!r} (--metric); they have: {', '.join(known)}")
    metric = metric or next((job.optimized_metric for job in jobs if job.optimized_metric), None)
    counts = {status: sum(job.status == status for job in jobs) for status in dict.fromkeys(job.status for job in jobs)}
    out.mkdir(parents=True, exist_ok=True)
    lines = [
        f"# kdlab sweep report: {path.name}",
        "",
        f"- folder: `{path.resolve()}`",
        f"- jobs: {len(jobs)} ({', '.join(f'{n} {status}' for status, n in counts.items())})",
        f"- swept: {', '.join(swept) or 'nothing (every job has the same overrides)'}",
    ]
    shared = {
        k: v for k, v in jobs[0].overrides.items() if k not in swept and all(j.overrides.get(k) == v for j in jobs)
    }
    if shared:
        lines.append("- in every job: " + " ".join(f"`{k}={v}`" for k, v in shared.items()))
    if metric:
        lines.append(f"- metric: `{metric}`")
        best = max(
            (job for job in finished if metric in job.metrics), key=lambda job: job.metrics[metric], default=None
        )
        if best is not None:
            lines.append(
                f"- highest: job {best.path.name} ({', '.join(f'{k}={best.overrides.get(k)}' for k in swept)}): "
                f"**{format_metric(metric, best.metrics[metric])}**"
            )
    errors = any(job.error for job in jobs)
    rows = [
        [
            job.path.name,
            *(job.overrides.get(k, "") for k in swept),
            job.status,
            job.metrics.get(metric, "") if metric else "",
            *([job.error[:160]] if errors else []),
        ]
        for job in jobs
    ]
    header = ["job", *swept, "status", metric or "metric", *(["error"] if errors else [])]
    lines += ["", "## Jobs", "", *_table(header, rows), "", "## Plots", ""]
    for key in swept:
        try:
            fig = plots.plot_sweep(path, param=key, metric=metric)
        except KdlabError as err:
            lines.append(f"No plot against {key}: {err}")
            print(f"kdlab-report: no plot against {key}: {err}", file=sys.stderr)
            continue
        lines.append(f"![{metric} vs {key}]({_write(fig, out, f'sweep_{key}')})")
    report = out / "report.md"
    report.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return report


def report(
    path: str | Path, out: str | Path | None = None, param: str | None = None, metric: str | None = None
) -> Path:
    """The report of a run or sweep folder in `out` (default <path>/report); returns report.md."""
    from kdlab import plots
    from kdlab.errors import DataError

    path = Path(path)
    target = Path(out) if out is not None else path / "report"
    if plots.is_sweep(path):
        return report_sweep(path, target, param, metric)
    if (path / "config.yaml").is_file():
        return report_run(path, target)
    if not path.is_dir():
        raise DataError(path, "no such folder")
    inside = folders_inside(path)
    if inside:
        raise DataError(
            path,
            f"holds {counted(inside)}, not one run or sweep: report one of them, e.g. "
            + ", ".join(f"kdlab-report {folder}" for folder in inside[:3])
            + (" ..." if len(inside) > 3 else ""),
        )
    raise DataError(path, plots.NOT_A_FOLDER)


def counted(folders: list[Path]) -> str:
    """'1 run folder', '3 run folders and 1 sweep folder', ...: what `folders_inside` found, in words."""
    runs = sum((folder / "config.yaml").is_file() for folder in folders)
    parts = [(runs, "run"), (len(folders) - runs, "sweep")]
    return " and ".join(f"{n} {kind} folder{'s' if n != 1 else ''}" for n, kind in parts if n)


def folders_inside(path: Path, depth: int = 2) -> list[Path]:
    """The run folders (config.yaml) and sweep folders below `path`, newest first, down to `depth` levels."""
    from kdlab import plots

    found: list[Path] = []
    level = [path]
    for _ in range(depth):
        level = sorted(
            (child for folder in level for child in folder.iterdir() if child.is_dir()), key=lambda p: p.name
        )
        found += [child for child in level if (child / "config.yaml").is_file() or plots.is_sweep(child)]
        level = [child for child in level if child not in found]
    return sorted(found, key=lambda p: p.stat().st_mtime, reverse=True)


def main(argv: list[str] | None = None) -> None:
    """`kdlab-report RUN_OR_SWEEP_DIR [--out DIR] [--param KEY] [--metric NAME]`."""
    parser = argparse.ArgumentParser(prog="kdlab-report", description=__doc__.split("\n", 1)[0])
    parser.add_argument(
        "folder", type=Path, help="a run folder (outputs/runs/<run>) or a sweep folder (outputs/sweeps/<sweep>)"
    )
    parser.add_argument(
        "--out", type=Path, default=None, help="where to write report.md and the PNGs (default: <folder>/report)"
    )
    parser.add_argument(
        "--param", default=None, help="sweeps: the swept key to plot against (default: every swept key)"
    )
    parser.add_argument(
        "--metric", default=None, help="sweeps: the metric to plot (default: the jobs' optimized_metric)"
    )
    args = parser.parse_args(argv)
    try:
        written = report(args.folder, args.out, args.param, args.metric)
    except KdlabError as err:
        print(f"kdlab: error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    print(f"report: {written}")


if __name__ == "__main__":
    main()
