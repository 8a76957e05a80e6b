"""Does BAM beat single-task and plain multi-task training? The BAM reference preset on GLUE over several seeds.

    python benchmarks/bam_reference.py [--seeds 42,1,2] [--train 200] [--student-epochs 3] [--tasks rte,mrpc,stsb,sst2]
                                       [--dev 300] [--test] [--out outputs/benchmarks/bam_reference] [OVERRIDE ...]

Issue 19, item 3. For each seed, two runs of `experiment=bam_glue method=bam_reference` (google-research bam/'s
settings, docs/reference_presets.md) on the GLUE tasks of ../shared/data (KDLAB_DATA_DIR):

    bam     the single-task teachers (the preset's teacher settings: lr 5e-5, 3 epochs, batch 32, layerwise decay 0.9
            with the pooler's step), then the BAM student (teacher annealing, mixed batches of 128, summed loss)
    plain   the same student without teachers (method.teachers=false): plain multi-task training

The single-task row is the teachers (`teacher/val/...` of the bam run); the plain run trains no teacher. A seed's
teachers are stored in the teacher store and reused by a rerun. The data: conf/data/glue.yaml with CoLA left out
(its teachers stay at chance on a subsample: BENCHMARKS.md, "BAM! on five GLUE tasks") and every training set cut to
`--train` seeded rows (MRPC and STS-B then train on both orders, 2 × that), every dev set to `--dev` seeded rows
(0: as given), no test sets unless `--test` (the claim is on the dev mean). Written to
`<out>/conf/data/glue_bench.yaml` and passed with --config-dir.
Every run records its deviations from the preset (the student's epochs, here) in reference_deviations.json.

Prints the dev score of each task's main metric and the dev mean per row, mean ± std over the seeds, then BAM minus
each other row per seed; writes `<out>/results.json`.

Sizing (all-MiniLM-L6-v2 for every model, max length 128 with per-batch padding). Pilot, 2026-12-03, on the 2 cores
at load 6-7 (other sessions' jobs): `--seeds 42 --train 64 --student-epochs 1 --dev 64 method.teacher.epochs=1`, the bam
run (4 teachers and the student) took 590 s, ~0.5 s per training example with its evaluation. A seed at the
defaults trains 3 × 6N teacher and 2 × 3 × 6N student examples (N = --train; MRPC and STS-B doubled) and evaluates
~10,600 dev rows: ~54N + 3,500 example-equivalents, ~14,000 at N = 200, about 2 h for 3 seeds if the cores are idle
(~3× faster than at the pilot's load), 6 h or more at that load.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from kdlab_run import train
from omegaconf import OmegaConf

REPO = Path(__file__).resolve().parents[1]
ROWS = ("single-task", "plain multi-task", "BAM")


def write_data_config(out: Path, tasks: list[str], train: int, dev: int, test: bool) -> Path:
    """conf/data/glue.yaml with only `tasks`, each training set cut to `train` seeded rows and each dev set to `dev`
    (0: whole), test sets dropped unless `test`; its config folder."""
    cfg = OmegaConf.load(REPO / "conf" / "data" / "glue.yaml")
    known = [task.name for task in cfg.tasks]
    unknown = [name for name in tasks if name not in known]
    if unknown:
        raise SystemExit(f"--tasks: {unknown} not in conf/data/glue.yaml ({known})")
    cfg.name = "glue_bench"
    cfg.tasks = [task for task in cfg.tasks if task.name in tasks]
    for task in cfg.tasks:
        task.train.limit, task.train.seed = train, 0
        if dev:
            task.validation.limit, task.validation.seed = dev, 0
        if not test:
            task.test = None
    folder = out / "conf"
    (folder / "data").mkdir(parents=True, exist_ok=True)
    OmegaConf.save(cfg, folder / "data" / "glue_bench.yaml")
    return folder


def run(name: str, folder: Path, config_dir: Path, seed: int, epochs: int, overrides: list[str]) -> dict:
    """One kdlab-train run; its metrics.json and wall time."""
    arguments = [
        f"--config-dir={config_dir}",
        "experiment=bam_glue",
        "method=bam_reference",
        "data=glue_bench",
        "method.report_metrics=[glue_mean]",
        "method.deploy_benchmark=false",
        f"method.student.epochs={epochs}",
        f"seed={seed}",
        *overrides,
    ]
    metrics, wall = train(folder, arguments, f"seed {seed} {name}")
    return {"metrics": metrics, "wall_s": wall}


def dev_scores(metrics: dict, role: str, main: dict[str, str]) -> dict[str, float]:
    """Each task's dev main metric and the mean for a role (teacher | student)."""
    scores = {task: metrics[f"{role}/val/{task}/{metric}"] for task, metric in main.items()}
    scores["mean"] = metrics[f"{role}/val/glue_mean"]
    return scores


def spread(values: list[float]) -> str:
    mean = statistics.mean(values)
    return f"{mean:6.2f} ± {statistics.stdev(values):4.2f}" if len(values) > 1 else f"{mean:6.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="42,1,2", help="comma-separated")
    parser.add_argument("--train", type=int, default=200, help="training rows per task (before both orders)")
    parser.add_argument("--student-epochs", type=int, default=3)
    parser.add_argument("--tasks", default="rte,mrpc,stsb,sst2", help="tasks of conf/data/glue.yaml")
    parser.add_argument("--dev", type=int, default=300, help="dev rows per task (0: whole)")
    parser.add_argument("--test", action="store_true", help="also score the labelled test sets")
    parser.add_argument("--out", type=Path, default=Path("outputs/benchmarks/bam_reference"))
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    tasks = args.tasks.split(",")
    out = args.out.resolve()
    config_dir = write_data_config(out, tasks, args.train, args.dev, args.test)
    glue = OmegaConf.load(config_dir / "data" / "glue_bench.yaml")
    main_metric = {task.name: task.main_metric for task in glue.tasks}
    results: dict[int, dict] = {}
    for seed in map(int, args.seeds.split(",")):
        bam = run("bam", out / f"seed{seed}" / "bam", config_dir, seed, args.student_epochs, args.overrides)
        plain = run(
            "plain",
            out / f"seed{seed}" / "plain",
            config_dir,
            seed,
            args.student_epochs,
            ["method.teachers=false", *args.overrides],
        )
        results[seed] = {
            "single-task": dev_scores(bam["metrics"], "teacher", main_metric),
            "plain multi-task": dev_scores(plain["metrics"], "student", main_metric),
            "BAM": dev_scores(bam["metrics"], "student", main_metric),
            "wall_s": {"bam": bam["wall_s"], "plain": plain["wall_s"]},
        }
    columns = [*main_metric, "mean"]
    print("\ndev (×100), mean ± std over seeds " + ",".join(map(str, results)))
    labels = [f"{c}/{main_metric[c]}" if c in main_metric else c for c in columns]
    print(f"{'row':<17}" + "".join(f"{label:>17}" for label in labels))
    for row in ROWS:
        print(f"{row:<17}" + "".join(f"{spread([r[row][c] for r in results.values()]):>17}" for c in columns))
    for other in ("single-task", "plain multi-task"):
        gaps = [r["BAM"]["mean"] - r[other]["mean"] for r in results.values()]
        print(f"BAM − {other} (dev mean) per seed: {', '.join(f'{g:+.2f}' for g in gaps)}; mean {spread(gaps)}")
    walls = [w for r in results.values() for w in r["wall_s"].values()]
    print(f"wall time: {sum(walls) / 60:.1f} min for {len(walls)} runs")
    settings = {k: v for k, v in vars(args).items() if k != "out"}
    (out / "results.json").write_text(json.dumps({"settings": settings, "results": results}, indent=2, default=str))


if __name__ == "__main__":
    main()
