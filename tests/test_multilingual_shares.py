"""Teacher inference in shares before any Trainer has run (issue 20, item 1): multilingual distillation's teacher is
pretrained, so its embeddings are needed before the first Trainer call would start the other processes. kdlab starts
them first (kdlab.pipelines.teachers.processes_started), every process computes its share of the rows, and the entry
and the student's metrics are the one-process run's."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file
from test_ddp import HINTON, MULTILINGUAL, assert_same_metrics, one_and_two_processes


def shards(cache: Path) -> dict[str, tuple[dict[str, torch.Tensor], dict[str, str]]]:
    """Each shard of the cache's entries: its tensors and metadata (the file's bytes also hold the metadata in an
    order safetensors does not fix)."""
    found = {}
    for path in sorted(cache.glob("teacher_outputs/*/*.safetensors")):
        with safe_open(str(path), framework="pt") as handle:
            found[f"{path.parent.name}/{path.name}"] = (load_file(str(path)), handle.metadata())
    return found


def test_multilingual_teacher_rows_are_computed_in_shares_and_stored_as_one_process_stores_them(cli):
    one, two, ddp_dir = one_and_two_processes(cli, MULTILINGUAL)
    assert one["student/val/translation_acc"] > one["student_init/val/translation_acc"] + 5
    assert_same_metrics(one, two)
    logs = {path.name: path.read_text() for path in ddp_dir.glob("*.log")}
    assert set(logs) == {"train.log", "train_ddp_process_1.log"}
    for log in logs.values():  # every process ran the teacher on its share of the train and validation sources
        found = re.findall(r"teacher outputs: (\d+) rows computed( in shares by 2 processes)?, (\d+) read", log)
        assert [shared for _, shared, _ in found] == [" in shares by 2 processes"] * 2, found
    single, shared = (shards(cli.tmp_path / cache) for cache in ("cache1", "cache2"))
    assert len(single) == 2 and shared.keys() == single.keys()  # the same shards: their names hold their checksums
    for name, (tensors, metadata) in single.items():  # ... and the same tensors, bit for bit, and metadata
        assert shared[name][1] == metadata and shared[name][0].keys() == tensors.keys()
        assert all(torch.equal(shared[name][0][key], tensor) for key, tensor in tensors.items())


def test_a_teacher_reused_from_the_store_computes_its_rows_in_shares(cli):
    """Hinton with a stored teacher and its stored scores: no Trainer runs before its logits are needed."""
    args = [*HINTON, "method.student.epochs=1", "hardware=ddp_cpu"]
    env = {"KDLAB_CACHE_DIR": str(cli.tmp_path / "cache")}
    runs = {}
    for name in ("trained", "reused"):
        result = cli(*args, f"hydra.run.dir={cli.tmp_path / name}", env=env)
        assert result.returncode == 0, result.stderr[-3000:]
        runs[name] = shards(cli.tmp_path / "cache")
        shutil.rmtree(cli.tmp_path / "cache" / "teacher_outputs")  # the second run computes the rows again
    log = (cli.tmp_path / "reused" / "train.log").read_text()
    assert "teacher: reusing" in log and "reusing" in (cli.tmp_path / "reused" / "train_ddp_process_1.log").read_text()
    for path in (cli.tmp_path / "reused").glob("*.log"):
        found = re.findall(r"teacher outputs: (\d+) rows computed in shares by 2 processes, 0 read", path.read_text())
        assert found == ["640"], path
    assert "stage " not in log.split("teacher outputs:")[0]  # no Trainer ran before the teacher's rows
    assert runs["reused"].keys() == runs["trained"].keys()  # the same rows as with the processes started by training
    metrics = [json.loads((cli.tmp_path / name / "metrics.json").read_text()) for name in runs]
    assert metrics[0]["teacher/val/acc"] > 60  # the teacher learnt: its logits are not all alike
    assert_same_metrics(*metrics)
