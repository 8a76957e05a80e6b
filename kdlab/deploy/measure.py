"""Timing one exported model in the current process (the child `python -m kdlab.bench --json` runs).

Each call is timed on its own with `time.perf_counter` (the GPU synchronised before each reading) and the median is
reported. torch.utils.benchmark.Timer was the first choice but does not fit: its figures are means of blocks of
calls of one fixed statement (`timeit`, `blocked_autorange`), and each `timeit` call warms up again, so a median
over single calls on different real sentences would cost three calls per sample.
"""

from __future__ import annotations

import gc
import platform
import statistics
import time
import warnings
from collections.abc import Callable, Sequence
from itertools import cycle, islice
from pathlib import Path
from typing import Any

import torch
from torch import nn

from kdlab.data.collate import PadCollator, model_inputs, tokenize
from kdlab.deploy import BATCH_SIZE, WARMUP, folder_bytes

Batch = dict[str, torch.Tensor]


def load_export(folder: Path) -> tuple[nn.Module, Any, Callable[[Batch], Any]]:
    """An export folder's model, its tokenizer, and the call that serves one batch: a classifier (any model kind),
    a multi-task export (heads.json; its first head) or a sentence encoder (modules.json)."""
    if (folder / "heads.json").is_file():
        from kdlab.models.multitask import load_multitask

        model, tokenizer = load_multitask(folder)
        return model, tokenizer, lambda batch: model(batch, 0)
    if (folder / "modules.json").is_file():
        from kdlab.models.sentence_encoder import load_sentence_encoder

        model, tokenizer = load_sentence_encoder({"name_or_path": str(folder)}, "folder")
    else:
        from kdlab.models.files import load_trained

        model, tokenizer = load_trained(folder, key="folder")
    return model, tokenizer, lambda batch: model(**batch)


def foreign_parameters(model: nn.Module) -> list[nn.Parameter]:
    """Parameter tensors alive in this process (reachable by the garbage collector) that are not `model`'s."""
    own = {id(p) for p in model.parameters()}
    gc.collect()
    with warnings.catch_warnings():  # isinstance on every object touches deprecated torch globals (reduce_op)
        warnings.simplefilter("ignore", FutureWarning)
        return [o for o in gc.get_objects() if isinstance(o, nn.Parameter) and id(o) not in own]


def assert_only_model(model: nn.Module, what: str) -> int:
    """RuntimeError when any other model's parameters are alive next to `model` (a timing must not share the
    process with the teacher or another student); else the number of parameter values alive (the model's)."""
    others = foreign_parameters(model)
    if others:
        values = sum(p.numel() for p in others)
        raise RuntimeError(
            f"{what}: {len(others)} parameter tensors ({values:,} values) of another model are alive in the "
            "benchmark process; each model is timed alone"
        )
    return sum(p.numel() for p in model.parameters())


def _clock(device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


def _median_seconds(call: Callable[[Any], Any], items: Sequence[Any], device: torch.device) -> float:
    """Median seconds of `call(item)` over `items`, after WARMUP untimed calls."""
    for item in items[:WARMUP]:
        call(item)
    seconds = []
    for item in items:
        start = _clock(device)
        call(item)
        seconds.append(_clock(device) - start)
    return statistics.median(seconds)


def _speed(
    serve: Callable[[Batch], Any], singles: list[Batch], batches: list[Batch], device: torch.device
) -> tuple[float, float]:
    """(median ms of a batch-1 forward pass, examples/s at the batch size) on `device`, inputs moved there in the call."""

    def forward(batch: Batch) -> Any:
        return serve({k: v.to(device) for k, v in batch.items()})

    with torch.inference_mode():
        latency = _median_seconds(forward, singles, device)
        per_batch = _median_seconds(forward, batches, device)
    return 1000 * latency, BATCH_SIZE / per_batch


def measure(
    folder: Path, inputs: Sequence[tuple[str, str | None]], max_length: int, calls: int, batches: int
) -> dict[str, Any]:
    """Parameters, export size, batch-1 tokenisation and forward latency, batch-32 throughput (CPU; GPU too when
    there is one) of the export in `folder`, alone in this process, over `inputs` (cycled to `calls` singles and
    `batches` batches)."""
    model, tokenizer, serve = load_export(folder)
    model.eval()
    alive = assert_only_model(model, str(folder))
    weights, disk = folder_bytes(folder)
    singles_in = list(islice(cycle(inputs), calls))
    timed: list[Batch] = []

    def tokenise(item: tuple[str, str | None]) -> None:
        text, pair = item
        pairs = [pair] if pair is not None else None
        encoded = tokenizer([text], pairs, truncation=True, max_length=max_length, return_tensors="pt")
        timed.append(model_inputs(dict(encoded)))

    tokenise_s = _median_seconds(tokenise, singles_in, torch.device("cpu"))
    singles = timed[-calls:]
    rows = list(islice(cycle(inputs), batches * BATCH_SIZE))
    pairs = [pair for _, pair in rows] if rows[0][1] is not None else None
    features = tokenize(tokenizer, [text for text, _ in rows], pairs, max_length)
    collate = PadCollator(tokenizer.pad_token_id)
    grouped = [model_inputs(collate(features[i : i + BATCH_SIZE])) for i in range(0, len(features), BATCH_SIZE)]
    record: dict[str, Any] = {
        "folder": str(folder),
        "model": type(model).__name__,
        "params": sum(p.numel() for p in model.parameters()),
        "params_alive_in_process": alive,  # every parameter value in the timing process: this model's alone
        "weights_bytes": weights,
        "disk_bytes": disk,
        "weights_mb": weights / 1e6,
        "disk_mb": disk / 1e6,
        "tokenize_ms_b1": 1000 * tokenise_s,
    }
    record["latency_ms_b1"], record["throughput_b32"] = _speed(serve, singles, grouped, torch.device("cpu"))
    record["gpu"] = None
    if torch.cuda.is_available():
        device = torch.device("cuda")
        model.to(device)
        record["gpu"] = torch.cuda.get_device_name(device)
        record["gpu_latency_ms_b1"], record["gpu_throughput_b32"] = _speed(serve, singles, grouped, device)
    record.update(
        {
            "threads": torch.get_num_threads(),
            "calls_b1": calls,
            "batches_b32": batches,
            "batch_size": BATCH_SIZE,
            "warmup_calls": WARMUP,
            "max_length": max_length,
            "timing": "median of single calls, time.perf_counter (GPU synchronised); throughput = batch size / median batch",
            "cpu": platform.processor() or platform.machine(),
            "torch": torch.__version__,
        }
    )
    return record
