"""The teacher-output cache at scale (issue 20): per-row reuse over a sweep and a growing transfer set, and the bytes
a row takes in each storage.

Through the pipeline's own function (kdlab.pipelines.teachers.teacher_logits) on the embedded default, with one fixed
teacher (the default tiny teacher, random init, seed 0, frozen: the cache does not care whether it was trained) and
one tokenizer (trained on the 4,000 training reviews, as a given teacher brings its own):

1. a sweep over data.train.limit=1000,2000,4000 into one cache: rows computed and read per job;
2. experiment=hinton_transfer's transfer set at 10,000 rows, then grown by 10 % to 11,000: rows computed and read;
3. bytes per stored row (shard files / rows) for float32, float16, bfloat16 and top-k, for the reviews head
   (2 logits) and a vocabulary-sized head (30,522 logits, random values: sizes only);
4. with --students: `experiment=hinton_transfer` at a smaller size (STUDENT_RUN: 1,000 labelled rows, 3,000 transfer
   rows) once per storage and seed in one cache (one teacher, trained by the first run and given to the others): the
   student's test accuracy and the bytes per row of the entry it read.

    .venv/bin/python benchmarks/teacher_cache.py [--students] [--out outputs/benchmarks/teacher_cache.json]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


def sweep_and_growth(cache_dir: Path) -> tuple[dict, Any]:
    import torch

    from kdlab import api
    from kdlab.data.text import TextDataModule
    from kdlab.models.backbone import build_model, freeze
    from kdlab.models.tokenization import train_wordpiece
    from kdlab.pipelines.supervised import collect_transfer
    from kdlab.pipelines.teachers import teacher_logits

    os.environ["KDLAB_CACHE_DIR"] = str(cache_dir)
    base = api.compose()
    full = TextDataModule(base.data)
    tokenizer = train_wordpiece(full.texts("train"), int(base.model.teacher.vocab_size), cache_dir)
    torch.manual_seed(0)
    teacher = freeze(build_model(base.model.teacher, full.task, full.labels, tokenizer, key="model.teacher"))
    rows = []

    def job(name: str, *overrides: str, transfer: bool = False) -> None:
        cfg = api.compose(*overrides)
        datamodule = TextDataModule(cfg.data, tokenizer=tokenizer)
        if transfer:
            datamodule.use_transfer(collect_transfer(cfg, datamodule))
        start = time.perf_counter()
        _, info = teacher_logits(cfg, teacher, tokenizer, datamodule.train_inputs())
        seconds = time.perf_counter() - start
        rows.append({"job": name, **{k: info[k] for k in ("rows", "computed", "read")}, "seconds": round(seconds, 2)})
        print(
            f"{name:<44} rows {info['rows']:>6}  computed {info['computed']:>6}  read {info['read']:>6}  {seconds:6.1f} s"
        )

    for limit in (1000, 2000, 4000):
        job(f"data.train.limit={limit}", f"data.train.limit={limit}")
    for limit in (10000, 11000):
        job(
            f"hinton_transfer, transfer limit {limit}",
            "experiment=hinton_transfer",
            f"+data.transfer.sources.0.limit={limit}",
            transfer=True,
        )
    return {"jobs": rows, "sweep_computed": sum(r["computed"] for r in rows[:3])}, tokenizer


def bytes_per_row(folder: Path, tokenizer: Any) -> dict:
    import torch

    from kdlab.cache.storage import Storage
    from kdlab.cache.teacher_outputs import TeacherOutputCache, describe

    torch.manual_seed(0)
    out = {}
    for width, count in ((2, 4000), (30522, 200)):
        logits = torch.randn(count, width) * 3
        head = torch.nn.Linear(1, width)  # stands for a teacher with this many outputs (only its fingerprint is read)
        inputs = [(f"sentence {i}", None) for i in range(count)]
        storages = [Storage(d, None) for d in ("float32", "float16", "bfloat16")]
        storages += [Storage("float16", 1)] if width == 2 else [Storage("float32", 32), Storage("float16", 32)]
        for storage in storages:
            cache = TeacherOutputCache(folder / f"{width}-{storage.dtype}-{storage.top_k}")
            description = describe(
                identity="bench", teacher=head, tokenizer=tokenizer, max_length=8, kind="logits", storage=storage
            )
            _, info = cache.get_or_compute(description, inputs, lambda items, x=logits: x)
            size = sum(p.stat().st_size for p in Path(info["path"]).glob("*.safetensors"))
            label = f"width {width}, {storage.dtype}" + (f", top_k {storage.top_k}" if storage.top_k else "")
            out[label] = round(size / count, 1)
            print(f"{label:<36} {size / count:10.1f} bytes per row (16 of them the content id)")
    return out


STUDENT_RUN = [
    "experiment=hinton_transfer",
    "data.train.limit=1000",
    "+data.transfer.sources.0.limit=3000",
    "method.baseline=false",
    "method.deploy_benchmark=false",
    "trainer.enable_progress_bar=false",
]
STORAGES = {
    "float32": [],
    "float16": ["cache.dtype=float16"],
    "bfloat16": ["cache.dtype=bfloat16"],
    "float16, top_k 1": ["cache.dtype=float16", "cache.top_k=1"],
}


def students(folder: Path, seeds: list[int]) -> dict:
    """For each seed and storage of the teacher's logits: the student's test accuracy and the entry's bytes per row.
    The first run trains the teacher; every later run is given that teacher (model.teacher.trained), so only the
    storage and the seed (the student's initialisation and data order) differ."""
    import subprocess
    import sys

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "KDLAB_CACHE_DIR": str(folder / "cache")}
    out: dict = {}
    teacher: list[str] = []
    for seed in seeds:
        for label, overrides in STORAGES.items():
            run_dir = folder / f"seed{seed}-{label.replace(', ', '_').replace(' ', '')}"
            command = [sys.executable, "-m", "kdlab.train", *STUDENT_RUN, *overrides, *teacher, f"seed={seed}"]
            start = time.perf_counter()
            done = subprocess.run(
                [*command, f"hydra.run.dir={run_dir}"], capture_output=True, text=True, env=env, cwd=REPO
            )
            if done.returncode != 0:
                raise SystemExit(f"{label} failed:\n{done.stderr[-3000:]}")
            metrics = json.loads((run_dir / "metrics.json").read_text())
            record = json.loads((run_dir / "teacher" / "teacher.json").read_text())
            outputs = record["outputs"]
            if not teacher:
                stored = record["origin"].removeprefix("trained in this run, stored as ")
                teacher = [f"model.teacher.trained={stored}/model", "model.teacher.tokenizer=null"]
            size = sum(p.stat().st_size for p in Path(outputs["path"]).glob("*.safetensors"))
            out.setdefault(label, {})[seed] = {
                "teacher_test_acc": round(metrics["teacher/test/acc"], 2),
                "student_test_acc": round(metrics["student/test/acc"], 2),
                "rows": outputs["rows"],
                "bytes_per_row": round(size / outputs["rows"], 1),
                "wall_s": round(time.perf_counter() - start, 1),
            }
            print(
                f"seed {seed:<3} {label:<18} student test acc {metrics['student/test/acc']:.2f}  "
                f"{size / outputs['rows']:.1f} bytes/row"
            )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="outputs/benchmarks/teacher_cache.json")
    parser.add_argument("--students", action="store_true", help="also train the student once per storage (~minutes)")
    parser.add_argument("--seeds", default="42,1", help="--students: the seeds (one teacher for all)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        reuse, tokenizer = sweep_and_growth(Path(tmp) / "cache")
        figures = {"reuse": reuse, "bytes_per_row": bytes_per_row(Path(tmp) / "b", tokenizer)}
        if args.students:
            figures["students"] = students(Path(tmp) / "students", [int(x) for x in args.seeds.split(",")])
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(figures, indent=1) + "\n")
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
