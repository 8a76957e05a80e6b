"""The summary of a multirun: one row per job with its overrides, status and final metrics.

Written after every multirun by the Hydra callback `SweepSummary` (conf/hydra/default.yaml) as
<sweep>/summary.csv and printed; rebuilt for any sweep folder (also one still running) with

    kdlab-sweep-summary outputs/sweeps/<sweep>      # or: python -m kdlab.sweep outputs/sweeps/<sweep>

It reads only files: each job folder's .hydra/overrides.yaml, metrics.json (a finished job) and
error.json (a failed one, written by `kdlab.app.guarded`), so it works for every launcher (basic,
submitit local or SLURM) and sweeper (grid, Optuna). A job with neither file is `incomplete`: still
running, or killed before it could record anything. Torch-free: it runs at the end of a sweep
without loading the training stack.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from kdlab.evaluation.names import format_metric
from kdlab.utils.run_folder import ERROR_FILE

SUMMARY_FILE = "summary.csv"
OK, FAILED, INCOMPLETE = "ok", "failed", "incomplete"


def job_dirs(sweep_dir: Path) -> list[Path]:
    """The job folders of a sweep (those with .hydra/overrides.yaml), in job-number order."""

    def number(job: Path) -> tuple[int, str]:
        hydra_yaml = job / ".hydra" / "hydra.yaml"
        num = OmegaConf.select(OmegaConf.load(hydra_yaml), "hydra.job.num") if hydra_yaml.exists() else None
        return (int(num) if isinstance(num, int) else sys.maxsize, str(job))

    def multirun_job(job: Path) -> bool:  # a single run (hydra.mode RUN) in a folder of runs is no sweep job
        hydra_yaml = job / ".hydra" / "hydra.yaml"
        return not hydra_yaml.exists() or str(OmegaConf.select(OmegaConf.load(hydra_yaml), "hydra.mode")) != "RUN"

    # the sweep folder's own children (Hydra's sweep.subdir is the job number): a folder holding runs and sweeps is not one
    jobs = [marker.parent.parent for marker in sweep_dir.glob("*/.hydra/overrides.yaml")]
    return sorted((job for job in jobs if multirun_job(job)), key=number)


def _override(text: str) -> tuple[str, str]:
    """`key=value` → (key, value); an added key (`+key=`, `++key=`) is shown as the key itself."""
    key, _, value = text.partition("=")
    return key.lstrip("+"), value


def job_row(job: Path) -> dict[str, Any]:
    """One job: its folder, status, overrides (key → value), metrics and error (type: message, one line)."""
    overrides = dict(_override(str(item)) for item in OmegaConf.load(job / ".hydra" / "overrides.yaml"))
    metrics_file, error_file = job / "metrics.json", job / ERROR_FILE
    error = json.loads(error_file.read_text(encoding="utf-8")) if error_file.exists() else None
    if error is not None:
        status = FAILED
    elif metrics_file.exists():
        status = OK
    else:
        status = INCOMPLETE
    metrics = json.loads(metrics_file.read_text(encoding="utf-8")) if status == OK else {}
    first_line = str(error["message"]).strip().splitlines()[0] if error and str(error["message"]).strip() else ""
    message = f"{error['type']}: {first_line}" if error else ""
    config_file = job / "config.yaml"  # the resolved config kdlab writes at the start of a run
    optimized = OmegaConf.select(OmegaConf.load(config_file), "optimized_metric") if config_file.exists() else None
    return {
        "job": job.name,
        "path": job,
        "status": status,
        "overrides": overrides,
        "metrics": metrics,
        "error": message,
        "kdlab_error": bool(error and error.get("kdlab_error")),
        "optimized_metric": optimized,
    }


def _columns(rows: list[dict[str, Any]], part: str) -> list[str]:
    names: list[str] = []
    for row in rows:
        names += [name for name in row[part] if name not in names]
    return names


def table(rows: list[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    """The CSV table: job, status, one column per override key, one per metric, error."""
    overrides, metrics = _columns(rows, "overrides"), _columns(rows, "metrics")
    header = ["job", "status", *overrides, *metrics, "error"]
    body = [
        [
            row["job"],
            row["status"],
            *(row["overrides"].get(k, "") for k in overrides),
            *(repr(row["metrics"][m]) if m in row["metrics"] else "" for m in metrics),
            row["error"],
        ]
        for row in rows
    ]
    return header, body


def render(rows: list[dict[str, Any]], width: int = 240) -> str:
    """The printed table (job, status, the overrides that differ between jobs, the optimised role's metrics),
    then one line per failed job with its error."""
    from rich.console import Console
    from rich.table import Table

    overrides = [k for k in _columns(rows, "overrides") if len({r["overrides"].get(k) for r in rows}) > 1]
    shared = [f"{k}={v}" for k, v in rows[0]["overrides"].items() if k not in overrides] if rows else []
    metrics = _columns(rows, "metrics")
    optimized = next((r["optimized_metric"] for r in rows if r["optimized_metric"]), None)
    if optimized:  # the optimised metric first, then the other metrics of its role (student/..., teacher/...)
        role = optimized.split("/", 1)[0] + "/"
        metrics = [optimized] * (optimized in metrics) + [m for m in metrics if m.startswith(role) and m != optimized]
    title = "sweep summary" + (f" (also in every job: {' '.join(shared)})" if shared else "")
    out = Table(title=title)
    for name in ("job", "status", *overrides):
        out.add_column(name)
    for name in metrics:
        out.add_column(name, justify="right")
    for row in rows:
        cells = [row["job"], row["status"], *(row["overrides"].get(k, "") for k in overrides)]
        cells += [format_metric(m, row["metrics"][m]) if m in row["metrics"] else "-" for m in metrics]
        out.add_row(*cells)
    console = Console(file=io.StringIO(), width=width, no_color=True)
    console.print(out)
    errors = "".join(f"job {row['job']} failed: {row['error']}\n" for row in rows if row["error"])
    return console.file.getvalue() + errors


def summarise(sweep_dir: str | Path, echo: bool = True) -> list[dict[str, Any]]:
    """Write <sweep>/summary.csv for a sweep folder and (echo) print the table; returns the job rows."""
    sweep_dir = Path(sweep_dir)
    rows = [job_row(job) for job in job_dirs(sweep_dir)]
    header, body = table(rows)
    with open(sweep_dir / SUMMARY_FILE, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(body)
    if echo:
        print(render(rows), end="")
        results = sweep_dir / "optimization_results.yaml"  # written by the Optuna sweeper
        if results.exists():
            best = OmegaConf.load(results)
            if "best_params" in best:
                params = " ".join(f"{k}={v}" for k, v in best.best_params.items())
                print(f"best trial: {params} -> {best.best_value}")
        print(f"sweep summary: {sweep_dir / SUMMARY_FILE}")
    return rows


def failure_report(rows: list[dict[str, Any]]) -> tuple[str, int] | None:
    """(one line, exit code) when a job failed or never finished: 2 if every failure was a config/data error, else 1."""
    bad = [r for r in rows if r["status"] != OK]
    if not bad:
        return None
    first = next((r for r in bad if r["error"]), bad[0])
    reason = first["error"] or "no metrics.json and no error.json (killed, or still running)"
    line = f"{len(bad)} of {len(rows)} sweep jobs failed (job {first['job']}: {reason})"
    return line, 2 if all(r["kdlab_error"] for r in bad) else 1


class SweepSummary(Callback):
    """Hydra callback: after a multirun, write and print the sweep summary; exit non-zero if a job failed.

    Every job has run by then (a failed job is recorded by `kdlab.app.guarded` and the sweep goes on), so
    the exit status is the only place left to say that something failed: 1, or 2 when every failure was a
    config or data error (the single-run code for those).
    """

    def __init__(self) -> None:
        self.sweep_dir: Path | None = None

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self.sweep_dir = Path(str(config.hydra.sweep.dir))

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = self.sweep_dir or Path(str(config.hydra.sweep.dir))
        if not sweep_dir.is_dir():
            return
        rows = summarise(sweep_dir)
        report = failure_report(rows)
        if report is not None:
            line, code = report
            print(f"kdlab: error: {line}; table: {sweep_dir / SUMMARY_FILE}", file=sys.stderr)
            raise SystemExit(code)


def main(argv: list[str] | None = None) -> None:
    """`kdlab-sweep-summary SWEEP_DIR`: rebuild and print the summary of an existing sweep folder."""
    parser = argparse.ArgumentParser(prog="kdlab-sweep-summary", description=main.__doc__)
    parser.add_argument("sweep_dir", type=Path, help="a multirun folder, e.g. outputs/sweeps/<date>_<time>")
    args = parser.parse_args(argv)
    if not args.sweep_dir.is_dir() or not job_dirs(args.sweep_dir):
        print(
            f"kdlab: error: {args.sweep_dir}: not a sweep folder (no job folder with .hydra/overrides.yaml)",
            file=sys.stderr,
        )
        raise SystemExit(2)
    summarise(args.sweep_dir)


if __name__ == "__main__":
    main()
