"""Does a transfer set help BAM's student? `experiment=bam_toy` with and without per-task transfer sets, over seeds.

    python benchmarks/bam_transfer.py [--seeds 42,1,2] [--reviews 1800] [--sts 600] [--out DIR] [OVERRIDE ...]

For each seed, two runs of `kdlab-train experiment=bam_toy seed=S`: without transfer sets, and with one per task
(`transfer` below: --reviews generated reviews for the reviews task, --sts generated sts_toy pairs for sts, seed 1,
labelled by each task's teacher; `mix_size: all`). The teachers are the same in both runs (the second reuses them from the teacher store:
a transfer set is not part of a teacher's key). Prints each run's test reviews accuracy, sts Pearson and their mean
(glue_mean) for the teachers and the student, the student's gain with the transfer sets, and the wall time; writes
bam_transfer.json. Extra OVERRIDEs go to every run.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from kdlab_run import train


def transfer(reviews: int, sts: int) -> list[str]:
    """The overrides giving each task a generated transfer set of that many rows."""
    return [
        f"data.tasks.0.transfer={{sources: [{{embedded: reviews, split: train, size: {reviews}, seed: 1}}]}}",
        f"data.tasks.1.transfer={{sources: [{{embedded: sts_toy, split: train, size: {sts}, seed: 1}}]}}",
    ]


METRICS = ("reviews/acc", "sts/pearson", "glue_mean")


def run(seed: int, name: str, out: Path, overrides: list[str]) -> dict[str, float]:
    """One bam_toy run; its test metrics (teacher and student) and wall time."""
    folder = out / f"seed{seed}_{name}"
    arguments = [
        "experiment=bam_toy",
        f"seed={seed}",
        "method.deploy_benchmark=false",
        "trainer.enable_progress_bar=false",
        *overrides,
    ]
    metrics, wall = train(folder, arguments, f"seed {seed} {name}")
    row = {f"{role}/{m}": metrics[f"{role}/test/{m}"] for role in ("teacher", "student") for m in METRICS}
    if name == "transfer":
        sizes = json.loads((folder / "student" / "mix.json").read_text())["sizes"]
        row.update({f"rows/{task}": info["rows"] for task, info in sizes.items()})
    return {**row, "wall_s": wall}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="42,1,2", help="comma-separated")
    parser.add_argument("--reviews", type=int, default=1800, help="generated transfer reviews for the reviews task")
    parser.add_argument("--sts", type=int, default=600, help="generated transfer pairs for the sts task")
    parser.add_argument("--out", type=Path, default=Path("outputs/benchmarks/bam_transfer"))
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    rows: dict[int, dict[str, dict[str, float]]] = {}
    for seed in map(int, args.seeds.split(",")):
        rows[seed] = {
            "none": run(seed, "none", args.out, args.overrides),
            "transfer": run(seed, "transfer", args.out, [*transfer(args.reviews, args.sts), *args.overrides]),
        }
    header = ["seed", "run", *[f"T {m}" for m in METRICS], *[f"S {m}" for m in METRICS], "wall s"]
    print(" ".join(f"{h:>16}" for h in header))
    gains: dict[str, list[float]] = {m: [] for m in METRICS}
    for seed, pair in rows.items():
        for name, row in pair.items():
            values = [row[f"teacher/{m}"] for m in METRICS] + [row[f"student/{m}"] for m in METRICS]
            print(f"{seed:>16} {name:>16} " + " ".join(f"{v:16.2f}" for v in values) + f" {row['wall_s']:16.0f}")
        for m in METRICS:  # metrics.json scores are ×100
            gains[m].append(pair["transfer"][f"student/{m}"] - pair["none"][f"student/{m}"])
    for m, values in gains.items():
        spread = statistics.stdev(values) if len(values) > 1 else 0.0
        print(
            f"student test {m}, with - without transfer sets: {statistics.mean(values):+.2f} (sd {spread:.2f}, "
            f"{len(values)} seeds: {', '.join(f'{v:+.2f}' for v in values)})"
        )
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bam_transfer.json").write_text(json.dumps({"runs": rows, "gains": gains}, indent=2) + "\n")


if __name__ == "__main__":
    main()
