"""Small students on SST-2 (Tang et al. 2019 at CPU scale): `experiment=hinton_sst2_small_students` for a BiLSTM and a
TextCNN, without KD, with KD on the labelled rows only, and with KD plus the transfer set.

    KDLAB_DATA_DIR=../shared/data python benchmarks/sst2_small_students.py [--out DIR] [--kinds bilstm textcnn]
        [--seeds 42,1,2] [--teacher FOLDER] [--jobs N] [OVERRIDE ...]

Per student kind and seed two runs, each in its own run folder under --out (`<kind>_transfer_seed<S>`, ...):
  (a) `experiment=hinton_sst2_small_students method.baseline=true`: the KD student on the labelled rows + the transfer
      set, and the same student trained on the labelled rows alone (no KD);
  (b) the same with `data.transfer=null`: KD on the labelled rows only.
The first (a) fine-tunes the teacher (or reuses it from the teacher store); every later run is given that teacher
(`model.teacher.trained=...`: the store's key includes the seed, so a second seed would fine-tune another one), and
the teacher-output cache labels each input once for all runs. `seed` moves the students only (initialisation, batch
order). Prints one table: the teacher, then per student no KD, KD (gold only), KD + transfer: dev and test accuracy
(mean ± sd over the seeds), the share of the teacher's test accuracy kept, parameters and CPU throughput at batch 32
over the teacher's timed in the same run (deploy figures in metrics.json); then KD + transfer − no KD per seed and
its mean. Writes every figure of every run to DIR/sst2_small_students_<kinds>.json. Extra OVERRIDEs go to every run
(e.g. smaller limits for a smoke run). `--teacher FOLDER` gives every run an already fine-tuned teacher. `--jobs N`
runs up to N runs at once (each a `kdlab-train` process; give `threads=1` so that they do not fight over the cores):
the first (a) alone when it fine-tunes the teacher, then every other run; the table is the same as one at a time.
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections.abc import Callable
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from pathlib import Path

import kdlab_run

EXPERIMENT = "experiment=hinton_sst2_small_students"
# the experiment's student is the BiLSTM; the TextCNN replaces kind and config
KINDS = {
    "bilstm": [],
    "textcnn": [
        "model.student.kind=textcnn",
        "~model.student.config",
        "+model.student.config={embedding_dim: 128, filter_widths: [3, 4, 5], num_filters: 256, dropout: 0.1}",
    ],
}


def train(folder: Path, overrides: list[str]) -> tuple[dict[str, float], float]:
    """One kdlab-train run into `folder` (resumed if already complete): its metrics.json and wall time."""
    return kdlab_run.train(folder, [EXPERIMENT, "trainer.enable_progress_bar=false", *overrides], str(folder))


def figures(metrics: dict[str, float], role: str, wall: float) -> dict[str, float]:
    """Accuracy and deploy figures of `role` in one run's metrics."""
    return {
        "dev_acc": metrics[f"{role}/val/acc"],  # metrics.json scores are ×100
        "test_acc": metrics[f"{role}/test/acc"],
        "params": metrics[f"{role}/deploy/params"],
        "disk_mb": metrics[f"{role}/deploy/disk_mb"],
        "latency_ms_b1": metrics[f"{role}/deploy/latency_ms_b1"],
        "throughput_b32": metrics[f"{role}/deploy/throughput_b32"],
        # the teacher timed in the same run, so that both saw the same load on the machine
        "teacher_throughput_b32": metrics["teacher/deploy/throughput_b32"],
        "wall_s": wall,
    }


def spread(values: list[float]) -> str:
    """'mean ± sample sd' (the mean alone for one value)."""
    mean = statistics.mean(values)
    return f"{mean:6.2f} ± {statistics.stdev(values):4.2f}" if len(values) > 1 else f"{mean:6.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("outputs/benchmarks/sst2_small_students"))
    parser.add_argument("--kinds", nargs="+", choices=list(KINDS), default=list(KINDS))
    parser.add_argument("--seeds", default="42", help="comma-separated student seeds; the teacher is the first seed's")
    parser.add_argument(
        "--teacher",
        help="an already fine-tuned teacher folder for every run (model.teacher.trained), e.g. a stored one",
    )
    parser.add_argument("--jobs", type=int, default=1, help="runs at once after the teacher's (default 1)")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_intermixed_args()  # options after the overrides too (--seeds 42 threads=1 ...)
    if args.jobs < 1:
        parser.error(f"--jobs: {args.jobs} runs at once; give 1 or more")
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    seeds = [int(seed) for seed in args.seeds.split(",")]
    tag = {seed: f"_seed{seed}" if len(seeds) > 1 else "" for seed in seeds}
    # (b) has no transfer set: an override of one would name a missing key
    without_transfer = [o for o in args.overrides if not o.lstrip("+~").startswith("data.transfer")]

    def transfer_run(kind: str, seed: int, teacher: str | None) -> tuple[dict[str, float], float]:
        given = [f"model.teacher.trained={teacher}"] if teacher else []
        return train(
            out / f"{kind}_transfer{tag[seed]}",
            [*KINDS[kind], "method.baseline=true", f"seed={seed}", *given, *args.overrides],
        )

    def gold_run(kind: str, seed: int, teacher: str) -> tuple[dict[str, float], float]:
        return train(
            out / f"{kind}_gold{tag[seed]}",
            [*KINDS[kind], "data.transfer=null", f"model.teacher.trained={teacher}", f"seed={seed}"] + without_transfer,
        )

    done: dict[tuple[str, int, str], tuple[dict[str, float], float]] = {}
    teacher_model = args.teacher
    if teacher_model is None:
        # the teacher store's key includes the seed: the first run fine-tunes the teacher (or finds it stored) and
        # every other run is given it
        first = (args.kinds[0], seeds[0])
        done[(*first, "transfer")] = transfer_run(*first, None)
        # the folder the deploy benchmark timed: this run's export, or the teacher store's folder when reused
        teacher_model = json.loads(
            (out / f"{first[0]}_transfer{tag[first[1]]}" / "teacher" / "deploy.json").read_text()
        )["folder"]
    todo: dict[tuple[str, int, str], Callable[[], tuple[dict[str, float], float]]] = {}
    for kind in args.kinds:
        for seed in seeds:
            if (kind, seed, "transfer") not in done:
                todo[(kind, seed, "transfer")] = lambda k=kind, s=seed: transfer_run(k, s, teacher_model)
            todo[(kind, seed, "gold")] = lambda k=kind, s=seed: gold_run(k, s, teacher_model)
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        futures = {pool.submit(job): key for key, job in todo.items()}
        finished, _ = wait(futures, return_when=FIRST_EXCEPTION)
        failed = [future for future in finished if future.exception() is not None]
        if failed:  # stop at the first failed run: the queued ones are not started, the running ones end
            pool.shutdown(wait=True, cancel_futures=True)
            raise failed[0].exception()
        done.update({key: future.result() for future, key in futures.items()})

    runs: dict[int, dict[str, dict[str, float]]] = {seed: {} for seed in seeds}
    for kind in args.kinds:
        for seed in seeds:
            rows = runs[seed]
            metrics, wall = done[(kind, seed, "transfer")]
            rows.setdefault("teacher", figures(metrics, "teacher", wall))
            rows[f"{kind}: no KD (gold only)"] = figures(metrics, "baseline", wall)
            transfer = figures(metrics, "student", wall)
            metrics, wall = done[(kind, seed, "gold")]
            rows[f"{kind}: KD (gold only)"] = figures(metrics, "student", wall)
            rows[f"{kind}: KD + transfer"] = transfer
            for row in rows.values():
                row["kept"] = 100 * row["test_acc"] / rows["teacher"]["test_acc"]
                row["speedup_b32"] = row["throughput_b32"] / row["teacher_throughput_b32"]
    names = list(runs[seeds[0]])
    print(f"\nSST-2 dev / test accuracy, mean ± sd over seeds {args.seeds} (the teacher: seed {seeds[0]}'s)")
    print(f"{'model':<28} {'dev acc':>15} {'test acc':>15} {'kept':>7} {'params':>11} {'× teacher b32':>14}")
    for name in names:
        each = [runs[seed][name] for seed in seeds]
        print(
            f"{name:<28} {spread([r['dev_acc'] for r in each]):>15} {spread([r['test_acc'] for r in each]):>15} "
            f"{statistics.mean(r['kept'] for r in each):6.1f}% {each[0]['params']:11,.0f} "
            f"{statistics.mean(r['speedup_b32'] for r in each):13.1f}×"
        )
    for kind in args.kinds:
        gains = {
            split: [
                runs[seed][f"{kind}: KD + transfer"][split] - runs[seed][f"{kind}: no KD (gold only)"][split]
                for seed in seeds
            ]
            for split in ("dev_acc", "test_acc")
        }
        per_seed = ", ".join(f"{d:+.2f} / {t:+.2f}" for d, t in zip(gains["dev_acc"], gains["test_acc"]))
        print(
            f"{kind}: KD + transfer − no KD, dev / test per seed: {per_seed}; "
            f"mean {spread(gains['dev_acc']).strip()} dev, {spread(gains['test_acc']).strip()} test (target ≥ +3)"
        )
    (out / f"sst2_small_students_{'_'.join(args.kinds)}.json").write_text(
        json.dumps({"overrides": args.overrides, "seeds": seeds, "runs": runs}, indent=2, ensure_ascii=False) + "\n"
    )


if __name__ == "__main__":
    main()
