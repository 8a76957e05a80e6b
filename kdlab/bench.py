"""`kdlab-bench`: size and speed of exported models, each timed alone in a fresh process (kdlab/deploy).

    kdlab-bench outputs/<run>/teacher/model outputs/<run>/student/model    # the first folder is the reference
    kdlab-bench FOLDER... --texts sentences.txt --threads 2                # your own inputs, one a line

Inputs: `--texts` (one input a line), else the validation split of the run the first folder lies in (its
config.yaml), the same inputs for every folder. Threads and max length: the options, else that run's `threads` and
`data.max_length`. Prints a table with "× first" ratios; `--out FILE` also writes the records as JSON. A folder that
is not an export is one line and exit status 2, before anything is timed.

`python -m kdlab.bench --json FOLDER --inputs FILE.json ...` is the child that measures one folder and prints its
record as one JSON line; kdlab-train runs it for every export of a run (`method.deploy_benchmark`).
"""

from __future__ import annotations

import argparse
import io
import json
import sys
from pathlib import Path
from typing import Any

from kdlab.deploy import BATCHES, CALLS, Inputs, export_problem, measure_apart, metrics_of, ratio_columns

DEFAULT_MAX_LENGTH = 128  # inputs given with --texts outside a run folder


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kdlab-bench", description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+", type=Path, help="exported model folders (<run>/<role>/model)")
    parser.add_argument("--texts", type=Path, help="inputs, one a line (default: the first folder's run validation)")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: the run's `threads`)")
    parser.add_argument("--max-length", type=int, help="truncation in tokens (default: the run's data.max_length)")
    parser.add_argument("--calls", type=int, default=CALLS, help=f"batch-1 calls timed per model (≥ {CALLS})")
    parser.add_argument("--batches", type=int, default=BATCHES, help="batches of 32 timed per model")
    parser.add_argument("--out", type=Path, help="also write the records to this JSON file")
    parser.add_argument("--json", action="store_true", help=argparse.SUPPRESS)  # the child: one folder, one record
    parser.add_argument("--inputs", type=Path, help=argparse.SUPPRESS)  # the child's inputs: JSON [[text, pair], ...]
    return parser


def _fail(message: str) -> None:
    print(f"kdlab: error: {message}", file=sys.stderr)
    raise SystemExit(2)


def _run_settings(folder: Path) -> tuple[Inputs | None, dict[str, Any]]:
    """The validation inputs and the `threads` / `data.max_length` of the run `folder` lies in (None, {} outside one)."""
    from omegaconf import OmegaConf

    from kdlab.deploy import served_inputs
    from kdlab.eval import run_folder_of
    from kdlab.pipelines.common import container

    run = run_folder_of(folder)
    if run is None:
        return None, {}
    saved = OmegaConf.load(run / "config.yaml")
    data = container(saved.data)
    role = folder.resolve().relative_to(run).parts[0]
    settings = {"threads": saved.get("threads"), "max_length": data.get("max_length"), "run": str(run)}
    return served_inputs(data, role), settings


def _child(args: argparse.Namespace) -> None:
    """Measure one folder in this fresh process and print its record as one JSON line."""
    import torch

    from kdlab.deploy.measure import measure

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    inputs = [tuple(item) for item in json.loads(args.inputs.read_text(encoding="utf-8"))]
    record = measure(args.folders[0], inputs, args.max_length or DEFAULT_MAX_LENGTH, args.calls, args.batches)
    print(json.dumps(record))


def _table(records: list[dict[str, Any]], names: list[str]) -> str:
    from rich.console import Console
    from rich.table import Table

    results: dict[str, float] = {}
    for name, record in zip(names, records):
        results.update(metrics_of(name, record))
    ratios = ratio_columns(results, names, reference=names[0], name="first")
    gpu = any(record.get("gpu") for record in records)
    table = Table(title=f"kdlab-bench ({records[0]['threads']} CPU threads; × first = against {names[0]})")
    headers = ["model", "params", "disk MB", "weights MB", "tokenize ms b1", "latency ms b1", "ex/s b32"]
    headers += ["GPU latency ms b1", "GPU ex/s b32"] if gpu else []
    for header in [*headers, *ratios]:
        table.add_column(header, justify="left" if header == "model" else "right")
    for name, record in zip(names, records):
        cells = [name, f"{record['params']:,}", f"{record['disk_mb']:.2f}", f"{record['weights_mb']:.2f}"]
        cells += [
            f"{record['tokenize_ms_b1']:.3f}",
            f"{record['latency_ms_b1']:.3f}",
            f"{record['throughput_b32']:.0f}",
        ]
        if gpu:
            cells += [f"{record.get('gpu_latency_ms_b1', 0):.3f}", f"{record.get('gpu_throughput_b32', 0):.0f}"]
        table.add_row(*cells, *(column[name] for column in ratios.values()))
    console = Console(width=200, file=io.StringIO(), record=True)
    console.print(table)
    return console.export_text()


def labels(folders: list[Path]) -> list[str]:
    """Short names of the folders: `<role>/model` when those differ, else the paths as given."""
    short = ["/".join(folder.resolve().parts[-2:]) for folder in folders]
    return short if len(set(short)) == len(short) else [str(folder) for folder in folders]


def main(argv: list[str] | None = None) -> None:
    """`kdlab-bench`: measure each folder alone, print the table (and write --out)."""
    args = _parser().parse_args(argv)
    for folder in args.folders:
        problem = export_problem(folder)
        if problem:
            _fail(problem)
    if args.calls < CALLS:
        _fail(f"--calls must be at least {CALLS} (the latency is a median over that many calls), got {args.calls}")
    if args.batches < 1:
        _fail(f"--batches must be at least 1, got {args.batches}")
    if args.json:
        if len(args.folders) != 1 or args.inputs is None:
            _fail("--json measures one folder with --inputs FILE")
        return _child(args)
    inputs, settings = _run_settings(args.folders[0])
    if args.texts is not None:
        if not args.texts.is_file():
            _fail(f"--texts: {args.texts} does not exist")
        inputs = [(line, None) for line in args.texts.read_text(encoding="utf-8").splitlines() if line.strip()]
        if not inputs:
            _fail(f"--texts: {args.texts} has no non-empty line")
        settings["inputs"] = f"{len(inputs)} lines of {args.texts}"
    elif inputs is None:
        _fail(f"{args.folders[0]} is not inside a kdlab run folder: give the inputs with --texts FILE (one a line)")
    else:
        settings["inputs"] = f"{len(inputs)} validation inputs of the run {settings['run']}"
    threads = args.threads if args.threads is not None else settings.get("threads")
    max_length = args.max_length or settings.get("max_length") or DEFAULT_MAX_LENGTH
    records = []
    for folder in args.folders:
        try:
            record = measure_apart(folder, inputs, int(max_length), threads, args.calls, args.batches)
        except RuntimeError as err:
            print(f"kdlab: error: {err}", file=sys.stderr)
            raise SystemExit(1) from None
        records.append({**record, "inputs": settings["inputs"]})
    names = labels(args.folders)
    print(_table(records, names).rstrip())
    for name, folder in zip(names, args.folders):
        if name != str(folder):
            print(f"{name}: {folder}")
    print(
        f"inputs: {settings['inputs']}; max length {max_length}; {records[0]['calls_b1']} calls at batch 1, "
        f"{records[0]['batches_b32']} batches of 32, medians; each model in its own process"
    )
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(records, indent=2) + "\n", encoding="utf-8")
        print(f"written: {args.out}")


if __name__ == "__main__":
    main()
