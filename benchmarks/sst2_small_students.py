"""Small students on SST-2 (Tang et al. 2019 at CPU scale): `experiment=hinton_sst2_small_students` for a BiLSTM and a
TextCNN, without KD, with KD on the labelled rows only, and with KD plus the transfer set.

    KDLAB_DATA_DIR=../shared/data python benchmarks/sst2_small_students.py [--out DIR] [--kinds bilstm textcnn] [OVERRIDE ...]

Per student kind two runs, each in its own run folder under --out:
  (a) `experiment=hinton_sst2_small_students method.baseline=true`: the KD student on the labelled rows + the transfer
      set, and the same student trained on the labelled rows alone (no KD);
  (b) the same with `data.transfer=null`: KD on the labelled rows only, with the teacher run (a) of the first kind
      fine-tuned (`model.teacher.trained=<that run>/teacher/model`; the teacher store's key includes data.transfer,
      so (b) would otherwise fine-tune it again).
The first (a) fine-tunes the teacher (or reuses it from the teacher store); the teacher-output cache labels each
input once for all runs. Prints one table: the teacher, then per student no KD, KD (gold only), KD + transfer: dev and
test accuracy, the share of the teacher's test accuracy kept, parameters, CPU throughput at batch 32 and its ratio to
the teacher's timed in the same run (deploy figures in metrics.json), and each run's wall time; writes it with every figure
to DIR/sst2_small_students_<kinds>.json. Extra OVERRIDEs go to every run (e.g. smaller limits for a smoke run).
`--teacher FOLDER` gives every run an already fine-tuned teacher (e.g. the teacher store's folder of an earlier run),
so that `--kinds bilstm` and `--kinds textcnn --teacher ...` can run side by side once the teacher exists.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import kdlab_run

EXPERIMENT = "experiment=hinton_sst2_small_students"
# the experiment's student is the BiLSTM; the TextCNN replaces kind and config
KINDS = {
    "bilstm": [],
    "textcnn": [
        "model.student.kind=textcnn",
        "~model.student.config",
        "+model.student.config={embedding_dim: 128, filter_widths: [3, 4, 5], num_filters: 128, dropout: 0.1}",
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("outputs/benchmarks/sst2_small_students"))
    parser.add_argument("--kinds", nargs="+", choices=list(KINDS), default=list(KINDS))
    parser.add_argument(
        "--teacher",
        help="an already fine-tuned teacher folder for every run (model.teacher.trained), e.g. a stored one",
    )
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    rows: dict[str, dict[str, float]] = {}
    teacher_model = args.teacher
    # (b) has no transfer set: an override of one would name a missing key
    without_transfer = [o for o in args.overrides if not o.lstrip("+~").startswith("data.transfer")]
    for kind in args.kinds:
        given = [f"model.teacher.trained={teacher_model}"] if args.teacher else []
        metrics, wall = train(out / f"{kind}_transfer", [*KINDS[kind], "method.baseline=true", *given, *args.overrides])
        rows.setdefault("teacher", figures(metrics, "teacher", wall))
        if teacher_model is None:
            # the folder the deploy benchmark timed: this run's export, or the teacher store's folder when reused
            teacher_model = json.loads((out / f"{kind}_transfer" / "teacher" / "deploy.json").read_text())["folder"]
        rows[f"{kind}: no KD (gold only)"] = figures(metrics, "baseline", wall)
        transfer = figures(metrics, "student", wall)
        metrics, wall = train(
            out / f"{kind}_gold",
            [*KINDS[kind], "data.transfer=null", f"model.teacher.trained={teacher_model}", *without_transfer],
        )
        rows[f"{kind}: KD (gold only)"] = figures(metrics, "student", wall)
        rows[f"{kind}: KD + transfer"] = transfer
    teacher = rows["teacher"]
    print(
        f"\n{'model':<28} {'dev acc':>8} {'test acc':>8} {'kept':>7} {'params':>11} {'ex/s b32':>9} "
        f"{'× teacher':>9} {'run wall s':>10}"
    )
    for name, row in rows.items():
        row["kept"] = 100 * row["test_acc"] / teacher["test_acc"]
        row["speedup_b32"] = row["throughput_b32"] / row["teacher_throughput_b32"]
        print(
            f"{name:<28} {row['dev_acc']:8.2f} {row['test_acc']:8.2f} {row['kept']:6.1f}% {row['params']:11,.0f} "
            f"{row['throughput_b32']:9,.0f} {row['speedup_b32']:8.1f}× {row['wall_s']:10.0f}"
        )
    for kind in args.kinds:
        gain = {
            split: rows[f"{kind}: KD + transfer"][split] - rows[f"{kind}: no KD (gold only)"][split]
            for split in ("dev_acc", "test_acc")
        }
        print(f"{kind}: KD + transfer − no KD: {gain['dev_acc']:+.2f} dev, {gain['test_acc']:+.2f} test (target ≥ +3)")
    (out / f"sst2_small_students_{'_'.join(args.kinds)}.json").write_text(
        json.dumps({"overrides": args.overrides, "rows": rows}, indent=2, ensure_ascii=False) + "\n"
    )


if __name__ == "__main__":
    main()
