"""Size and CPU speed of the tiny teacher against the BiLSTM and TextCNN students, on the embedded reviews data.

    python benchmarks/students.py [RUN ...] [--repeats 7] [--calls 100] [--out outputs/benchmarks/students.json]

Each RUN is a finished `hinton` run folder of `model=bilstm` or `model=textcnn` (its teacher/model and
student/model exports are timed). Without RUN, the script first trains both with kdlab's defaults
(`kdlab.api.train model=bilstm`, then `model=textcnn`, same seed; the second run reuses the stored teacher;
about 4 minutes each on 2 cores).

For every model, in this one process (the teacher of the first run stands for both: same config, same seed):
parameters; size of the export folder on disk (weights, config, tokenizer); CPU latency at batch 1 over
`--calls` test texts — tokenisation and the forward pass timed apart, median per call, after 10 warm-up calls;
throughput at batch 64 — forward passes over pre-tokenised padded batches of the test texts, median of
`--repeats` passes over all of them. Ratios are "× teacher" (speed-up for latency, teacher/student for size).
Timings interleave the models repeat by repeat so drifts of a shared machine hit all of them alike.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import torch

from kdlab.data.embedded import reviews
from kdlab.models.files import load_trained


def folder_size(folder: Path) -> int:
    """Bytes of every file in an export folder."""
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())


def latency(model: torch.nn.Module, tokenizer, texts: list[str]) -> tuple[list[float], list[float]]:
    """Per-call seconds of tokenising one text and of one forward pass on it (batch 1)."""
    tokenise, forward = [], []
    for text in texts:
        start = time.perf_counter()
        batch = tokenizer([text], truncation=True, max_length=64, return_tensors="pt")
        middle = time.perf_counter()
        model(**batch)
        end = time.perf_counter()
        tokenise.append(middle - start)
        forward.append(end - middle)
    return tokenise, forward


def throughput(model: torch.nn.Module, batches: list[dict[str, torch.Tensor]]) -> float:
    """Examples per second of forward passes over pre-tokenised batches."""
    start = time.perf_counter()
    for batch in batches:
        model(**batch)
    return sum(len(batch["input_ids"]) for batch in batches) / (time.perf_counter() - start)


def train_students() -> list[Path]:
    """A default hinton run per student (the teacher is trained by the first and reused by the second)."""
    from kdlab.api import train

    return [train(f"model={kind}", "trainer.enable_progress_bar=false").path for kind in ("bilstm", "textcnn")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="*", type=Path)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--calls", type=int, default=100)
    parser.add_argument("--out", default="outputs/benchmarks/students.json")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    runs = args.runs or train_students()

    folders = {"teacher": runs[0] / "teacher" / "model"}
    metrics = {"teacher": json.loads((runs[0] / "metrics.json").read_text())}
    for run in runs:
        kind = json.loads((run / "student" / "model" / "config.json").read_text())["kdlab_kind"]
        folders[kind] = run / "student" / "model"
        metrics[kind] = json.loads((run / "metrics.json").read_text())
    models = {name: load_trained(folder, key=name) for name, folder in folders.items()}
    texts = [row["text"] for row in reviews("test", size=1000)]
    results: dict[str, dict[str, float]] = {}
    for name, (model, _) in models.items():
        model.eval()
        role = "teacher" if name == "teacher" else "student"
        results[name] = {
            "parameters": sum(p.numel() for p in model.parameters()),
            "export_bytes": folder_size(folders[name]),
            "test_acc": metrics[name][f"{role}/test/acc"],
        }

    samples: dict[str, dict[str, list[float]]] = {
        name: {"tokenise": [], "forward": [], "throughput": []} for name in models
    }
    batches = {
        name: [
            tokenizer(texts[i : i + 64], truncation=True, max_length=64, padding=True, return_tensors="pt")
            for i in range(0, len(texts), 64)
        ]
        for name, (_, tokenizer) in models.items()
    }
    with torch.inference_mode():
        for name, (model, tokenizer) in models.items():  # warm-up
            latency(model, tokenizer, texts[:10])
            throughput(model, batches[name][:2])
        for _ in range(args.repeats):
            for name, (model, tokenizer) in models.items():
                tokenise, forward = latency(model, tokenizer, texts[: args.calls])
                samples[name]["tokenise"] += tokenise
                samples[name]["forward"] += forward
                samples[name]["throughput"].append(throughput(model, batches[name]))
    for name, sample in samples.items():
        results[name].update(
            {
                "tokenise_ms": 1000 * statistics.median(sample["tokenise"]),
                "latency_ms": 1000 * statistics.median(sample["forward"]),
                "throughput_64": statistics.median(sample["throughput"]),
            }
        )
    teacher = results["teacher"]
    for row in results.values():
        row.update(
            {
                "parameters_x": teacher["parameters"] / row["parameters"],
                "export_x": teacher["export_bytes"] / row["export_bytes"],
                "latency_x": teacher["latency_ms"] / row["latency_ms"],
                "throughput_x": row["throughput_64"] / teacher["throughput_64"],
            }
        )

    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads; {args.repeats} repeats × {args.calls} calls at batch 1, "
        f"{len(texts)} texts at batch 64; runs: {', '.join(str(run) for run in runs)}"
    )
    print(
        f"{'model':<8} {'test acc':>8} {'params':>10} {'× T':>6} {'export MB':>9} {'× T':>6} {'tokenise ms':>11} "
        f"{'latency ms':>10} {'× T':>6} {'ex/s @64':>9} {'× T':>6}"
    )
    for name, row in results.items():
        print(
            f"{name:<8} {row['test_acc']:>8.1f} {row['parameters']:>10,} {row['parameters_x']:>6.1f} "
            f"{row['export_bytes'] / 1e6:>9.2f} {row['export_x']:>6.1f} {row['tokenise_ms']:>11.3f} {row['latency_ms']:>10.3f} "
            f"{row['latency_x']:>6.1f} {row['throughput_64']:>9.0f} {row['throughput_x']:>6.1f}"
        )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {"runs": [str(run) for run in runs], "threads": torch.get_num_threads(), "results": results}, indent=2
        )
        + "\n"
    )
    print(f"written: {out}")


if __name__ == "__main__":
    main()
