"""Same input, same output (issue 9): two runs of each method's tiny setting with the same seed, in two fresh
processes, give identical metrics and bitwise-identical exported weights and cached teacher outputs.

The processes differ in everything that should not matter: their Python hash seed (set and dict orders), their
own cache and output folders (nothing is reused: every teacher trains again), and the order in which they run the
four methods (a run must not depend on what ran before it in the process, as in a sweep or a notebook). Runs go
through `kdlab.api.train`, the pipeline `kdlab-train` runs, so that each process pays the torch import once.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import REPO
from safetensors.torch import load_file
from settings import bam, multilingual, trans_encoder

TINY = ["trainer.enable_progress_bar=false", "trainer.limit_val_batches=2", "trainer.limit_test_batches=2"]
CASES = {  # each method's tiny setting, as its own tests use it (a few batches, a few epochs)
    "hinton": [
        *TINY,
        "method.deploy_benchmark=false",  # no export timing in tests (tests/test_deploy.py times them)
        "method.baseline=true",
        "data.train.size=200",
        "data.validation.size=50",
        "data.test.size=50",
        "trainer.limit_train_batches=4",
        "model.teacher.config.num_hidden_layers=2",
    ],
    "multilingual": [
        *TINY,
        "method.deploy_benchmark=false",  # no export timing in tests (tests/test_deploy.py times them)
        *multilingual(pairs=120, dev=40),
        "model.teacher.config.hidden_size=32",
        "model.teacher.config.intermediate_size=64",
        "model.teacher.config.num_attention_heads=2",
        "method.student.epochs=2",
        "data.batch_size=16",
    ],
    "trans_encoder": [*TINY, *trans_encoder(train=96, held_out=40)],
    "bam": [*TINY, *bam(train=(96, 64), held_out=(32, 32))],
}
OTHER_SEED = ("hinton_seed7", [*CASES["hinton"], "seed=7"])  # shows that the comparison can tell two runs apart

RUN_ALL = """
import json, sys
from kdlab import api
for name, overrides, folder in json.loads(sys.argv[1]):
    api.train(*overrides, output_dir=folder)
"""


def run_all(root: Path, jobs: list[tuple[str, list[str]]], hash_seed: str) -> None:
    """Run `jobs` one after another in one fresh process, with its own cache and output folders under `root`."""
    env = {
        **os.environ,
        "KDLAB_OUTPUT_DIR": str(root / "outputs"),
        "KDLAB_CACHE_DIR": str(root / "cache"),
        "HF_HUB_OFFLINE": "1",
        "WANDB_MODE": "disabled",
        "PYTHONHASHSEED": hash_seed,
    }
    plan = [(name, overrides, str(root / name)) for name, overrides in jobs]
    result = subprocess.run(
        [sys.executable, "-c", RUN_ALL, json.dumps(plan)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]


def files(folder: Path, suffix: str) -> dict[str, Path]:
    return {str(p.relative_to(folder)): p for p in sorted(folder.rglob(f"*{suffix}"))}


def differing_tensors(a: Path, b: Path) -> list[str]:
    """Names of the tensors of two safetensors files that are not bitwise equal (missing ones included)."""
    first, second = load_file(str(a)), load_file(str(b))
    names = sorted(set(first) | set(second))
    return [n for n in names if n not in first or n not in second or not torch.equal(first[n], second[n])]


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory) -> tuple[Path, Path]:
    """The same runs in two processes (hash seeds 1 and 2, methods in opposite orders); the second also runs
    hinton with another seed."""
    a, b = tmp_path_factory.mktemp("a"), tmp_path_factory.mktemp("b")
    jobs = list(CASES.items())
    run_all(a, jobs, "1")
    run_all(b, [*reversed(jobs), OTHER_SEED], "2")
    return a, b


@pytest.mark.parametrize("method", CASES)
def test_two_runs_with_the_same_seed_give_identical_metrics_and_weights(two_processes, method):
    a, b = (root / method for root in two_processes)
    metrics = files(a, "metrics.json")
    assert "metrics.json" in metrics and metrics.keys() == files(b, "metrics.json").keys()
    for name, path in metrics.items():
        assert json.loads(path.read_text()) == json.loads((b / name).read_text()), name
    weights = files(a, ".safetensors")
    assert weights and weights.keys() == files(b, ".safetensors").keys()
    for name, path in weights.items():
        assert differing_tensors(path, b / name) == [], name
    for name, path in files(a, ".tsv").items():  # Trans-Encoder's pseudo-labels
        assert path.read_bytes() == (b / name).read_bytes(), name


def test_the_teacher_output_caches_of_both_processes_are_identical(two_processes):
    a, b = (root / "cache" / "teacher_outputs" for root in two_processes)
    entries = files(a, ".safetensors")
    assert len(entries) >= 3  # hinton's logits, multilingual's embeddings, bam's per-task logits
    assert (
        entries.keys() <= files(b, ".safetensors").keys()
    )  # keys hash the teacher's weights: equal teachers, equal keys
    for name, path in entries.items():
        assert differing_tensors(path, b / name) == [], name


def test_another_seed_gives_other_weights(two_processes):
    _, b = two_processes
    seed42, seed7 = (
        files(b / name, ".safetensors")["student/model/model.safetensors"] for name in ("hinton", OTHER_SEED[0])
    )
    assert differing_tensors(seed42, seed7)
