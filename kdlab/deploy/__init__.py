"""What serving a trained model costs: its size and speed, each export timed alone in a fresh process.

After the stages of a run (`method.deploy_benchmark: true`: finetune, hinton, bam, multilingual), every exported
model of the run folder (`<run>/<role>/model/`; a reused or given teacher: its own folder) is measured by
`python -m kdlab.bench --json <folder>` in a process of its own, which asserts that no other model's parameters
are alive in it (kdlab/deploy/measure.py). The figures go to metrics.json as

    <role>/deploy/params            parameters (numel of the model's parameters)
    <role>/deploy/weights_mb        bytes of the weight files (*.safetensors, *.bin) / 1e6
    <role>/deploy/disk_mb           bytes of the whole export folder (weights, config, tokenizer) / 1e6
    <role>/deploy/tokenize_ms_b1    CPU: median ms to tokenise one input (batch 1)
    <role>/deploy/latency_ms_b1     CPU: median ms of one forward pass at batch 1, tokenisation apart
    <role>/deploy/throughput_b32    CPU: examples/s of forward passes over pre-tokenised batches of 32 (median batch)
    <role>/deploy/gpu_latency_ms_b1, <role>/deploy/gpu_throughput_b32   the same on the GPU, when there is one

and the full record (bytes, threads, device, calls, where the inputs came from) to `<run>/<role>/deploy.json`.
The inputs are the run's validation texts (pairs for a pair task), tokenised as the model is served: one input
unpadded at batch 1, dynamic padding to the longest of each batch of 32, truncated to `data.max_length`.

This module is torch-free (the config check runs before any heavy import); the timing is in `measure.py`.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from kdlab.errors import ConfigError

log = logging.getLogger(__name__)

KEY = "method.deploy_benchmark"
CALLS = 50  # batch-1 calls timed per model (the median of these), after WARMUP calls
BATCHES = 10  # batches of BATCH_SIZE timed per model
BATCH_SIZE = 32
WARMUP = 5
FIGURES = ("params", "weights_mb", "disk_mb", "tokenize_ms_b1", "latency_ms_b1", "throughput_b32")
GPU_FIGURES = ("gpu_latency_ms_b1", "gpu_throughput_b32")
WEIGHT_SUFFIXES = (".safetensors", ".bin")
Inputs = list[tuple[str, str | None]]
CAPTION = "× teacher: speed-up at batch 1 (CPU latency), examples/s at batch 32, export size; each model timed alone"


def check_setting(cfg: Mapping[str, Any]) -> bool:
    """`method.deploy_benchmark` as a boolean (absent: the method measures nothing); ConfigError otherwise."""
    value = (cfg.get("method") or {}).get("deploy_benchmark", False)
    if not isinstance(value, bool):
        raise ConfigError(KEY, f"must be true or false, got {value!r}")
    return value


def export_problem(folder: Path) -> str | None:
    """Why `folder` is not an exported model folder (None when it is one)."""
    if not folder.is_dir():
        return f"{folder} is not a folder (expected an exported model: config.json and weights)"
    if not (folder / "config.json").is_file():
        return f"{folder} has no config.json: not an exported model folder"
    if not weight_files(folder):
        return f"{folder} has no weight files ({', '.join('*' + s for s in WEIGHT_SUFFIXES)}): not an exported model"
    return None


def weight_files(folder: Path) -> list[Path]:
    """The weight files of an export folder (its sub-folders too: a sentence-transformers Dense layer)."""
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix in WEIGHT_SUFFIXES)


def folder_bytes(folder: Path) -> tuple[int, int]:
    """(bytes of the weight files, bytes of every file) of an export folder."""
    return sum(p.stat().st_size for p in weight_files(folder)), sum(
        p.stat().st_size for p in folder.rglob("*") if p.is_file()
    )


def run_exports(run_dir: Path) -> dict[str, Path]:
    """Each role's export in a run folder: `<run>/<role>/model/`, and a reused/given teacher's own folder
    (its `teacher.json` origin, or a multilingual teacher's `model` when that is a folder)."""
    found = {
        child.name: child / "model"
        for child in sorted(run_dir.iterdir())
        if child.is_dir() and export_problem(child / "model") is None
    }
    record = run_dir / "teacher" / "teacher.json"
    if "teacher" not in found and record.is_file():
        described = json.loads(record.read_text(encoding="utf-8"))
        origin = str(described.get("origin") or "")
        place = origin.split(": ", 1)[1] if origin.startswith(("reused: ", "given: ")) else described.get("model")
        if place:
            folder = Path(str(place))
            folder = folder / "model" if (folder / "model").is_dir() else folder
            if export_problem(folder) is None:
                found = {"teacher": folder, **found}
    return found


def served_inputs(data: Mapping[str, Any], role: str = "") -> Inputs:
    """The validation inputs of a run's data config, as (text, pair) — a BAM teacher's own task; parallel data: the
    source sentences."""
    if data.get("tasks") is not None:
        from kdlab.data.task_list import task_configs

        tasks = task_configs(data)
        return served_inputs(next((t for t in tasks if role == f"teacher_{t['name']}"), tasks[0]))
    if data.get("sources") is not None:
        from kdlab.data.parallel import ParallelDataModule

        return [(pair["source"], None) for pair in ParallelDataModule(data).pairs("validation")]
    from kdlab.data.records import split_records

    return [(row["text"], row.get("text_pair")) for row in split_records(data, "validation")]


def measure_apart(
    folder: Path, inputs: Inputs, max_length: int, threads: int | None, calls: int = CALLS, batches: int = BATCHES
) -> dict[str, Any]:
    """The figures of one export, measured by `python -m kdlab.bench --json` in a fresh process (no other model in
    it); its record as a dict. RuntimeError with the child's last line when it fails."""
    with tempfile.TemporaryDirectory() as tmp:
        given = Path(tmp, "inputs.json")
        given.write_text(json.dumps(inputs), encoding="utf-8")
        command = [sys.executable, "-m", "kdlab.bench", "--json", str(folder), "--inputs", str(given)]
        command += ["--max-length", str(max_length), "--calls", str(calls), "--batches", str(batches)]
        command += ["--threads", str(threads)] if threads is not None else []
        done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    if done.returncode != 0 or not lines:
        last = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise RuntimeError(f"measuring {folder} failed: {last}")
    return json.loads(lines[-1])


def metrics_of(role: str, record: Mapping[str, Any]) -> dict[str, float]:
    """A measurement record as `<role>/deploy/<figure>` metrics."""
    return {
        f"{role}/deploy/{name}": float(record[name])
        for name in (*FIGURES, *GPU_FIGURES)
        if record.get(name) is not None
    }


def benchmark_run(cfg: Any, run_dir: Path) -> dict[str, float]:
    """Every export of a finished run measured apart (when `method.deploy_benchmark` is true): metrics, and each
    role's record in `<run>/<role>/deploy.json`."""
    if not check_setting(cfg):
        return {}
    from omegaconf import OmegaConf

    from kdlab.utils.run_folder import write_json

    data = OmegaConf.to_container(cfg.data, resolve=True)
    threads = cfg.get("threads")
    metrics: dict[str, float] = {}
    for role, folder in run_exports(run_dir).items():
        inputs = served_inputs(data, role)
        log.info("deploy: timing %s (%s) alone in a fresh process, %d threads", role, folder, threads or 0)
        record = measure_apart(folder, inputs, int(data["max_length"]), threads)
        record["inputs"] = f"{len(inputs)} validation inputs of data {data.get('name', '?')}"
        write_json(run_dir / role / "deploy.json", record)
        metrics.update(metrics_of(role, record))
    return metrics


def ratio_columns(
    results: Mapping[str, float], roles: Sequence[str], reference: str | None = None, name: str = "teacher"
) -> dict[str, dict[str, str]]:
    """Table cells "N.N×" per role against `reference` (default: the first teacher role measured), headed
    "... × <name>": speed-up at batch 1 (reference latency / latency), throughput at batch 32 (throughput /
    reference's), export size on disk (disk / reference's); CAPTION says so. Empty when the reference was not
    measured."""
    measured = [role for role in roles if f"{role}/deploy/latency_ms_b1" in results]
    if reference is None:
        reference = next((role for role in measured if role.startswith("teacher")), None)
    if reference not in measured:
        return {}

    def cell(role: str, figure: str, inverse: bool) -> str:
        mine, theirs = results.get(f"{role}/deploy/{figure}"), results[f"{reference}/deploy/{figure}"]
        if not mine or not theirs:
            return "-"
        value = theirs / mine if inverse else mine / theirs
        return f"{value:.{1 if value >= 1 else 2}f}×"

    columns = {
        f"speed-up × {name}": ("latency_ms_b1", True),
        f"ex/s × {name}": ("throughput_b32", False),
        f"size × {name}": ("disk_mb", False),
    }
    return {header: {role: cell(role, *how) for role in measured} for header, how in columns.items()}
