"""Trans-Encoder on STS-B with the reference preset (issue 19, item 2): does each encoder end above its start B₀?

    KDLAB_DATA_DIR=../shared/data python benchmarks/trans_encoder_reference.py \
        [--rows reference_cls,reference_mean,kdlab_default] [--seeds 42] [--cycles 3] \
        [--train-limit N] [--dev-limit N] [--test-limit N] [--out outputs/benchmarks/trans_encoder_reference] [OVERRIDE ...]

Each row is one `kdlab-train` run on the same unlabelled pairs (`data.pair_source: all_splits`: the STS-B train, dev
and test pairs, scores dropped; the limits subsample each split, and dev/test are then scored on those subsamples):

    reference_cls    experiment=trans_encoder_stsb_reference: amzn/trans-encoder's settings, all-MiniLM-L6-v2's
                     weights with CLS pooling (the reference's pooling; a weaker start)
    reference_mean   the same with the model's own mean pooling (all-MiniLM-L6-v2 as shipped; a strong start)
    kdlab_default    method=trans_encoder (kdlab's defaults: clipped labels, both orders, length 64, per-epoch dev
                     checks, 10 % bi warm-up, grouped batches) from all-MiniLM-L6-v2 as shipped

For every run it prints B₀ and, per cycle, the bi- and cross-encoder's dev and test Spearman (×100), the best cycle's,
whether each best encoder ends above B₀ on test, and the wall time; everything goes to <out>/results.json. Runs use
one torch thread (`threads=1`); a finished run folder is reused (`resume=auto`; its wall time is then the reuse's).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from kdlab_run import train

ROWS = {
    "reference_cls": ["experiment=trans_encoder_stsb_reference"],
    "reference_mean": ["experiment=trans_encoder_stsb_reference", "model.bi_encoders.0.pooling=mean"],
    "kdlab_default": [
        "experiment=trans_encoder_stsb_reference",
        "method=trans_encoder",
        "model.bi_encoders.0.pooling=mean",
        "data.group_by_length=true",
    ],
}
SPLITS = ("val", "test")


def run(row: str, seed: int, args: argparse.Namespace) -> dict[str, object]:
    """One run; its B₀, per-cycle and best scores and its wall time."""
    folder = args.out / f"{row}_seed{seed}"
    limits = {"train": args.train_limit, "validation": args.dev_limit, "test": args.test_limit}
    arguments = [
        *ROWS[row],
        f"method.cycles={args.cycles}",
        *(f"++data.{split}.limit={limit}" for split, limit in limits.items() if limit),
        f"seed={seed}",
        "threads=1",
        "trainer.enable_progress_bar=false",
        *args.overrides,
    ]
    metrics, wall = train(folder, arguments, f"{row} seed {seed}")
    pairs = json.loads((folder / "trans_encoder.json").read_text())["pairs"]
    result: dict[str, object] = {"row": row, "seed": seed, "wall_s": round(wall, 1), "pairs": pairs["pairs"]}
    for split in SPLITS:
        result[f"b0_{split}"] = metrics[f"bi_start/{split}/spearman"]
        for kind in ("bi", "cross"):
            result[f"{kind}_best_{split}"] = metrics[f"{kind}/{split}/spearman"]
            result[f"{kind}_cycles_{split}"] = [
                metrics[f"{kind}_cycle{c}/{split}/spearman"] for c in range(1, args.cycles + 1)
            ]
    for kind in ("bi", "cross"):
        result[f"{kind}_best_cycle"] = int(metrics[f"{kind}/best_cycle"])
        result[f"{kind}_above_b0_test"] = bool(metrics[f"{kind}/test/spearman"] > metrics["bi_start/test/spearman"])
    deviations = folder / "reference_deviations.json"
    if deviations.exists():
        result["deviations"] = sorted(json.loads(deviations.read_text())["deviations"])
    return result


def cycles(result: dict, kind: str) -> str:
    """`dev/test` Spearman of each cycle's `kind` encoder."""
    return " ".join(f"{d:.1f}/{t:.1f}" for d, t in zip(result[f"{kind}_cycles_val"], result[f"{kind}_cycles_test"]))


def above(result: dict) -> str:
    """yes/no per encoder type: its best cycle's test Spearman above B₀'s."""
    return "/".join("yes" if result[f"{kind}_above_b0_test"] else "no" for kind in ("bi", "cross"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", default=",".join(ROWS), help=f"comma-separated, of {list(ROWS)}")
    parser.add_argument("--seeds", default="42", help="comma-separated")
    parser.add_argument("--cycles", type=int, default=3)
    parser.add_argument("--train-limit", type=int, default=None, help="STS-B train pairs (all: 5,749)")
    parser.add_argument("--dev-limit", type=int, default=None, help="STS-B dev pairs (all: 1,500)")
    parser.add_argument("--test-limit", type=int, default=None, help="STS-B test pairs (all: 1,379)")
    parser.add_argument("--out", type=Path, default=Path("outputs/benchmarks/trans_encoder_reference"))
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    rows = [name for name in args.rows.split(",") if name]
    unknown = sorted(set(rows) - set(ROWS))
    if unknown:
        raise SystemExit(f"--rows: unknown {unknown}; choose from {list(ROWS)}")
    results = [run(row, seed, args) for row in rows for seed in map(int, args.seeds.split(","))]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    print(
        f"{'row':<15} {'seed':>4} {'pairs':>5} {'B0 dev/test':>12} {'bi per cycle (dev/test)':>28} "
        f"{'cross per cycle (dev/test)':>28} {'best bi':>12} {'best cross':>12} {'>B0 bi/cross':>12} {'wall s':>7}"
    )
    for r in results:
        print(
            f"{r['row']:<15} {r['seed']:>4} {r['pairs']:>5} {r['b0_val']:>5.2f}/{r['b0_test']:<6.2f} "
            f"{cycles(r, 'bi'):>28} {cycles(r, 'cross'):>28} "
            f"{r['bi_best_val']:>5.2f}/{r['bi_best_test']:<6.2f} {r['cross_best_val']:>5.2f}/{r['cross_best_test']:<6.2f} "
            f"{above(r):>12} {r['wall_s']:>7.0f}"
        )
    print(f"results: {args.out / 'results.json'}")


if __name__ == "__main__":
    main()
