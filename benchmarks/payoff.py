"""Does distillation pay off on the embedded default? `make train`'s experiment over several seeds.

    python benchmarks/payoff.py [--seeds 42,1,2] [--out outputs/benchmarks/payoff] [OVERRIDE ...]

Runs `kdlab-train experiment=hinton_transfer method.baseline=true seed=S` (what `make train` runs) once per seed,
each in its own run folder, and prints for every seed the teacher's, the KD student's and the no-KD student's test
accuracy, the gain KD − no-KD (the baseline is the same student, same seed and settings, trained on the labelled
rows alone, in the same run) and the run's wall time; then the mean gain and its spread over the seeds. Extra
OVERRIDEs go to every run (e.g. `data.transfer=null` measures KD without the transfer set). The teacher store and
the caches are the usual ones, so a seed whose teacher an earlier run trained reuses it.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from kdlab_run import train

ROLES = ("teacher", "student", "baseline")


def run(seed: int, out: Path, overrides: list[str]) -> dict[str, float]:
    """One `make train` run for `seed`; its test accuracies and wall time."""
    folder = out / f"seed{seed}"
    arguments = [
        "experiment=hinton_transfer",
        "method.baseline=true",
        f"seed={seed}",
        "trainer.enable_progress_bar=false",
        *overrides,
    ]
    metrics, wall = train(folder, arguments, f"seed {seed}")
    return {**{role: metrics[f"{role}/test/acc"] for role in ROLES}, "wall_s": wall}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="42,1,2", help="comma-separated")
    parser.add_argument("--out", type=Path, default=Path("outputs/benchmarks/payoff"))
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    rows = {seed: run(seed, args.out, args.overrides) for seed in map(int, args.seeds.split(","))}
    print(f"{'seed':>6} {'teacher':>8} {'KD':>8} {'no KD':>8} {'gain':>7} {'wall s':>7}")
    gains = []
    for seed, row in rows.items():
        gain = row["student"] - row["baseline"]  # metrics.json scores are ×100
        gains.append(gain)
        print(
            f"{seed:>6} {row['teacher']:8.2f} {row['student']:8.2f} {row['baseline']:8.2f} "
            f"{gain:+7.2f} {row['wall_s']:7.0f}"
        )
    spread = statistics.stdev(gains) if len(gains) > 1 else 0.0
    print(
        f"mean gain KD - no KD: {statistics.mean(gains):+.2f} test accuracy points (sd {spread:.2f}, {len(gains)} seeds)"
    )
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "payoff.json").write_text(json.dumps({"runs": rows, "gains": gains}, indent=2) + "\n")


if __name__ == "__main__":
    main()
