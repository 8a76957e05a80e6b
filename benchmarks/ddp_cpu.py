"""One process vs DDP over N gloo CPU processes (`hardware=ddp_cpu`) on the same training: wall time and samples/s.

Each setting runs the `finetune` method (one stage: the embedded default's tiny teacher) through the CLI,
twice per round: a short run (`--short-batches` batches) and a long one (`--epochs` epochs over `--train-size`
reviews). Their difference removes what does not grow with the work (process start, imports, the rank
launch, tokenisation, evaluation), so

    overhead   = wall(short run)
    samples/s  = (samples of the long run − samples of the short run) / (wall(long) − wall(short))

Rounds alternate the settings so drifts of the machine hit both; the medians are reported. The final
metrics of the two settings are printed too: with dropout off they agree (tests/test_ddp.py checks 1e-3).
On a 2-core CPU the point is correctness and overhead, not speed-up: N processes share the same cores
(Lightning gives each process cores ÷ N threads).

    python benchmarks/ddp_cpu.py [--processes 2] [--rounds 3] [--train-size 2000] [--epochs 2] [--out outputs/benchmarks/ddp_cpu.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run(args: argparse.Namespace, processes: int, batches: int | None, folder: Path) -> tuple[float, dict]:
    """Wall seconds and metrics.json of one CLI run."""
    overrides = [
        "method=finetune",
        "method.train=teacher",
        f"data.train.size={args.train_size}",
        "data.validation.size=200",
        "data.test.size=200",
        f"data.batch_size={args.batch_size}",
        f"method.teacher.epochs={args.epochs}",
        "trainer.enable_progress_bar=false",
        "model.teacher.config.hidden_dropout_prob=0",
        "model.teacher.config.attention_probs_dropout_prob=0",
        f"hydra.run.dir={folder}",
    ]
    if batches is not None:
        overrides += [f"trainer.limit_train_batches={batches}", "method.teacher.epochs=1"]
    if processes > 1:
        overrides += ["hardware=ddp_cpu", f"trainer.devices={processes}"]
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "KDLAB_CACHE_DIR": str(folder.parent / "cache"),
        "KDLAB_OUTPUT_DIR": str(folder.parent / "outputs"),
    }
    start = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "kdlab.train", *overrides], cwd=REPO, env=env, capture_output=True, text=True
    )
    wall = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"run failed ({processes} processes):\n{result.stderr[-3000:]}")
    return wall, json.loads((folder / "metrics.json").read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--train-size", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--short-batches", type=int, default=2)
    parser.add_argument("--out", default="outputs/benchmarks/ddp_cpu.json")
    args = parser.parse_args()

    steps = args.epochs * -(-args.train_size // args.batch_size)
    work = {"long": args.epochs * args.train_size, "short": args.short_batches * args.batch_size}
    settings = {1: "1 process", args.processes: f"{args.processes} processes (ddp, gloo)"}
    walls: dict[int, dict[str, list[float]]] = {p: {"short": [], "long": []} for p in settings}
    metrics: dict[int, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for round_ in range(args.rounds):
            for processes in settings:
                for kind, batches in (("short", args.short_batches), ("long", None)):
                    folder = Path(tmp) / f"r{round_}-p{processes}-{kind}"
                    wall, result = run(args, processes, batches, folder)
                    walls[processes][kind].append(wall)
                    if kind == "long":
                        metrics[processes] = result
                    print(f"round {round_}: {settings[processes]:<26} {kind:<5} {wall:7.1f} s", flush=True)

    report = {
        "train_size": args.train_size,
        "batch_size": args.batch_size,
        "epochs": args.epochs,
        "steps": steps,
        "rounds": args.rounds,
        "cpu_count": os.cpu_count(),
        "settings": {},
    }
    print(
        f"\n{args.epochs} epochs × {args.train_size} examples, global batch {args.batch_size} ({steps} optimizer steps), "
        f"median of {args.rounds} rounds"
    )
    print(f"{'setting':<28}{'wall long (s)':>14}{'overhead (s)':>14}{'samples/s':>12}")
    for processes, name in settings.items():
        long_, short = statistics.median(walls[processes]["long"]), statistics.median(walls[processes]["short"])
        rate = (work["long"] - work["short"]) / (long_ - short)
        report["settings"][name] = {
            "wall_long_s": long_,
            "wall_short_s": short,
            "samples_per_s": rate,
            "val_acc": metrics[processes]["teacher/val/acc"],
            "test_acc": metrics[processes]["teacher/test/acc"],
        }
        print(f"{name:<28}{long_:>14.1f}{short:>14.1f}{rate:>12.1f}")
    one, many = (report["settings"][settings[p]] for p in settings)
    report["ratio_samples_per_s"] = many["samples_per_s"] / one["samples_per_s"]
    report["ratio_wall_long"] = many["wall_long_s"] / one["wall_long_s"]
    print(
        f"ratio {args.processes} processes / 1 process: samples/s ×{report['ratio_samples_per_s']:.2f}, "
        f"wall ×{report['ratio_wall_long']:.2f}"
    )
    print(
        f"final metrics: 1 process val/test acc {one['val_acc']:.2f}/{one['test_acc']:.2f}; "
        f"{args.processes} processes {many['val_acc']:.2f}/{many['test_acc']:.2f}"
    )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"written to {out}")


if __name__ == "__main__":
    main()
